package e2e

import (
	"os/exec"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agent"
	"github.com/stella-ops/stella/internal/scheme"
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

var _ = Describe("an agent's own identity", func() {
	It("is had with a one-time join token, renews itself, and reaches only its own Agent, Targets and DeployTasks", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		other := newNamespace(ctx, admin)
		identities := map[string]*agent.Identity{}
		for _, name := range []string{"host-a", "host-b"} {
			args := joinArgs(ctx, ns, name)
			o := agent.JoinOptions{Server: args[1], CAHash: args[3], Token: args[5], CertTTL: time.Hour}
			dir := GinkgoT().TempDir()
			Expect(agent.Join(ctx, dir, ns, name, o)).To(Succeed())
			err := agent.Join(ctx, GinkgoT().TempDir(), ns, name, o)
			Expect(err).To(HaveOccurred(), "a join token works once")
			id, err := agent.LoadIdentity(dir, ns, name, time.Hour)
			Expect(err).NotTo(HaveOccurred())
			identities[name] = id
		}
		for _, name := range []string{"a", "b"} {
			Expect(admin.Create(ctx, &v1alpha1.Target{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-" + name},
				Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-" + name},
			})).To(Succeed())
			Expect(admin.Create(ctx, &v1alpha1.DeployTask{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "task-" + name, Labels: map[string]string{v1alpha1.LabelAgent: "host-" + name}},
				Spec: v1alpha1.DeployTaskSpec{Promotion: "p", Target: "web-" + name, Release: "shop-1",
					Components: []v1alpha1.ComponentDigest{{Name: "api", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@" + digest("api"))}}},
			})).To(Succeed())
		}

		cfg, err := identities["host-a"].RESTConfig()
		Expect(err).NotTo(HaveOccurred())
		a, err := client.New(cfg, client.Options{Scheme: scheme.New()})
		Expect(err).NotTo(HaveOccurred())
		forbidden := func(err error) {
			GinkgoHelper()
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
		}

		By("reading its own objects in the shapes that name it")
		var tasks v1alpha1.DeployTaskList
		Expect(a.List(ctx, &tasks, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelAgent: "host-a"})).To(Succeed())
		Expect(tasks.Items).To(ConsistOf(HaveField("Name", "task-a")))
		var targets v1alpha1.TargetList
		Expect(a.List(ctx, &targets, client.InNamespace(ns), client.MatchingFields{v1alpha1.FieldTargetAgent: "host-a"})).To(Succeed())
		Expect(targets.Items).To(ConsistOf(HaveField("Name", "web-a")))
		Expect(a.Get(ctx, client.ObjectKey{Namespace: ns, Name: "host-a"}, &v1alpha1.Agent{})).To(Succeed())

		By("writing the status of its own task and target")
		own := &tasks.Items[0]
		before := own.DeepCopy()
		own.Status.Phase = v1alpha1.DeployTaskRunning
		Expect(a.Status().Patch(ctx, own, client.MergeFrom(before))).To(Succeed())
		ownTarget := &targets.Items[0]
		beforeTarget := ownTarget.DeepCopy()
		ownTarget.Status.Drift = v1alpha1.DriftInSync
		Expect(a.Status().Patch(ctx, ownTarget, client.MergeFrom(beforeTarget))).To(Succeed())

		By("reading its task again by name and label, and finding its late result refused once the server timed the task out")
		var again v1alpha1.DeployTaskList
		Expect(a.List(ctx, &again, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelAgent: "host-a"},
			client.MatchingFields{"metadata.name": "task-a"})).To(Succeed())
		Expect(again.Items).To(ConsistOf(HaveField("Status.Phase", v1alpha1.DeployTaskRunning)))
		timedOut := again.Items[0].DeepCopy()
		timedOut.Status.Phase = v1alpha1.DeployTaskTimedOut
		Expect(admin.Status().Patch(ctx, timedOut, client.MergeFrom(&again.Items[0]))).To(Succeed())
		late := timedOut.DeepCopy()
		late.Status.Phase = v1alpha1.DeployTaskSucceeded
		err = a.Status().Patch(ctx, late, client.MergeFrom(timedOut))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
		Expect(err.Error()).To(And(ContainSubstring("status.phase"), ContainSubstring("task ended")))

		By("neither reading nor writing agent B's")
		forbidden(a.List(ctx, &tasks, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelAgent: "host-b"}))
		forbidden(a.List(ctx, &tasks, client.InNamespace(ns)))
		forbidden(a.Get(ctx, client.ObjectKey{Namespace: ns, Name: "task-b"}, &v1alpha1.DeployTask{}))
		forbidden(a.List(ctx, &targets, client.InNamespace(ns), client.MatchingFields{v1alpha1.FieldTargetAgent: "host-b"}))
		forbidden(a.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-b"}, &v1alpha1.Target{}))
		forbidden(a.Get(ctx, client.ObjectKey{Namespace: ns, Name: "host-b"}, &v1alpha1.Agent{}))
		theirs := &v1alpha1.DeployTask{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "task-b"}, theirs)).To(Succeed())
		beforeTheirs := theirs.DeepCopy()
		theirs.Status.Phase = v1alpha1.DeployTaskSucceeded
		forbidden(a.Status().Patch(ctx, theirs, client.MergeFrom(beforeTheirs)))
		theirTarget := &v1alpha1.Target{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-b"}, theirTarget)).To(Succeed())
		beforeTheirTarget := theirTarget.DeepCopy()
		theirTarget.Status.Drift = v1alpha1.DriftDrifted
		forbidden(a.Status().Patch(ctx, theirTarget, client.MergeFrom(beforeTheirTarget)))
		forbidden(a.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent-host-b"}}))
		forbidden(a.List(ctx, &tasks, client.InNamespace(other), client.MatchingLabels{v1alpha1.LabelAgent: "host-a"}))
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "task-b"}, theirs)).To(Succeed())
		Expect(theirs.Status.Phase).To(BeEmpty(), "B's task is untouched")

		By("renewing its certificate and going on with the new one")
		serial := identities["host-a"].Serial()
		Expect(identities["host-a"].RenewNow(ctx)).To(Succeed())
		Expect(identities["host-a"].Serial()).NotTo(Equal(serial))
		Expect(a.List(ctx, &tasks, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelAgent: "host-a"})).To(Succeed())
	})
})
