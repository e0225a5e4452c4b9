package e2e

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/framework"
)

// memoryBombPolicy asks for a five-gigabyte string.
const memoryBombPolicy = `import "strings"
allow: len(strings.Repeat(strings.Repeat("x", 1000000), 5000)) > 0
reasons: []
`

// spinningPolicy never finishes: four nested for clauses over a hundred
// numbers are a hundred million iterations.
const spinningPolicy = `import "list"
_n: list.Range(0, 100, 1)
_sums: [for a in _n for b in _n for c in _n for d in _n if a+b+c+d < 0 {a}]
allow: len(_sums) == 0
reasons: []
`

var _ = Describe("policy budgets", func() {
	It("a memory bomb and a policy that never finishes stall their own gates, the server stays up, and another namespace's policy still decides", func(ctx SpecContext) {
		By("running a server of its own under a hard memory bound: 16 GiB of address space, of which embedded etcd maps about 10, and GOMEMLIMIT")
		o := framework.ServerOptions{AddressSpace: 16 << 30, Env: []string{"GOMEMLIMIT=1GiB"}, Args: []string{"--scan=false"}}
		s := startServer(o)
		admin := s.AdminClient()

		By("a tenant creating a gate with each policy, each guarding an environment")
		tenant := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(tenant, "shop-1", "1.0.0"))).To(Succeed())
		for name, source := range map[string]string{"bomb": memoryBombPolicy, "spin": spinningPolicy} {
			Expect(admin.Create(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name},
				Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: source}}})).To(Succeed())
			env := environment(tenant, name+"-env")
			env.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: name}}
			Expect(admin.Create(ctx, env)).To(Succeed())
		}

		allowed := func(promo *v1alpha1.Promotion) {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				got := &v1alpha1.Promotion{}
				g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(promo), got)).To(Succeed())
				g.Expect(got.Status.Decision).NotTo(BeNil())
				g.Expect(got.Status.Decision.Result).To(Equal(v1alpha1.DecisionAllow))
			}).WithContext(ctx).WithTimeout(30*time.Second).Should(Succeed(), "promotion %s", promo.Name)
		}

		By("another tenant's trivial policy gate deciding its promotion meanwhile")
		other := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(other, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "trivial"},
			Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: "allow: input.release.version == \"1.0.0\"\nreasons: []\n"}}})).To(Succeed())
		guarded := environment(other, "prod")
		guarded.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "trivial"}}
		Expect(admin.Create(ctx, guarded)).To(Succeed())
		promo := promote(ctx, admin, other, "shop-1", "prod")
		allowed(promo)
		Eventually(func(g Gomega) {
			gate := &v1alpha1.Gate{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: other, Name: "trivial"}, gate)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(gate.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())

		By("the tenant's gates are Stalled, each naming the budget it exceeded")
		stalledFor := func(ns, name, budget string, generation int64) {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				gate := &v1alpha1.Gate{}
				g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, gate)).To(Succeed())
				stalled := meta.FindStatusCondition(gate.Status.Conditions, v1alpha1.ConditionStalled)
				g.Expect(stalled).NotTo(BeNil())
				g.Expect(stalled.ObservedGeneration).To(Equal(generation))
				g.Expect(stalled.Reason).To(Equal(v1alpha1.ReasonPolicyBudgetExceeded))
				g.Expect(stalled.Message).To(ContainSubstring("spec.policy.source: policy exceeded its " + budget + " budget"))
			}).WithContext(ctx).WithTimeout(30*time.Second).Should(Succeed(), "gate %s/%s", ns, name)
		}
		stalledFor(tenant, "bomb", "memory", 1)
		stalledFor(tenant, "spin", "time", 1)

		By("their promotions fail closed")
		for _, env := range []string{"bomb-env", "spin-env"} {
			got := reachesPhaseOn(ctx, admin, promote(ctx, admin, tenant, "shop-1", env), v1alpha1.PromotionRejected)
			Expect(got.Status.Decision.ReasonCodes).To(Equal([]string{"gate.invalid"}))
			Expect(got.Status.Gates[0].Message).To(ContainSubstring("budget"))
		}

		By("the server is still the process that started, and serves")
		Expect(s.Wait(time.Second)).To(MatchError(ContainSubstring("still running")))
		Expect(s.Log()).NotTo(ContainSubstring("out of memory"))

		By("a restart on the same data finds the policies again and survives them too")
		Expect(s.Stop()).To(Succeed())
		o.DataDir, o.Listen = s.DataDir, s.Listen
		s = startServer(o)
		admin = s.AdminClient()
		// A second environment: a promotion waits behind the one in flight
		// to the first.
		again := environment(other, "prod-2")
		again.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "trivial"}}
		Expect(admin.Create(ctx, again)).To(Succeed())
		allowed(promote(ctx, admin, other, "shop-1", "prod-2"))
		By("the tenant editing the bomb into a larger one, which the restarted server runs and survives")
		bomb := &v1alpha1.Gate{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "bomb"}, bomb)).To(Succeed())
		bomb.Spec.Policy.Source = strings.Replace(memoryBombPolicy, "5000", "6000", 1)
		Expect(admin.Update(ctx, bomb)).To(Succeed())
		stalledFor(tenant, "bomb", "memory", 2)
		stalledFor(tenant, "spin", "time", 1)
		Expect(s.Wait(time.Second)).To(MatchError(ContainSubstring("still running")))
	})
})
