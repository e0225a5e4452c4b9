package e2e

import (
	"os/exec"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

var _ = Describe("stella-agent", func() {
	It("reports its status and heartbeats with the agent role, and reports itself stopped", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, &v1alpha1.Agent{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "host-1"},
			Spec:       v1alpha1.AgentSpec{Capabilities: []v1alpha1.TargetType{v1alpha1.TargetTypeDocker}},
		})).To(Succeed())
		for _, name := range []string{"web-2", "web-1"} {
			Expect(admin.Create(ctx, &v1alpha1.Target{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-1"},
			})).To(Succeed())
		}
		Expect(admin.Create(ctx, &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "elsewhere"},
			Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-2"},
		})).To(Succeed())
		bindRole(ctx, admin, ns, "agent", "host-1")
		kubeconfig := shared.UserKubeconfig(GinkgoT().TempDir(), "host-1")

		agentCmd := exec.Command(bin.StellaAgent, "run", "--name", "host-1", "-n", ns, "--kubeconfig", kubeconfig, "--heartbeat", "1s")
		session, err := gexec.Start(agentCmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { session.Kill() })

		agent := &v1alpha1.Agent{}
		Eventually(func(g Gomega) {
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "host-1"}, agent)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(agent.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(agent.Status.ServedTargets).To(Equal([]string{"web-1", "web-2"}))
		Expect(agent.Status.Hostname).NotTo(BeEmpty())
		Expect(agent.Status.Version).NotTo(BeEmpty())

		lease := &coordinationv1.Lease{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "agent-host-1"}, lease)).To(Succeed())
		first := lease.Spec.RenewTime.Time
		Eventually(func() time.Time {
			_ = admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "agent-host-1"}, lease)
			return lease.Spec.RenewTime.Time
		}).WithContext(ctx).WithTimeout(10*time.Second).Should(BeTemporally(">", first), "the agent renews its Lease")

		session.Signal(syscall.SIGTERM)
		Eventually(session).WithTimeout(20 * time.Second).Should(gexec.Exit(0))
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "host-1"}, agent)).To(Succeed())
		ready := meta.FindStatusCondition(agent.Status.Conditions, v1alpha1.ConditionReady)
		Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		Expect(ready.Reason).To(Equal("Stopped"))
	})

	It("says which object is missing when its Agent does not exist", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		bindRole(ctx, admin, ns, "agent", "ghost")
		kubeconfig := shared.UserKubeconfig(GinkgoT().TempDir(), "ghost")
		out, err := exec.CommandContext(ctx, bin.StellaAgent, "run", "--name", "ghost", "-n", ns, "--kubeconfig", kubeconfig).CombinedOutput()
		Expect(err).To(HaveOccurred())
		Expect(string(out)).To(ContainSubstring("Agent " + ns + "/ghost does not exist"))
	})
})
