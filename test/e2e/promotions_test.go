package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/test/framework"
)

// promote creates a promotion as c and returns it.
func promote(ctx context.Context, c client.Client, ns, rel, env string) *v1alpha1.Promotion {
	GinkgoHelper()
	p := generated(promotion(ns, "", rel, env))
	Expect(c.Create(ctx, p)).To(Succeed())
	return p
}

// approve creates an approval of promo as c.
func approve(ctx context.Context, c client.Client, promo *v1alpha1.Promotion, decision v1alpha1.ApprovalDecision) {
	GinkgoHelper()
	Expect(c.Create(ctx, &v1alpha1.Approval{
		ObjectMeta: metav1.ObjectMeta{Namespace: promo.Namespace, GenerateName: promo.Name + "-"},
		Spec:       v1alpha1.ApprovalSpec{Promotion: promo.Name, Decision: decision},
	})).To(Succeed())
}

// reachesPhase waits until promo is in phase on the shared server, and
// returns it fresh.
func reachesPhase(ctx context.Context, promo *v1alpha1.Promotion, phase v1alpha1.PromotionPhase) *v1alpha1.Promotion {
	GinkgoHelper()
	return reachesPhaseOn(ctx, shared.AdminClient(), promo, phase)
}

// reachesPhaseOn waits until promo is in phase as c sees it.
func reachesPhaseOn(ctx context.Context, c client.Client, promo *v1alpha1.Promotion, phase v1alpha1.PromotionPhase) *v1alpha1.Promotion {
	GinkgoHelper()
	got := &v1alpha1.Promotion{}
	Eventually(func() v1alpha1.PromotionPhase {
		_ = c.Get(ctx, client.ObjectKeyFromObject(promo), got)
		return got.Status.Phase
	}).WithContext(ctx).WithTimeout(30*time.Second).Should(Equal(phase), "promotion %s", promo.Name)
	return got
}

// staysInPhase checks that promo reaches phase and does not move on for a
// while.
func staysInPhase(ctx context.Context, promo *v1alpha1.Promotion, phase v1alpha1.PromotionPhase) {
	GinkgoHelper()
	reachesPhase(ctx, promo, phase)
	Consistently(func() v1alpha1.PromotionPhase {
		got := &v1alpha1.Promotion{}
		_ = shared.AdminClient().Get(ctx, client.ObjectKeyFromObject(promo), got)
		return got.Status.Phase
	}).WithContext(ctx).WithTimeout(2 * time.Second).Should(Equal(phase))
}

func currentRelease(ctx context.Context, ns, env string) func() string {
	return func() string {
		e := &v1alpha1.Environment{}
		_ = shared.AdminClient().Get(ctx, client.ObjectKey{Namespace: ns, Name: env}, e)
		return e.Status.CurrentRelease
	}
}

