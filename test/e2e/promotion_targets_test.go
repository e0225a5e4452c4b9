package e2e

import (
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// devEnvironment selects the Targets labelled env=dev, and is not allowed
// to be empty.
func devEnvironment(ns string) *v1alpha1.Environment {
	return &v1alpha1.Environment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dev"},
		Spec:       v1alpha1.EnvironmentSpec{Order: 10, TargetSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}},
	}
}

// dockerTarget is a dev Target served by agent.
func dockerTarget(ns, name, agent string) *v1alpha1.Target {
	return &v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"env": "dev"}},
		Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: agent},
	}
}

// readyOf returns the Ready condition of the promotion as stored.
func readyOf(ctx context.Context, promo *v1alpha1.Promotion) func() metav1.Condition {
	return func() metav1.Condition {
		got := &v1alpha1.Promotion{}
		_ = shared.AdminClient().Get(ctx, client.ObjectKeyFromObject(promo), got)
		if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady); c != nil {
			return *c
		}
		return metav1.Condition{}
	}
}

var _ = Describe("promotions and the targets they deploy to", func() {
	var (
		admin client.Client
		ns    string
	)
	BeforeEach(func(ctx SpecContext) {
		admin = shared.AdminClient()
		ns = newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, devEnvironment(ns))).To(Succeed())
	})

	It("a promotion with a 100-character name deploys: its DeployTask carries bounded labels and the full name in its spec", func(ctx SpecContext) {
		Expect(admin.Create(ctx, dockerTarget(ns, "web", "host-1"))).To(Succeed())
		name := strings.Repeat("shop-1-0-0-", 8) + "to-dev-long-name-x" // 106 characters
		Expect(len(name)).To(BeNumerically(">", 100))
		promo := promotion(ns, name, "shop-1", "dev")
		Expect(admin.Create(ctx, promo)).To(Succeed())

		reachesPhase(ctx, promo, v1alpha1.PromotionDeploying)
		task := taskOf(ctx, promo, "web")
		Expect(task.Spec.Promotion).To(Equal(name))
		Expect(task.Labels).To(HaveKeyWithValue(v1alpha1.LabelPromotion, v1alpha1.LabelValue(name)))
		Expect(task.Labels).To(HaveKeyWithValue(v1alpha1.LabelAgent, "host-1"))
		for key, value := range task.Labels {
			Expect(validation.IsValidLabelValue(value)).To(BeEmpty(), "label %s=%s", key, value)
		}
	})

	It("a promotion into an environment that selects no targets waits with the reason, and goes on once a Target appears", func(ctx SpecContext) {
		promo := promote(ctx, admin, ns, "shop-1", "dev")
		Eventually(readyOf(ctx, promo)).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			HaveField("Reason", v1alpha1.ReasonNoTargets), HaveField("Message", ContainSubstring("environment dev selects none"))))
		staysInPhase(ctx, promo, v1alpha1.PromotionApproved)
		Consistently(currentRelease(ctx, ns, "dev")).WithContext(ctx).WithTimeout(2 * time.Second).Should(BeEmpty())

		By("a Target appears: the promotion deploys to it")
		Expect(admin.Create(ctx, dockerTarget(ns, "web", "host-1"))).To(Succeed())
		reachesPhase(ctx, promo, v1alpha1.PromotionDeploying)
		Expect(taskOf(ctx, promo, "web").Spec.Release).To(Equal("shop-1"))
	})

	It("a Target whose agent never joined is Unknown and says so, and a promotion to it names that agent", func(ctx SpecContext) {
		Expect(admin.Create(ctx, dockerTarget(ns, "web", "host-1"))).To(Succeed())
		Eventually(target(ctx, ns, "web")).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			HaveField("Drift", v1alpha1.DriftUnknown),
			HaveField("Conditions", ContainElement(And(HaveField("Type", v1alpha1.ConditionReady), HaveField("Status", metav1.ConditionUnknown),
				HaveField("Reason", v1alpha1.ReasonAgentNotJoined), HaveField("Message", HavePrefix("agent host-1 has not joined"))))),
		))

		promo := promote(ctx, admin, ns, "shop-1", "dev")
		reachesPhase(ctx, promo, v1alpha1.PromotionDeploying)
		Eventually(readyOf(ctx, promo)).WithContext(ctx).WithTimeout(30 * time.Second).Should(
			HaveField("Message", ContainSubstring("waiting for agent host-1 has not joined")))

		By("the Agent is created but its host has not joined yet: still Unknown, with what to do")
		Expect(admin.Create(ctx, &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "host-1"},
			Spec: v1alpha1.AgentSpec{Capabilities: []v1alpha1.TargetType{v1alpha1.TargetTypeDocker}}})).To(Succeed())
		Eventually(target(ctx, ns, "web")).WithContext(ctx).WithTimeout(30 * time.Second).Should(
			HaveField("Conditions", ContainElement(And(HaveField("Reason", v1alpha1.ReasonAgentNotJoined),
				HaveField("Message", ContainSubstring("start stella-agent on its host"))))))
	})
})
