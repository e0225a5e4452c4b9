// Package install applies Stella's CRDs, roles and admission policies to an
// API server with server-side apply, and waits until the CRDs are served.
package install

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/config"
)

// scheme knows the Stella kinds, for the admission probes.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}()

// FieldManager owns the fields Stella applies.
const FieldManager = "stella"

// Options say what Apply installs besides the CRDs and roles.
type Options struct {
	// AdmissionPolicies installs the MutatingAdmissionPolicies that stamp
	// identities into Promotions and Approvals, and waits until they act.
	// An external Kubernetes cluster needs them; the embedded server does
	// the same with its built-in admission plugin.
	AdmissionPolicies bool
}

// Apply installs or updates the embedded manifests and waits until the
// Stella API is served. It is idempotent: applying twice changes nothing.
func Apply(ctx context.Context, cfg *rest.Config, o Options) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	dirs := []string{config.CRDDir, config.RBACDir}
	if o.AdmissionPolicies {
		dirs = append(dirs, config.AdmissionDir)
	}
	for _, dir := range dirs {
		objs, err := readDir(config.Manifests, dir)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if err := applyOne(ctx, dyn, mapper, obj); err != nil {
				return err
			}
		}
		if dir == config.CRDDir {
			if err := waitForCRDs(ctx, cfg, objs); err != nil {
				return err
			}
			mapper.Reset()
		}
	}
	if !o.AdmissionPolicies {
		return nil
	}
	return waitForIdentityPolicies(ctx, cfg)
}

func applyOne(ctx context.Context, dyn dynamic.Interface, mapper *restmapper.DeferredDiscoveryRESTMapper, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("apply %s %s: the server does not serve this kind: %w", gvk.Kind, obj.GetName(), err)
	}
	var res dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if ns := obj.GetNamespace(); ns != "" {
		res = dyn.Resource(mapping.Resource).Namespace(ns)
	}
	_, err = res.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	return nil
}

// waitForCRDs waits until every CRD is Established and its group version is
// in discovery, so clients and informers can use it right away.
func waitForCRDs(ctx context.Context, cfg *rest.Config, crds []*unstructured.Unstructured) error {
	c, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, u := range crds {
			crd, err := c.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil || !established(crd) {
				return false, nil
			}
		}
		list, err := c.Discovery().ServerResourcesForGroupVersion(v1alpha1.GroupVersion.String())
		return err == nil && len(list.APIResources) >= 2*len(crds), nil // each kind has its status subresource
	})
	if err != nil {
		return fmt.Errorf("wait for the Stella CRDs to be served: %w", err)
	}
	return nil
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

// kustomizationFile lists a directory's manifests for kubectl apply -k; it
// is not one itself.
const kustomizationFile = "kustomization.yaml"

func readDir(fsys fs.FS, dir string) ([]*unstructured.Unstructured, error) {
	files, err := fs.Glob(fsys, path.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		if path.Base(f) == kustomizationFile {
			continue
		}
		raw, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if len(u.Object) > 0 {
				objs = append(objs, u)
			}
		}
	}
	// A namespace comes before what it holds, as kubectl apply -k orders
	// them.
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
		return cmp.Compare(namespaceOrder(a), namespaceOrder(b))
	})
	return objs, nil
}

func namespaceOrder(obj *unstructured.Unstructured) int {
	if obj.GroupVersionKind().GroupKind() == (schema.GroupKind{Kind: "Namespace"}) {
		return 0
	}
	return 1
}

// refusedForMissingPromotion reports whether err is Stella's admission
// plugin refusing an Approval of a promotion that does not exist.
func refusedForMissingPromotion(err error) bool {
	cause, ok := apierrors.StatusCause(err, metav1.CauseTypeFieldValueNotFound)
	return ok && apierrors.IsInvalid(err) && cause.Field == "spec.promotion"
}

// refusedForMissingRelease is the refusal of a Promotion whose release does
// not exist, which only Stella's own admission plugin gives.
func refusedForMissingRelease(err error) bool {
	cause, ok := apierrors.StatusCause(err, metav1.CauseTypeFieldValueInvalid)
	return ok && apierrors.IsInvalid(err) && cause.Field == "spec.release"
}

// CheckServed fails with advice when the server does not serve the Stella
// API, so that reconcilers are not started against a server without it.
func CheckServed(ctx context.Context, cfg *rest.Config) error {
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := disc.ServerResourcesForGroupVersion(v1alpha1.GroupVersion.String()); err != nil {
		return fmt.Errorf("%s does not serve %s (%v): install the CRDs first with 'stella install-crds' or 'kubectl apply -k config/crd'",
			cfg.Host, v1alpha1.GroupVersion, err)
	}
	return nil
}

// waitForIdentityPolicies waits until the admission policies fill in the
// requester of a Promotion and the approver of an Approval and refuse a
// forged one. The API server loads policies and the CRDs' schemas
// asynchronously (the schemas on a five-second poll) and refuses these kinds
// until both are loaded. The probes are dry runs: nothing is stored. The
// probe Approval carries a binding, which the policies require; an API
// server with Stella's own admission plugin (stella serve) refuses it
// before any policy sees it, because the promotion it names does not exist,
// and that plugin stamps and binds approvals itself.
func waitForIdentityPolicies(ctx context.Context, cfg *rest.Config) error {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = "application/json" // custom resources have no protobuf form
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "default", GenerateName: "stella-install-probe-"}
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		promo := &v1alpha1.Promotion{ObjectMeta: meta(), Spec: v1alpha1.PromotionSpec{Release: "probe", Environment: "probe"}}
		switch last = c.Create(ctx, promo, client.DryRunAll); {
		case refusedForMissingRelease(last):
			// Only Stella's own admission plugins (stella serve) look the
			// release up; they stamp identities themselves, so there are no
			// policies to wait for.
			return true, nil
		case last != nil:
			return false, nil
		}
		appr := &v1alpha1.Approval{ObjectMeta: meta(), Spec: v1alpha1.ApprovalSpec{Promotion: "probe", Decision: v1alpha1.ApprovalApprove,
			PromotionUID: "probe", Release: "probe", Components: []v1alpha1.ComponentDigest{
				{Name: "probe", Image: v1alpha1.ImageDigestRef("stella.invalid/probe@sha256:" + strings.Repeat("0", 64))}}}}
		switch last = c.Create(ctx, appr, client.DryRunAll); {
		case refusedForMissingPromotion(last):
		case last != nil:
			return false, nil
		case appr.Spec.Approver == "":
			last = fmt.Errorf("the identity policies do not fill in approver yet")
			return false, nil
		}
		if promo.Spec.RequestedBy == "" {
			last = fmt.Errorf("the identity policies do not fill in requestedBy yet")
			return false, nil
		}
		forged := &v1alpha1.Promotion{ObjectMeta: meta(), Spec: v1alpha1.PromotionSpec{Release: "probe", Environment: "probe", RequestedBy: "forged-" + promo.Spec.RequestedBy}}
		if err := c.Create(ctx, forged, client.DryRunAll); err == nil {
			last = fmt.Errorf("the identity policies do not refuse a forged requestedBy yet")
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for the identity admission policies (config/admission) to take effect: %w (last: %v)", err, last)
	}
	return nil
}
