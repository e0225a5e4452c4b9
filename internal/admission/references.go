package admission

import (
	"context"
	"errors"
	"fmt"
	"io"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/client-go/dynamic"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// ReferencesPluginName names the plugin that refuses a Promotion of a
// Release, or into an Environment, that does not exist.
const ReferencesPluginName = "StellaPromotionReferences"

// RegisterReferences adds the references plugin to plugins.
//
// A Promotion of a release that does not exist was accepted and then sat
// queued behind other promotions before it said so; a mistyped environment
// the same. On create, the plugin reads the Release and the Environment the
// Promotion names from storage and refuses the Promotion when either is
// missing or being deleted, naming the field. Whoever creates it (kubectl,
// stellactl, a script, the auto-promotion and rollback reconcilers, which
// name releases and environments they just read) gets the same answer.
// Only creation is checked: a release deleted later leaves its promotions
// stalled with a condition that says so. On an external Kubernetes
// cluster, whose admission policies cannot read other objects, stellactl
// promote checks the same before creating.
func RegisterReferences(plugins *admission.Plugins) {
	plugins.Register(ReferencesPluginName, func(io.Reader) (admission.Interface, error) {
		return &references{Handler: admission.NewHandler(admission.Create)}, nil
	})
}

type references struct {
	*admission.Handler
	stored dynamic.Interface
}

var _ admission.ValidationInterface = &references{}

// SetDynamicClient receives the API server's loopback client, which reads
// the stored Releases and Environments.
func (p *references) SetDynamicClient(c dynamic.Interface) {
	p.stored = c
}

// ValidateInitialization refuses to start the plugin without that client.
func (p *references) ValidateInitialization() error {
	if p.stored == nil {
		return errors.New(ReferencesPluginName + " has no client to read the Releases and Environments promotions name")
	}
	return nil
}

// promotionReferences are the fields of a Promotion's spec that name another
// object in its namespace, and what the fix is when that object is missing.
var promotionReferences = []struct {
	field    string
	kind     string
	resource schema.GroupVersionResource
	fix      string
}{
	{"release", "Release", v1alpha1.GroupVersion.WithResource("releases"),
		"create the release first, or promote one that exists (stellactl get releases)"},
	{"environment", "Environment", v1alpha1.GroupVersion.WithResource("environments"),
		"create the environment first, or promote into one that exists (stellactl get environments)"},
}

// Validate refuses a new Promotion whose release or environment does not
// exist in its namespace.
func (p *references) Validate(ctx context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if a.GetSubresource() != "" || a.GetResource() != v1alpha1.GroupVersion.WithResource("promotions") {
		return nil
	}
	obj, ok := a.GetObject().(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	var errs field.ErrorList
	for _, ref := range promotionReferences {
		path := field.NewPath("spec", ref.field)
		name, _, err := unstructured.NestedString(obj.Object, "spec", ref.field)
		if err != nil {
			errs = append(errs, field.TypeInvalid(path, name, err.Error()))
			continue
		}
		if name == "" {
			continue // required by the schema, which has already said so
		}
		problem, err := p.missing(ctx, ref.resource, a.GetNamespace(), name)
		if err != nil {
			return apierrors.NewInternalError(fmt.Errorf("read %s %s/%s named by %s: %w", ref.kind, a.GetNamespace(), name, path, err))
		}
		if problem != "" {
			errs = append(errs, field.Invalid(path, name, fmt.Sprintf("%s %s %s in namespace %s: %s",
				ref.kind, name, problem, a.GetNamespace(), ref.fix)))
		}
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(a.GetKind().GroupKind(), a.GetName(), errs)
	}
	return nil
}

// missing says why the object name of res in namespace cannot be promoted
// with, or "" when it can. A get without a resource version is a quorum
// read from etcd, never an older cached copy: an object created a moment
// ago is found, and one deleted a moment ago is not.
func (p *references) missing(ctx context.Context, res schema.GroupVersionResource, namespace, name string) (string, error) {
	got, err := p.stored.Resource(res).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "does not exist", nil
	case err != nil:
		return "", err
	case got.GetDeletionTimestamp() != nil:
		return "is being deleted", nil
	}
	return "", nil
}