var _ = Describe("promotions", func() {
	var (
		admin client.Client
		ns    string
	)
	BeforeEach(func(ctx SpecContext) {
		admin = shared.AdminClient()
		ns = newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, environment(ns, "dev"))).To(Succeed())
	})

	It("a release promoted to prod waits for two distinct approvers; the requester's own approval does not count", func(ctx SpecContext) {
		for _, u := range []string{"alice", "bob", "carol"} {
			bindRole(ctx, admin, ns, "approver", u)
		}
		bindRole(ctx, admin, ns, "releaser", "alice")
		alice, bob, carol := shared.UserClient("alice"), shared.UserClient("bob"), shared.UserClient("carol")
		Expect(admin.Create(ctx, approvalGate(ns, "two-approvers"))).To(Succeed())
		prod := environment(ns, "prod", "dev")
		prod.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "two-approvers"}}
		Expect(admin.Create(ctx, prod)).To(Succeed())

		toDev := promote(ctx, alice, ns, "shop-1", "dev")
		reachesPhase(ctx, toDev, v1alpha1.PromotionSucceeded)
		Eventually(currentRelease(ctx, ns, "dev")).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal("shop-1"))

		toProd := promote(ctx, alice, ns, "shop-1", "prod")
		got := reachesPhase(ctx, toProd, v1alpha1.PromotionAwaitingApproval)
		Expect(got.Status.Decision.Result).To(Equal(v1alpha1.DecisionPending))
		Expect(got.Status.Decision.ReasonCodes).To(ContainElement("approval.insufficient"))

		approve(ctx, alice, toProd, v1alpha1.ApprovalApprove)
		approve(ctx, bob, toProd, v1alpha1.ApprovalApprove)
		staysInPhase(ctx, toProd, v1alpha1.PromotionAwaitingApproval)
		got = reachesPhase(ctx, toProd, v1alpha1.PromotionAwaitingApproval)
		Expect(got.Status.Gates[0].ReasonCodes).To(ContainElement("approval.requester-cannot-approve"))

		Eventually(func(g Gomega) {
			var list v1alpha1.ApprovalList
			g.Expect(admin.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			byApprover := map[string]v1alpha1.ApprovalStatus{}
			for _, a := range list.Items {
				byApprover[a.Spec.Approver] = a.Status
			}
			g.Expect(byApprover["alice"].Counted).To(HaveValue(BeFalse()))
			g.Expect(byApprover["alice"].Reason).To(Equal("approval.requester-cannot-approve"))
			g.Expect(byApprover["bob"].Counted).To(HaveValue(BeTrue()))
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())

		approve(ctx, carol, toProd, v1alpha1.ApprovalApprove)
		got = reachesPhase(ctx, toProd, v1alpha1.PromotionSucceeded)
		Expect(got.Status.Decision.Result).To(Equal(v1alpha1.DecisionAllow))
		Expect(string(got.Status.Decision.DeterminismHash)).To(MatchRegexp(`^sha256:[a-f0-9]{64}$`))
		Expect(string(got.Status.Decision.InputsDigest)).To(MatchRegexp(`^sha256:[a-f0-9]{64}$`))
		Eventually(currentRelease(ctx, ns, "prod")).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal("shop-1"))
	})

	It("rejects a release that has not succeeded upstream, whatever the gates say", func(ctx SpecContext) {
		Expect(admin.Create(ctx, environment(ns, "prod", "dev"))).To(Succeed())
		got := reachesPhase(ctx, promote(ctx, admin, ns, "shop-1", "prod"), v1alpha1.PromotionRejected)
		Expect(got.Status.Decision.ReasonCodes).To(Equal([]string{"promotion.upstream-not-succeeded"}))
	})

	It("a rejection by an approver rejects the promotion", func(ctx SpecContext) {
		bindRole(ctx, admin, ns, "approver", "bob")
		Expect(admin.Create(ctx, approvalGate(ns, "two-approvers"))).To(Succeed())
		gated := environment(ns, "gated")
		gated.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "two-approvers"}}
		Expect(admin.Create(ctx, gated)).To(Succeed())
		promo := promote(ctx, admin, ns, "shop-1", "gated")
		reachesPhase(ctx, promo, v1alpha1.PromotionAwaitingApproval)
		approve(ctx, shared.UserClient("bob"), promo, v1alpha1.ApprovalReject)
		got := reachesPhase(ctx, promo, v1alpha1.PromotionRejected)
		Expect(got.Status.Decision.ReasonCodes).To(ContainElement("approval.rejected"))
	})

	It("decides by a CUE policy, with reasons, and a policy that does not compile stalls its gate and fails closed", func(ctx SpecContext) {
		Expect(admin.Create(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-rc"},
			Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: `
import "strings"
allow: !strings.Contains(input.release.version, "-rc")
reasons: [if !allow {"release candidates stay out of this environment"}]
`}}})).To(Succeed())
		guarded := environment(ns, "guarded")
		guarded.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "no-rc"}}
		Expect(admin.Create(ctx, guarded)).To(Succeed())
		Expect(admin.Create(ctx, release(ns, "shop-2-rc", "2.0.0-rc.1"))).To(Succeed())

		reachesPhase(ctx, promote(ctx, admin, ns, "shop-1", "guarded"), v1alpha1.PromotionSucceeded)
		denied := reachesPhase(ctx, promote(ctx, admin, ns, "shop-2-rc", "guarded"), v1alpha1.PromotionRejected)
		Expect(denied.Status.Decision.ReasonCodes).To(Equal([]string{"policy.denied"}))
		Expect(denied.Status.Gates[0].Message).To(ContainSubstring("release candidates stay out"))
		Expect(string(denied.Status.Decision.PolicyDigest)).To(HavePrefix("sha256:"))

		Expect(admin.Create(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"},
			Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: "allow: true &&& false\nreasons: []"}}})).To(Succeed())
		Eventually(func(g Gomega) {
			gate := &v1alpha1.Gate{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "broken"}, gate)).To(Succeed())
			g.Expect(conditionMessage(gate.Status.Conditions, v1alpha1.ConditionStalled)).To(ContainSubstring("spec.policy.source"))
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
		broken := environment(ns, "broken-env")
		broken.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "broken"}}
		Expect(admin.Create(ctx, broken)).To(Succeed())
		got := reachesPhase(ctx, promote(ctx, admin, ns, "shop-1", "broken-env"), v1alpha1.PromotionRejected)
		Expect(got.Status.Decision.ReasonCodes).To(Equal([]string{"gate.invalid"}))
	})

	It("deploys in rolling batches and stops at the first failed target", func(ctx SpecContext) {
		rolling := environment(ns, "stage")
		one := intstr.FromInt32(1)
		rolling.Spec.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "stage"}}
		rolling.Spec.Strategy = &v1alpha1.DeployStrategy{Type: v1alpha1.StrategyRolling, Rolling: &v1alpha1.RollingStrategy{MaxUnavailable: &one}}
		Expect(admin.Create(ctx, rolling)).To(Succeed())
		for _, name := range []string{"web-1", "web-2", "web-3"} {
			Expect(admin.Create(ctx, &v1alpha1.Target{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"env": "stage"}},
				Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-1"},
			})).To(Succeed())
		}
		bindRole(ctx, admin, ns, "agent", "host-1")
		agent := shared.UserClient("host-1")

		promo := promote(ctx, admin, ns, "shop-1", "stage")
		reachesPhase(ctx, promo, v1alpha1.PromotionDeploying)
		first := taskOf(ctx, promo, "web-1")
		Expect(first.Spec.Components).To(HaveLen(2))
		Expect(tasksOf(ctx, promo)).To(HaveLen(1), "one target at a time")

		report(ctx, agent, first, v1alpha1.DeployTaskSucceeded, "deployed")
		second := taskOf(ctx, promo, "web-2")
		report(ctx, agent, second, v1alpha1.DeployTaskFailed, "health check failed: connection refused")

		got := reachesPhase(ctx, promo, v1alpha1.PromotionFailed)
		Expect(conditionMessage(got.Status.Conditions, v1alpha1.ConditionReady)).To(ContainSubstring("web-2"))
		Expect(tasksOf(ctx, promo)).To(HaveLen(2), "the rollout stops before web-3")
		Expect(currentRelease(ctx, ns, "stage")()).To(BeEmpty())
	})

	It("rolls the changed targets back to what they ran before when a target fails", func(ctx SpecContext) {
		env := environment(ns, "stage")
		env.Spec.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "stage"}}
		env.Spec.Strategy = &v1alpha1.DeployStrategy{Type: v1alpha1.StrategyRolling}
		env.Spec.RollbackOnFailure = true
		Expect(admin.Create(ctx, env)).To(Succeed())
		old := release(ns, "shop-0", "0.9.0")
		Expect(admin.Create(ctx, old)).To(Succeed())
		for _, name := range []string{"web-1", "web-2", "web-3"} {
			t := &v1alpha1.Target{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"env": "stage"}},
				Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-1"},
			}
			Expect(admin.Create(ctx, t)).To(Succeed())
			before := t.DeepCopy()
			t.Status.Observed = &v1alpha1.VersionSticker{Release: "shop-0", Version: "0.9.0",
				Components: []v1alpha1.ComponentDigest{{Name: "api", Image: old.Spec.Components[0].Image}}}
			Expect(admin.Status().Patch(ctx, t, client.MergeFrom(before))).To(Succeed())
		}
		bindRole(ctx, admin, ns, "agent", "host-1")
		agent := shared.UserClient("host-1")

		promo := promote(ctx, admin, ns, "shop-1", "stage")
		report(ctx, agent, taskOf(ctx, promo, "web-1"), v1alpha1.DeployTaskSucceeded, "deployed")
		second := taskOf(ctx, promo, "web-2")
		Expect(second.Spec.Previous.Release).To(Equal("shop-0"))
		report(ctx, agent, second, v1alpha1.DeployTaskFailed, "health check failed")

		var rollbacks []v1alpha1.DeployTask
		Eventually(func() int {
			rollbacks = nil
			for _, t := range tasksOf(ctx, promo) {
				if t.Spec.Action == v1alpha1.DeployActionRollback {
					rollbacks = append(rollbacks, t)
				}
			}
			return len(rollbacks)
		}).WithContext(ctx).WithTimeout(30*time.Second).Should(Equal(2), "web-1 and web-2 go back; web-3 was never touched")
		for i := range rollbacks {
			Expect(rollbacks[i].Spec.Release).To(Equal("shop-0"))
			Expect(rollbacks[i].Spec.Components[0].Image).To(Equal(old.Spec.Components[0].Image))
			report(ctx, agent, &rollbacks[i], v1alpha1.DeployTaskSucceeded, "rolled back")
		}
		got := reachesPhase(ctx, promo, v1alpha1.PromotionRolledBack)
		Expect(conditionMessage(got.Status.Conditions, v1alpha1.ConditionReady)).To(ContainSubstring("rolled back 2 target(s)"))
		record := sealedRolloutPacket(ctx, admin, promo)
		Expect(record.Status.Verified).To(BeTrue())
		Expect(record.Spec.Type).To(Equal(v1alpha1.EvidenceRollback))
		Expect(record.Spec.Subjects).To(ConsistOf(HaveField("Image", old.Spec.Components[0].Image)), "a rollback record is about the images restored")
		Eventually(func() []v1alpha1.EnvironmentHistoryEntry {
			e := &v1alpha1.Environment{}
			_ = admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "stage"}, e)
			return e.Status.History
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(ContainElement(HaveField("Phase", v1alpha1.PromotionRolledBack)))
	})

	It("queues promotions into one environment and runs them one at a time", func(ctx SpecContext) {
		Expect(admin.Create(ctx, approvalGate(ns, "two-approvers"))).To(Succeed())
		gated := environment(ns, "gated")
		gated.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "two-approvers"}}
		Expect(admin.Create(ctx, gated)).To(Succeed())
		Expect(admin.Create(ctx, release(ns, "shop-2", "2.0.0"))).To(Succeed())

		firstPromo := promote(ctx, admin, ns, "shop-1", "gated")
		reachesPhase(ctx, firstPromo, v1alpha1.PromotionAwaitingApproval)
		second := promote(ctx, admin, ns, "shop-2", "gated")
		staysInPhase(ctx, second, v1alpha1.PromotionPending)
		queued := &v1alpha1.Promotion{}
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(second), queued)).To(Succeed())
		Expect(conditionMessage(queued.Status.Conditions, v1alpha1.ConditionReconciling)).To(ContainSubstring(firstPromo.Name))

		bindRole(ctx, admin, ns, "approver", "bob")
		approve(ctx, shared.UserClient("bob"), firstPromo, v1alpha1.ApprovalReject)
		reachesPhase(ctx, firstPromo, v1alpha1.PromotionRejected)
		reachesPhase(ctx, second, v1alpha1.PromotionAwaitingApproval)
	})

	It("runs promotions created within one second in the order they were created, whatever their names", func(ctx SpecContext) {
		Expect(admin.Create(ctx, approvalGate(ns, "two-approvers"))).To(Succeed())
		gated := environment(ns, "gated")
		gated.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "two-approvers"}}
		Expect(admin.Create(ctx, gated)).To(Succeed())
		var promos []*v1alpha1.Promotion
		for _, name := range []string{"c-first", "b-second", "a-third"} {
			p := promotion(ns, name, "shop-1", "gated")
			Expect(admin.Create(ctx, p)).To(Succeed())
			promos = append(promos, p)
		}
		behind := func(p *v1alpha1.Promotion, ahead string) {
			GinkgoHelper()
			Eventually(func() string {
				_ = admin.Get(ctx, client.ObjectKeyFromObject(p), p)
				return conditionMessage(p.Status.Conditions, v1alpha1.ConditionReconciling)
			}).WithContext(ctx).WithTimeout(30*time.Second).Should(ContainSubstring("waiting for promotion "+ahead+" "), "promotion %s", p.Name)
		}

		promos[0] = reachesPhase(ctx, promos[0], v1alpha1.PromotionAwaitingApproval)
		behind(promos[1], "c-first")
		behind(promos[2], "c-first")
		By("recording each one's creation revision, increasing in creation order")
		var revisions []int
		for _, p := range promos {
			n, err := strconv.Atoi(p.Status.CreationRevision)
			Expect(err).NotTo(HaveOccurred(), "promotion %s", p.Name)
			revisions = append(revisions, n)
		}
		Expect(slices.IsSorted(revisions)).To(BeTrue(), "revisions %v", revisions)
		By("refusing to move a promotion in the queue by rewriting its revision")
		jump := promos[2].DeepCopy()
		jump.Status.CreationRevision = "1"
		err := admin.Status().Patch(ctx, jump, client.MergeFrom(promos[2]))
		Expect(err).To(MatchError(ContainSubstring("creationRevision is set once and never changes")))

		bindRole(ctx, admin, ns, "approver", "bob")
		approve(ctx, shared.UserClient("bob"), promos[0], v1alpha1.ApprovalReject)
		reachesPhase(ctx, promos[1], v1alpha1.PromotionAwaitingApproval)
		behind(promos[2], "b-second")
	})
})

