package e2e

import (
	"regexp"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

var _ = Describe("stellactl promote, approve, reject, gates check and promote cancel", func() {
	It("explains the gates, promotes, counts an approval and cancels", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, approvalGate(ns, "two-approvers"))).To(Succeed())
		prod := environment(ns, "prod")
		prod.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "two-approvers"}}
		Expect(admin.Create(ctx, prod)).To(Succeed())
		kc := shared.Kubeconfig()

		out, err := stellactl(ctx, kc, "gates", "check", "shop-1", "--env", "prod", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`two-approvers\s+approval\s+Pending\s+approval.insufficient`))
		Expect(out).To(ContainSubstring("Decision: pending (approval.insufficient)"))
		var promos v1alpha1.PromotionList
		Expect(admin.List(ctx, &promos, client.InNamespace(ns))).To(Succeed())
		Expect(promos.Items).To(BeEmpty(), "gates check creates nothing")

		out, err = stellactl(ctx, kc, "promote", "shop-1", "--to", "prod", "-n", ns, "--reason", "weekly")
		Expect(err).NotTo(HaveOccurred(), out)
		name := regexp.MustCompile(`promotion.stella-ops.org/(\S+) created`).FindStringSubmatch(out)
		Expect(name).To(HaveLen(2), out)
		promo := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name[1]}}
		reachesPhase(ctx, promo, v1alpha1.PromotionAwaitingApproval)

		bindRole(ctx, admin, ns, "approver", "bob")
		bob := shared.UserKubeconfig(GinkgoT().TempDir(), "bob")
		out, err = stellactl(ctx, bob, "reject", promo.Name, "-n", ns)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("--comment is required"))
		out, err = stellactl(ctx, bob, "approve", promo.Name, "-n", ns, "--comment", "looks good")
		Expect(err).NotTo(HaveOccurred(), out)
		var approvals v1alpha1.ApprovalList
		Expect(admin.List(ctx, &approvals, client.InNamespace(ns))).To(Succeed())
		Expect(approvals.Items).To(HaveLen(1))
		Expect(approvals.Items[0].Spec.Approver).To(Equal("bob"))
		Expect(approvals.Items[0].Spec.Comment).To(Equal("looks good"))

		out, err = stellactl(ctx, kc, "promote", "cancel", promo.Name, "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		cancelled := reachesPhase(ctx, promo, v1alpha1.PromotionCancelled)
		Expect(conditionMessage(cancelled.Status.Conditions, v1alpha1.ConditionReady)).To(ContainSubstring("cancelled on request"))
	})
})
