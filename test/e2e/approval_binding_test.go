package e2e

import (
	"regexp"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

var _ = Describe("approvals are bound to the promotion they approve", func() {
	var (
		admin, rita, app1 client.Client
		ns                string
	)
	BeforeEach(func(ctx SpecContext) {
		admin = shared.AdminClient()
		ns = newNamespace(ctx, admin)
		bindRole(ctx, admin, ns, "releaser", "rita")
		bindRole(ctx, admin, ns, "approver", "app1")
		rita, app1 = shared.UserClient("rita"), shared.UserClient("app1")
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, release(ns, "shop-unreviewed", "6.6.6"))).To(Succeed())
		one := approvalGate(ns, "one-approver")
		one.Spec.Approval.Count = 1
		Expect(admin.Create(ctx, one)).To(Succeed())
		prod := environment(ns, "prod")
		prod.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "one-approver"}}
		Expect(admin.Create(ctx, prod)).To(Succeed())
	})

	approvalOf := func(promotion string) *v1alpha1.Approval {
		return &v1alpha1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: promotion + "-"},
			Spec: v1alpha1.ApprovalSpec{Promotion: promotion, Decision: v1alpha1.ApprovalApprove}}
	}

	It("an approval of p does not approve p deleted and created again for another release", func(ctx SpecContext) {
		By("rita requests p for shop-1 and app1 approves it")
		first := promotion(ns, "p", "shop-1", "prod")
		Expect(rita.Create(ctx, first)).To(Succeed())
		reachesPhase(ctx, first, v1alpha1.PromotionAwaitingApproval)
		lgtm := approvalOf("p")
		Expect(app1.Create(ctx, lgtm)).To(Succeed())
		Expect(lgtm.Spec.PromotionUID).To(Equal(first.UID), "the server binds the approval to the stored promotion")
		Expect(lgtm.Spec.Release).To(Equal("shop-1"))
		Expect(lgtm.Spec.Components).To(HaveLen(2))
		allowed := reachesPhase(ctx, first, v1alpha1.PromotionSucceeded)
		Expect(allowed.Status.Gates[0].Message).To(Equal("approved by app1 (1 of 1)"))

		By("the sealed decision names the approval's UID and the promotion UID it is bound to")
		Eventually(func() string {
			out, _ := stellactl(ctx, shared.Kubeconfig(), "replay", "promotion", "p", "-n", ns)
			return out
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			ContainSubstring("identical, allow"),
			ContainSubstring("gate one-approver counted approval "+lgtm.Name+" (uid "+string(lgtm.UID)+"): approve by app1, bound to promotion uid "+string(first.UID))))

		By("rita deletes p and creates p again for a release nobody approved")
		Expect(rita.Delete(ctx, first)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(admin.Get(ctx, client.ObjectKeyFromObject(first), &v1alpha1.Promotion{}))
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(BeTrue())
		again := promotion(ns, "p", "shop-unreviewed", "prod")
		Expect(rita.Create(ctx, again)).To(Succeed())
		Expect(again.UID).NotTo(Equal(first.UID))

		By("the new p waits for an approval of its own; app1's approval shows why it did not count")
		staysInPhase(ctx, again, v1alpha1.PromotionAwaitingApproval)
		held := reachesPhase(ctx, again, v1alpha1.PromotionAwaitingApproval)
		Expect(held.Status.Decision.Result).To(Equal(v1alpha1.DecisionPending))
		Expect(held.Status.Gates[0].ReasonCodes).To(ConsistOf("approval.insufficient", "approval.promotion-replaced"))
		Expect(held.Status.Gates[0].Message).To(ContainSubstring(lgtm.Name + " by app1 (approval.promotion-replaced)"))
		Eventually(func(g Gomega) {
			got := &v1alpha1.Approval{}
			g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(lgtm), got)).To(Succeed())
			g.Expect(got.Status.Counted).To(HaveValue(BeFalse()))
			g.Expect(got.Status.Reason).To(Equal("approval.promotion-replaced"))
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())

		By("the first approval's binding, sent again for the new p, is refused")
		replayed := approvalOf("p")
		replayed.Spec.PromotionUID, replayed.Spec.Release, replayed.Spec.Components = lgtm.Spec.PromotionUID, lgtm.Spec.Release, lgtm.Spec.Components
		err := app1.Create(ctx, replayed)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(And(ContainSubstring("spec.promotionUID"), ContainSubstring(string(again.UID))))

		By("app1 approves the new p with stellactl, which binds it to the new p")
		kc := shared.UserKubeconfig(GinkgoT().TempDir(), "app1")
		out, err := stellactl(ctx, kc, "approve", "p", "-n", ns, "--comment", "reviewed shop-unreviewed")
		Expect(err).NotTo(HaveOccurred(), out)
		name := regexp.MustCompile(`approval.stella-ops.org/(\S+) created`).FindStringSubmatch(out)
		Expect(name).To(HaveLen(2), out)
		second := &v1alpha1.Approval{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name[1]}, second)).To(Succeed())
		Expect(second.Spec.PromotionUID).To(Equal(again.UID))
		Expect(second.Spec.Release).To(Equal("shop-unreviewed"))
		got := reachesPhase(ctx, again, v1alpha1.PromotionSucceeded)
		Expect(got.Status.Gates[0].Message).To(Equal("approved by app1 (1 of 1)"))
	})

	It("refuses an approval of a promotion that does not exist yet, naming spec.promotion", func(ctx SpecContext) {
		err := app1.Create(ctx, approvalOf("later"))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(And(ContainSubstring("spec.promotion"), ContainSubstring(`there is no Promotion "later" in namespace `+ns)))

		kc := shared.UserKubeconfig(GinkgoT().TempDir(), "app1")
		out, err := stellactl(ctx, kc, "approve", "later", "-n", ns)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("there is no promotion later in namespace " + ns))

		By("the promotion created afterwards waits: nothing approved it")
		later := promotion(ns, "later", "shop-1", "prod")
		Expect(rita.Create(ctx, later)).To(Succeed())
		staysInPhase(ctx, later, v1alpha1.PromotionAwaitingApproval)
		var approvals v1alpha1.ApprovalList
		Expect(admin.List(ctx, &approvals, client.InNamespace(ns))).To(Succeed())
		Expect(approvals.Items).To(BeEmpty())
	})
})