func conditionMessage(conds []metav1.Condition, t string) string {
	for _, c := range conds {
		if c.Type == t {
			return c.Message
		}
	}
	return ""
}

func tasksOf(ctx context.Context, promo *v1alpha1.Promotion) []v1alpha1.DeployTask {
	var list v1alpha1.DeployTaskList
	Expect(shared.AdminClient().List(ctx, &list, client.InNamespace(promo.Namespace), client.MatchingLabels{v1alpha1.LabelPromotion: v1alpha1.LabelValue(promo.Name)})).To(Succeed())
	return list.Items
}

// taskOf waits for the DeployTask of promo and target.
func taskOf(ctx context.Context, promo *v1alpha1.Promotion, target string) *v1alpha1.DeployTask {
	GinkgoHelper()
	var found *v1alpha1.DeployTask
	Eventually(func() bool {
		for _, t := range tasksOf(ctx, promo) {
			if t.Spec.Target == target {
				found = &t
				return true
			}
		}
		return false
	}).WithContext(ctx).WithTimeout(30*time.Second).Should(BeTrue(), "a DeployTask for %s", target)
	return found
}

// report writes a task's result as the agent serving its target would.
func report(ctx context.Context, agent client.Client, task *v1alpha1.DeployTask, phase v1alpha1.DeployTaskPhase, message string) {
	GinkgoHelper()
	before := task.DeepCopy()
	task.Status.Phase = phase
	task.Status.Message = message
	now := metav1.Now()
	task.Status.FinishedAt = &now
	Expect(agent.Status().Patch(ctx, task, client.MergeFrom(before))).To(Succeed())
}

