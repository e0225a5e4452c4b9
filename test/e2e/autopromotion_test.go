package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

var _ = Describe("auto-promotion", func() {
	It("moves a new release into dev and, once it succeeded there, into stage; prod waits for a person", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		dev := environment(ns, "dev")
		dev.Spec.AutoPromote = true
		stage := environment(ns, "stage", "dev")
		stage.Spec.AutoPromote = true
		for _, e := range []*v1alpha1.Environment{dev, stage, environment(ns, "prod", "stage")} {
			Expect(admin.Create(ctx, e)).To(Succeed())
		}

		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Eventually(currentRelease(ctx, ns, "dev")).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal("shop-1"))
		Eventually(currentRelease(ctx, ns, "stage")).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal("shop-1"))
		Consistently(currentRelease(ctx, ns, "prod")).WithContext(ctx).WithTimeout(2 * time.Second).Should(BeEmpty())

		auto := &v1alpha1.Promotion{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-1-to-stage"}, auto)).To(Succeed())
		Expect(auto.Labels).To(HaveKeyWithValue("stella-ops.org/auto-promotion", "true"))
		Expect(auto.Spec.Reason).To(Equal("auto-promotion: succeeded in dev"))

		Eventually(func() []v1alpha1.ReleaseDeployment {
			rel := &v1alpha1.Release{}
			_ = admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-1"}, rel)
			return rel.Status.Deployments
		}).WithContext(ctx).WithTimeout(30*time.Second).Should(HaveLen(2), "shop-1 runs in dev and stage")

		Expect(admin.Create(ctx, release(ns, "shop-2", "2.0.0"))).To(Succeed())
		Eventually(currentRelease(ctx, ns, "stage")).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal("shop-2"))
		Eventually(func() []v1alpha1.ReleaseDeployment {
			rel := &v1alpha1.Release{}
			_ = admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-1"}, rel)
			return rel.Status.Deployments
		}).WithContext(ctx).WithTimeout(30*time.Second).Should(BeEmpty(), "shop-2 replaced shop-1 everywhere")
	})

	It("lets a newer release supersede an older one still queued", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, approvalGate(ns, "two-approvers"))).To(Succeed())
		dev := environment(ns, "dev")
		dev.Spec.AutoPromote = true
		dev.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "two-approvers"}}
		Expect(admin.Create(ctx, dev)).To(Succeed())

		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		first := reachesPhase(ctx, &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-1-to-dev"}}, v1alpha1.PromotionAwaitingApproval)
		Expect(admin.Create(ctx, release(ns, "shop-2", "2.0.0"))).To(Succeed())
		second := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-2-to-dev"}}
		Eventually(func() string {
			_ = admin.Get(ctx, client.ObjectKeyFromObject(second), second)
			return conditionReason(second.Status.Conditions, v1alpha1.ConditionReconciling)
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal("Queued"))

		Expect(admin.Create(ctx, release(ns, "shop-3", "3.0.0"))).To(Succeed())
		By("asking the promotion reconciler to cancel it, as stellactl promote cancel does, naming the newer promotion")
		superseded := reachesPhase(ctx, second, v1alpha1.PromotionCancelled)
		Expect(superseded.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationCancel, "superseded by promotion shop-3-to-dev of the newer release shop-3"))
		Expect(conditionMessage(superseded.Status.Conditions, v1alpha1.ConditionReady)).To(Equal(
			"cancelled on request in phase Pending: superseded by promotion shop-3-to-dev of the newer release shop-3"))
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(first), first)).To(Succeed())
		Expect(first.Status.Phase).To(Equal(v1alpha1.PromotionAwaitingApproval), "the promotion in flight is not superseded")
		Eventually(func() error {
			return admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-3-to-dev"}, &v1alpha1.Promotion{})
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
	})
})

func conditionReason(conds []metav1.Condition, t string) string {
	for _, c := range conds {
		if c.Type == t {
			return c.Reason
		}
	}
	return ""
}
