package e2e

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

var _ = Describe("the API rejects bad objects with a message that names the field", func() {
	var (
		c  client.Client
		ns string
	)
	BeforeEach(func(ctx SpecContext) {
		c = shared.AdminClient()
		ns = newNamespace(ctx, c)
	})

	// rejected creates obj and returns the validation error's message.
	rejected := func(ctx SpecContext, obj client.Object) string {
		GinkgoHelper()
		err := c.Create(ctx, obj)
		Expect(err).To(HaveOccurred(), "the server accepted %T %s", obj, obj.GetName())
		Expect(apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)).To(BeTrue(), "want Invalid or BadRequest, got %v", err)
		return err.Error()
	}

	It("refuses a tag where a digest belongs", func(ctx SpecContext) {
		rel := release(ns, "tagged", "1.0.0")
		rel.Spec.Components[0].Image = "127.0.0.1:5000/shop/api:1.0.0"
		Expect(rejected(ctx, rel)).To(And(
			ContainSubstring("spec.components[0].image"),
			ContainSubstring("pinned by digest")))
	})

	It("refuses a digest that is not 64 hex characters", func(ctx SpecContext) {
		rel := release(ns, "short", "1.0.0")
		rel.Spec.Components[0].Image = "127.0.0.1:5000/shop/api@sha256:abc123"
		Expect(rejected(ctx, rel)).To(ContainSubstring("spec.components[0].image"))
	})

	It("refuses a version that is not semver, and an over-long one", func(ctx SpecContext) {
		Expect(rejected(ctx, release(ns, "notsemver", "latest"))).To(And(ContainSubstring("spec.version"), ContainSubstring("semantic version")))
		Expect(rejected(ctx, release(ns, "toolong", "1.0.0-"+strings.Repeat("a", 200)))).To(And(ContainSubstring("spec.version"), ContainSubstring("128")))
	})

	It("refuses a release without a primary component", func(ctx SpecContext) {
		rel := release(ns, "sidecars-only", "1.0.0")
		rel.Spec.Components = rel.Spec.Components[1:]
		Expect(rejected(ctx, rel)).To(And(ContainSubstring("spec.components"), ContainSubstring("role primary")))
	})

	It("keeps Release and Promotion specs immutable", func(ctx SpecContext) {
		// Merge patches carry no resourceVersion, so a status write by the
		// reconciler in between cannot turn the answer into a conflict.
		rel := release(ns, "frozen", "1.0.0")
		Expect(c.Create(ctx, rel)).To(Succeed())
		before := rel.DeepCopy()
		rel.Spec.Version = "1.0.1"
		err := c.Patch(ctx, rel, client.MergeFrom(before))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec is immutable"))

		Expect(c.Create(ctx, environment(ns, "dev"))).To(Succeed())
		promo := promotion(ns, "frozen-to-dev", "frozen", "dev")
		Expect(c.Create(ctx, promo)).To(Succeed())
		beforePromo := promo.DeepCopy()
		promo.Spec.Environment = "prod"
		err = c.Patch(ctx, promo, client.MergeFrom(beforePromo))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec is immutable"))
	})

	It("requires exactly one gate type", func(ctx SpecContext) {
		none := &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "none"}}
		Expect(rejected(ctx, none)).To(ContainSubstring("set exactly one gate type"))
		two := approvalGate(ns, "two")
		two.Spec.Policy = &v1alpha1.PolicyGate{Source: "allow: true"}
		Expect(rejected(ctx, two)).To(ContainSubstring("set exactly one gate type"))
	})

	It("refuses an environment that promotes from itself", func(ctx SpecContext) {
		Expect(rejected(ctx, environment(ns, "prod", "stage", "prod"))).To(ContainSubstring("an environment cannot promote from itself"))
	})

	It("refuses a target whose settings do not match its type", func(ctx SpecContext) {
		tgt := &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1"},
			Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeCompose, Agent: "host-1"},
		}
		Expect(rejected(ctx, tgt)).To(ContainSubstring("compose is required when type is compose"))
	})

	It("refuses a duration that does not parse", func(ctx SpecContext) {
		comp := &v1alpha1.Component{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"},
			Spec:       v1alpha1.ComponentSpec{Repository: "127.0.0.1:5000/shop/api"},
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(comp)
		Expect(err).NotTo(HaveOccurred())
		Expect(unstructured.SetNestedField(u, "every now and then", "spec", "interval")).To(Succeed())
		obj := &unstructured.Unstructured{Object: u}
		obj.SetAPIVersion(v1alpha1.GroupVersion.String())
		obj.SetKind("Component")
		Expect(rejected(ctx, obj)).To(ContainSubstring("spec.interval"))
	})

	It("refuses unknown fields under strict field validation", func(ctx SpecContext) {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "Environment",
			"metadata": map[string]any{"name": "typo", "namespace": ns},
			"spec":     map[string]any{"order": int64(1), "autoPromot": true},
		}}
		err := c.Create(ctx, u, client.FieldValidation(metav1.FieldValidationStrict))
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(`unknown field "spec.autoPromot"`))
	})
})