var _ = Describe("a promotion across a server restart", func() {
	It("resumes where it was, with the same decision and no DeployTask twice", func(ctx SpecContext) {
		srv := startServer(framework.ServerOptions{})
		admin := srv.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		env := environment(ns, "stage")
		env.Spec.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "stage"}}
		env.Spec.Strategy = &v1alpha1.DeployStrategy{Type: v1alpha1.StrategyRolling}
		Expect(admin.Create(ctx, env)).To(Succeed())
		for _, name := range []string{"web-1", "web-2"} {
			Expect(admin.Create(ctx, &v1alpha1.Target{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"env": "stage"}},
				Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-1"},
			})).To(Succeed())
		}
		promo := promote(ctx, admin, ns, "shop-1", "stage")
		var first *v1alpha1.DeployTask
		Eventually(func(g Gomega) {
			var list v1alpha1.DeployTaskList
			g.Expect(admin.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(HaveLen(1))
			first = &list.Items[0]
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
		decided := &v1alpha1.Promotion{}
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(promo), decided)).To(Succeed())
		Expect(decided.Status.Decision).NotTo(BeNil(), "the decision is stored before any DeployTask exists")

		Expect(srv.Stop()).To(Succeed())
		again := startServer(framework.ServerOptions{DataDir: srv.DataDir, Listen: srv.Listen})
		admin = again.AdminClient()
		report(ctx, admin, first, v1alpha1.DeployTaskSucceeded, "deployed")

		Eventually(func(g Gomega) {
			var list v1alpha1.DeployTaskList
			g.Expect(admin.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(HaveLen(2))
			for _, t := range list.Items {
				if t.Status.Phase == "" {
					report(ctx, admin, &t, v1alpha1.DeployTaskSucceeded, "deployed")
				}
			}
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
		done := &v1alpha1.Promotion{}
		Eventually(func() v1alpha1.PromotionPhase {
			_ = admin.Get(ctx, client.ObjectKeyFromObject(promo), done)
			return done.Status.Phase
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal(v1alpha1.PromotionSucceeded))
		Expect(done.Status.Decision).To(Equal(decided.Status.Decision), "the decision is made once")
		var list v1alpha1.DeployTaskList
		Expect(admin.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		Expect(list.Items).To(HaveLen(2), "one DeployTask per target, whatever the restarts")

		// The decision may be sealed before the restart or after it, beside
		// the deployment record: each is logged once, in either order.
		packet := sealedPacket(ctx, admin, done)
		deployment := sealedRolloutPacket(ctx, admin, promo)
		Expect(deployment.Spec.Type).To(Equal(v1alpha1.EvidenceDeployment))
		Expect([]string{packet.Status.LogIndex, deployment.Status.LogIndex}).To(ConsistOf("0", "1"))
		Expect(again.Stop()).To(Succeed())
		entries, err := evidence.OpenLog(filepath.Join(again.DataDir, "evidence"), GinkgoLogr)
		Expect(err).NotTo(HaveOccurred())
		defer entries.Close()
		Expect(entries.Size()).To(Equal(uint64(2)), "the decision and the deployment are logged once each, whatever the restarts")
	})
})
