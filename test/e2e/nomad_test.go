package e2e

import (
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
	testnomad "github.com/stella-ops/stella/test/nomad"
)

// The Nomad of this story is a real Nomad v1.6.0 dev agent (built by
// hack/nomad/build) with ACLs on, running tasks on the local Docker engine.
var _ = Describe("a release deployed by the server to a Nomad job", func() {
	It("pins the job through canaries, fails when Nomad auto-reverts a crashing release, rolls back and reports drift", func(ctx SpecContext) {
		agent := testnomad.Start(GinkgoT())
		_, admin, ns, refs, _ := hostStory(ctx)
		_, _, err := agent.Client.Jobs().Register(testnomad.Job("shop", refs["v1"][:strings.LastIndexByte(refs["v1"], '@')]+":v1", 1), nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { agent.StopJob(GinkgoT(), "shop") })
		Expect(admin.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nomad-token"},
			Data:       map[string][]byte{"token": []byte(agent.Token)},
		})).To(Succeed())
		prodEnvironment(ctx, ns, v1alpha1.StrategyAllAtOnce)
		Expect(admin.Create(ctx, &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cluster", Labels: map[string]string{"env": "prod"}},
			Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeNomad, Nomad: &v1alpha1.NomadTarget{
				Address: agent.Address, Job: "shop", TokenSecretRef: &v1alpha1.SecretKeyReference{Name: "nomad-token", Key: "token"},
			}},
		})).To(Succeed())
		for _, v := range []string{"v1", "v2", "crash"} {
			Expect(admin.Create(ctx, appRelease(ns, "shop-"+v, map[string]string{"v1": "1.0.0", "v2": "2.0.0", "crash": "3.0.0"}[v], refs[v]))).To(Succeed())
		}
		jobRelease := func() string {
			job, _, err := agent.Client.Jobs().Info("shop", nil)
			if err != nil {
				return ""
			}
			return job.Meta[agents.LabelRelease]
		}

		By("promoting v1 and v2: each is a new version of the job, its canary promoted once healthy")
		for _, v := range []string{"v1", "v2"} {
			endsIn(ctx, promote(ctx, admin, ns, "shop-"+v, "prod"), v1alpha1.PromotionSucceeded)
			Expect(jobRelease()).To(Equal("shop-" + v))
			Eventually(target(ctx, ns, "cluster")).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
				HaveField("Drift", v1alpha1.DriftInSync), HaveField("Health", v1alpha1.HealthHealthy), HaveField("Observed.Release", "shop-"+v)))
		}

		By("promoting a release that crashes: Nomad's deployment fails and auto-reverts, and v2 runs as before")
		crash := endsIn(ctx, promote(ctx, admin, ns, "shop-crash", "prod"), v1alpha1.PromotionFailed)
		task := taskOf(ctx, crash, "cluster")
		Expect(task.Status.Phase).To(Equal(v1alpha1.DeployTaskRolledBack))
		Expect(task.Status.Message).To(ContainSubstring("Docker container exited with non-zero exit code: 1"))
		Expect(jobRelease()).To(Equal("shop-v2"))
		Eventually(target(ctx, ns, "cluster")).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			HaveField("Drift", v1alpha1.DriftInSync), HaveField("Observed.Release", "shop-v2")))

		By("rolling prod back to v1 with stellactl")
		out, err := stellactl(ctx, shared.Kubeconfig(), "rollback", "prod", "--to", "shop-v1", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		name := regexp.MustCompile(`promotion.stella-ops.org/(\S+) created`).FindStringSubmatch(out)
		Expect(name).To(HaveLen(2), out)
		endsIn(ctx, &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name[1]}}, v1alpha1.PromotionSucceeded)
		Expect(jobRelease()).To(Equal("shop-v1"))

		By("running the job by hand with v2: the target is reported Drifted")
		_, _, err = agent.Client.Jobs().Register(testnomad.Job("shop", refs["v2"], 1), nil)
		Expect(err).NotTo(HaveOccurred())
		Eventually(target(ctx, ns, "cluster")).WithContext(ctx).WithTimeout(90 * time.Second).Should(And(
			HaveField("Drift", v1alpha1.DriftDrifted),
			HaveField("Conditions", ContainElement(And(HaveField("Type", "Drifted"), HaveField("Message", ContainSubstring(digestOf(refs["v2"]))))))))
	})
})
