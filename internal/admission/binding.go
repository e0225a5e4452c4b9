package admission

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/dynamic"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/gates"
)

// An Approval counts for the very promotion it approves, never for whatever
// Promotion later has its name: on create, the plugin reads the Promotion
// the Approval names, and its Release, from storage and records the
// Promotion's UID, its release and that release's image digests in
// spec.promotionUID, spec.release and spec.components (gates.ApprovalBinding
// is the rule approval gates apply to them). A client may send the binding
// itself (stellactl does, for clusters without this plugin); a value that
// differs from the stored objects is refused, and so is an Approval of a
// Promotion that does not exist, since a promotion created later under that
// name would be another one.

var (
	promotionsResource = v1alpha1.GroupVersion.WithResource("promotions")
	releasesResource   = v1alpha1.GroupVersion.WithResource("releases")
)

// SetDynamicClient receives the API server's loopback client, which reads
// the stored Promotions and Releases approvals are bound to.
func (p *identity) SetDynamicClient(c dynamic.Interface) {
	p.stored = c
}

// ValidateInitialization refuses to start the plugin without that client.
func (p *identity) ValidateInitialization() error {
	if p.stored == nil {
		return errors.New(IdentityPluginName + " has no client to read the Promotions approvals are bound to")
	}
	return nil
}

// bindApproval reads the Promotion obj approves and its Release as stored,
// and binds obj to them.
func (p *identity) bindApproval(ctx context.Context, namespace string, obj *unstructured.Unstructured) (field.ErrorList, error) {
	name, _, err := unstructured.NestedString(obj.Object, "spec", "promotion")
	if err != nil {
		return field.ErrorList{field.TypeInvalid(field.NewPath("spec", "promotion"), name, err.Error())}, nil
	}
	promo := &v1alpha1.Promotion{}
	found, err := p.getStored(ctx, promotionsResource, namespace, name, promo)
	if err != nil || !found {
		return bindingTo(obj, namespace, name, nil, nil), err
	}
	rel := &v1alpha1.Release{}
	found, err = p.getStored(ctx, releasesResource, namespace, promo.Spec.Release, rel)
	if err != nil || !found {
		return bindingTo(obj, namespace, name, promo, nil), err
	}
	return bindingTo(obj, namespace, name, promo, rel), nil
}

// getStored reads one object through the loopback client. A get without a
// resource version is a quorum read from etcd, never an older cached copy:
// a promotion deleted a moment ago is not found.
func (p *identity) getStored(ctx context.Context, res schema.GroupVersionResource, namespace, name string, into runtime.Object) (bool, error) {
	if name == "" {
		return false, nil
	}
	u, err := p.stored.Resource(res).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s %s/%s to bind the approval to it: %w", res.Resource, namespace, name, err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		return false, fmt.Errorf("decode %s %s/%s: %w", res.Resource, namespace, name, err)
	}
	return true, nil
}

// bindingTo fills the binding of obj, an Approval of promotion name, from
// the stored promo and rel (nil when they do not exist), and refuses a
// binding sent by the client that differs.
func bindingTo(obj *unstructured.Unstructured, namespace, name string, promo *v1alpha1.Promotion, rel *v1alpha1.Release) field.ErrorList {
	spec := field.NewPath("spec")
	if promo == nil {
		return field.ErrorList{{Type: field.ErrorTypeNotFound, Field: spec.Child("promotion").String(), BadValue: name,
			Detail: fmt.Sprintf("there is no Promotion %q in namespace %s to approve; an approval is bound to the promotion as it exists "+
				"when approved, so approve one that exists (stellactl get promotions)", name, namespace)}}
	}
	if rel == nil {
		return field.ErrorList{field.Invalid(spec.Child("promotion"), name, fmt.Sprintf(
			"Promotion %s names Release %s, which does not exist in namespace %s: there are no images to approve", name, promo.Spec.Release, namespace))}
	}
	raw, _, err := unstructured.NestedMap(obj.Object, "spec")
	if err != nil {
		return field.ErrorList{field.TypeInvalid(spec, nil, err.Error())}
	}
	var sent v1alpha1.ApprovalSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &sent); err != nil {
		return field.ErrorList{field.TypeInvalid(spec, nil, err.Error())}
	}

	bound := sent
	bound.PromotionUID, bound.Release, bound.Components = promo.UID, promo.Spec.Release, nil
	for _, c := range rel.Spec.Components {
		bound.Components = append(bound.Components, v1alpha1.ComponentDigest{Name: c.Name, Image: c.Image})
	}
	var errs field.ErrorList
	if sent.PromotionUID != "" && sent.PromotionUID != bound.PromotionUID {
		errs = append(errs, field.Invalid(spec.Child("promotionUID"), sent.PromotionUID, fmt.Sprintf(
			"must be empty or %s, the UID of Promotion %s as stored: a promotion deleted and created again under its name is another "+
				"promotion and needs its own approval", bound.PromotionUID, name)))
	}
	if sent.Release != "" && sent.Release != bound.Release {
		errs = append(errs, field.Invalid(spec.Child("release"), sent.Release, fmt.Sprintf(
			"must be empty or %s, the release Promotion %s promotes", bound.Release, name)))
	}
	if len(sent.Components) > 0 {
		check := bound
		check.Components = sent.Components
		if gates.ApprovalBinding(&check, promo, rel) != "" {
			errs = append(errs, field.Invalid(spec.Child("components"), sent.Components, fmt.Sprintf(
				"must be empty or the images of Release %s as stored, each name with its digest", rel.Name)))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	components := make([]any, 0, len(bound.Components))
	for _, c := range bound.Components {
		components = append(components, map[string]any{"name": c.Name, "image": string(c.Image)})
	}
	for _, set := range []struct {
		field string
		value any
	}{{"promotionUID", string(bound.PromotionUID)}, {"release", bound.Release}, {"components", components}} {
		if err := unstructured.SetNestedField(obj.Object, set.value, "spec", set.field); err != nil {
			errs = append(errs, field.InternalError(spec.Child(set.field), err))
		}
	}
	return errs
}
