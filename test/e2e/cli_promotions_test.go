package e2e

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"time"

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
		var exit *exec.ExitError
		Expect(errors.As(err, &exit)).To(BeTrue(), "a pending verdict exits non-zero: %v\n%s", err, out)
		Expect(exit.ExitCode()).To(Equal(9), out)
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

		// An approval of another promotion in the namespace is not this
		// promotion's: describe selects approvals by spec.promotion.
		staging := environment(ns, "staging")
		staging.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "two-approvers"}}
		Expect(admin.Create(ctx, staging)).To(Succeed())
		toStaging := promotion(ns, "shop-1-to-staging", "shop-1", "staging")
		Expect(admin.Create(ctx, toStaging)).To(Succeed())
		reachesPhase(ctx, toStaging, v1alpha1.PromotionAwaitingApproval)
		out, err = stellactl(ctx, bob, "approve", toStaging.Name, "-n", ns, "--comment", "staging only")
		Expect(err).NotTo(HaveOccurred(), out)

		Eventually(func() string {
			out, _ := stellactl(ctx, kc, "describe", "promo/"+promo.Name, "-n", ns)
			return out
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			MatchRegexp(`Requested by:\s+stella-admin`),
			MatchRegexp(`two-approvers\s+approval\s+Pending\s+approval.insufficient`),
			MatchRegexp(`bob\s+approve\s+counted\s+"looks good"`),
			MatchRegexp(`Phase:\s+AwaitingApproval`),
			Not(ContainSubstring("staging only")),
		))
		out, err = stellactl(ctx, kc, "describe", "promotion", promo.Name, "-n", ns, "--show-events=false")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(And(MatchRegexp(`Phase:\s+AwaitingApproval`), Not(ContainSubstring("Events:"))))

		out, err = stellactl(ctx, kc, "promote", "cancel", promo.Name, "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		cancelled := reachesPhase(ctx, promo, v1alpha1.PromotionCancelled)
		Expect(conditionMessage(cancelled.Status.Conditions, v1alpha1.ConditionReady)).To(ContainSubstring("cancelled on request"))
		// A promotion's events tell how it ended, not every step on the way.
		Eventually(func() string {
			out, _ := stellactl(ctx, kc, "describe", "promotion", promo.Name, "-n", ns)
			return out
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			MatchRegexp(`(?s)Events:\n.*\)\s+Cancelled\s`), Not(MatchRegexp(`\)\s+AwaitingApproval\s`))))
	})
})

var _ = Describe("stellactl rollback", func() {
	It("returns an environment to the release before, skipping soak but not the other gates", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		for i, name := range []string{"shop-1", "shop-2"} {
			Expect(admin.Create(ctx, release(ns, name, fmt.Sprintf("%d.0.0", i+1)))).To(Succeed())
		}
		Expect(admin.Create(ctx, environment(ns, "stage"))).To(Succeed())
		Expect(admin.Create(ctx, environment(ns, "prod"))).To(Succeed())
		for _, name := range []string{"shop-1", "shop-2"} {
			reachesPhase(ctx, promote(ctx, admin, ns, name, "prod"), v1alpha1.PromotionSucceeded)
		}
		Eventually(currentRelease(ctx, ns, "prod")).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal("shop-2"))

		By("guarding prod with a soak gate that nothing could pass now, and a policy that lets shop-1 through")
		Expect(admin.Create(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "soak"},
			Spec: v1alpha1.GateSpec{Soak: &v1alpha1.SoakGate{Environment: "stage", Duration: metav1.Duration{Duration: 24 * time.Hour}}}})).To(Succeed())
		Expect(admin.Create(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "policy"},
			Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: "allow: input.release.version != \"\"\nreasons: []"}}})).To(Succeed())
		prod := &v1alpha1.Environment{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "prod"}, prod)).To(Succeed())
		before := prod.DeepCopy()
		prod.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "soak"}, {Name: "policy"}}
		Expect(admin.Patch(ctx, prod, client.MergeFrom(before))).To(Succeed())

		out, err := stellactl(ctx, shared.Kubeconfig(), "rollback", "prod", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		name := regexp.MustCompile(`promotion.stella-ops.org/(\S+) created`).FindStringSubmatch(out)
		Expect(name).To(HaveLen(2), out)
		rollback := reachesPhase(ctx, &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name[1]}}, v1alpha1.PromotionSucceeded)
		Expect(rollback.Spec.Release).To(Equal("shop-1"))
		Expect(rollback.Spec.Rollback).To(BeTrue())
		Expect(rollback.Status.Gates).To(ContainElement(And(HaveField("Name", "soak"), HaveField("Result", v1alpha1.GatePass),
			HaveField("Message", ContainSubstring("do not apply to rollbacks")))))
		Eventually(currentRelease(ctx, ns, "prod")).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal("shop-1"))

		out, err = stellactl(ctx, shared.Kubeconfig(), "rollback", "prod", "--to", "shop-9", "-n", ns)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("never succeeded in environment prod"))
	})
})
