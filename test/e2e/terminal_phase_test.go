package e2e

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

var _ = Describe("the result of a run stands once stored", func() {
	var (
		admin client.Client
		ns    string
	)
	BeforeEach(func(ctx SpecContext) {
		admin = shared.AdminClient()
		ns = newNamespace(ctx, admin)
	})

	// refused checks that a status write was refused for changing the
	// terminal phase, with a message that names the field.
	refused := func(err error, ended string) {
		GinkgoHelper()
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
		Expect(err.Error()).To(And(ContainSubstring("status.phase"), ContainSubstring(ended+" ended")))
	}

	It("refuses a late result on a DeployTask the server timed out, by update or by patch", func(ctx SpecContext) {
		task := &v1alpha1.DeployTask{
			// Labelled for an agent that never runs, so that nothing but
			// this story writes its status.
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p-web", Labels: map[string]string{v1alpha1.LabelAgent: "host-absent"}},
			Spec: v1alpha1.DeployTaskSpec{Promotion: "p", Target: "web", Release: "shop-1",
				Components: []v1alpha1.ComponentDigest{{Name: "api", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@" + digest("api"))}}},
		}
		Expect(admin.Create(ctx, task)).To(Succeed())
		before := task.DeepCopy()
		task.Status.Phase, task.Status.Message = v1alpha1.DeployTaskTimedOut, "no result within 15m0s"
		Expect(admin.Status().Patch(ctx, task, client.MergeFrom(before))).To(Succeed())

		By("replacing the status, as kubectl edit --subresource=status does")
		late := task.DeepCopy()
		late.Status.Phase, late.Status.Message = v1alpha1.DeployTaskSucceeded, "release shop-1 runs"
		refused(admin.Status().Update(ctx, late), "task")

		By("merge-patching it without a resourceVersion, as an agent without a lock would")
		refused(admin.Status().Patch(ctx, late, client.MergeFrom(task)), "task")

		By("keeping TimedOut")
		stored := &v1alpha1.DeployTask{}
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(task), stored)).To(Succeed())
		Expect(stored.Status.Phase).To(Equal(v1alpha1.DeployTaskTimedOut))
		Expect(stored.Status.Message).To(Equal("no result within 15m0s"))
	})

	It("refuses to change the phase of a Promotion that ended", func(ctx SpecContext) {
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, environment(ns, "dev"))).To(Succeed())
		promo := promotion(ns, "shop-1-to-dev", "shop-1", "dev")
		Expect(admin.Create(ctx, promo)).To(Succeed())
		succeeded := reachesPhase(ctx, promo, v1alpha1.PromotionSucceeded)

		cancelled := succeeded.DeepCopy()
		cancelled.Status.Phase = v1alpha1.PromotionCancelled
		refused(admin.Status().Update(ctx, cancelled), "promotion")
		refused(admin.Status().Patch(ctx, cancelled, client.MergeFrom(succeeded)), "promotion")
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(promo), promo)).To(Succeed())
		Expect(promo.Status.Phase).To(Equal(v1alpha1.PromotionSucceeded))
	})
})
