package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/images"
)

// appImages pushes the test app as v1, v2 and an unhealthy v3 to a registry
// on 127.0.0.1 and returns their references by digest. Every image and every
// container made from one is removed when the spec ends.
func appImages(ctx context.Context, docker *client.Client, repo string) map[string]string {
	GinkgoHelper()
	run := "e2e-" + rand.String(8)
	DeferCleanup(func(ctx SpecContext) { Expect(images.Cleanup(ctx, docker, run)).To(Succeed()) })
	reg, err := images.StartRegistry()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(reg.Close)
	refs, err := reg.PushVersions(ctx, repo, run)
	Expect(err).NotTo(HaveOccurred())
	return refs
}

// hostStory is how every story of an agent on the local Docker engine
// starts: a Docker client, a namespace, the test app's images, and a
// directory for the agent's state.
func hostStory(ctx context.Context) (docker *client.Client, admin ctrlclient.Client, ns string, refs map[string]string, stateDir string) {
	GinkgoHelper()
	docker = dockerClient(ctx)
	admin = shared.AdminClient()
	ns = newNamespace(ctx, admin)
	return docker, admin, ns, appImages(ctx, docker, "shop/api"), GinkgoT().TempDir()
}

// prodEnvironment creates the Environment prod, selecting the Targets
// labelled env=prod.
func prodEnvironment(ctx context.Context, ns string, strategy v1alpha1.StrategyType) {
	GinkgoHelper()
	env := environment(ns, "prod")
	env.Spec.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	env.Spec.Strategy = &v1alpha1.DeployStrategy{Type: strategy}
	Expect(shared.AdminClient().Create(ctx, env)).To(Succeed())
}

func dockerClient(ctx context.Context) *client.Client {
	GinkgoHelper()
	docker, err := client.New(client.FromEnv)
	Expect(err).NotTo(HaveOccurred())
	_, err = docker.Ping(ctx, client.PingOptions{})
	Expect(err).NotTo(HaveOccurred(), "these stories need a Docker engine")
	DeferCleanup(docker.Close)
	return docker
}

// startAgent lets Agent name of ns join with a join token and runs it,
// serving docker and compose targets, until the spec ends.
func startAgent(ctx context.Context, ns, name, stateDir string) *gexec.Session {
	GinkgoHelper()
	return runAgent(ns, name, stateDir, joinArgs(ctx, ns, name)...)
}

// runAgent runs stella-agent with the identity it keeps in stateDir, or
// joins with the given arguments, until the spec ends.
func runAgent(ns, name, stateDir string, join ...string) *gexec.Session {
	GinkgoHelper()
	cmd := exec.Command(bin.StellaAgent, append([]string{"run", "--name", name, "-n", ns,
		"--heartbeat", "1s", "--observe-every", "2s", "--state-dir", stateDir}, join...)...)
	session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { session.Terminate().Wait(30 * time.Second) })
	return session
}

// joinArgs runs stellactl agent join-token as the admin of the shared
// server and returns the --server, --ca-cert-hash and --join-token arguments
// it prints.
func joinArgs(ctx context.Context, ns, name string) []string {
	GinkgoHelper()
	return joinArgsOn(ctx, shared.Kubeconfig(), ns, name)
}

// joinArgsOn is joinArgs on the server of kubeconfig.
func joinArgsOn(ctx context.Context, kubeconfig, ns, name string) []string {
	GinkgoHelper()
	out, err := stellactl(ctx, kubeconfig, "agent", "join-token", name, "-n", ns, "--ttl", "10m")
	Expect(err).NotTo(HaveOccurred(), out)
	fields := strings.Fields(out)
	var args []string
	for i, f := range fields {
		if (f == "--server" || f == "--ca-cert-hash" || f == "--join-token") && i+1 < len(fields) {
			args = append(args, f, fields[i+1])
		}
	}
	Expect(args).To(HaveLen(6), "join-token printed:\n%s", out)
	return args
}

func appRelease(ns, name, version, image string) *v1alpha1.Release {
	return &v1alpha1.Release{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ReleaseSpec{Version: version, Components: []v1alpha1.ReleaseComponent{
			{Name: "api", Image: v1alpha1.ImageDigestRef(image)},
		}},
	}
}

// endsIn waits, longer than reachesPhase, for a promotion that deploys
// real containers.
func endsIn(ctx context.Context, promo *v1alpha1.Promotion, phase v1alpha1.PromotionPhase) *v1alpha1.Promotion {
	GinkgoHelper()
	got := &v1alpha1.Promotion{}
	Eventually(func(g Gomega) {
		g.Expect(shared.AdminClient().Get(ctx, ctrlclient.ObjectKeyFromObject(promo), got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(phase), "promotion %s: %s", promo.Name, conditionMessage(got.Status.Conditions, v1alpha1.ConditionReady))
	}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Succeed())
	return got
}

// runs says which digest the named container runs, by its labels, and
// whether it runs.
func runs(ctx context.Context, docker *client.Client, name string) func() string {
	return func() string {
		res, err := docker.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if err != nil || !res.Container.State.Running {
			return ""
		}
		img, err := docker.ImageInspect(ctx, res.Container.Image)
		if err != nil || len(img.RepoDigests) == 0 {
			return ""
		}
		d := img.RepoDigests[0]
		return d[strings.LastIndexByte(d, '@')+1:]
	}
}

func digestOf(ref string) string { return ref[strings.LastIndexByte(ref, '@')+1:] }

func target(ctx context.Context, ns, name string) func() v1alpha1.TargetStatus {
	return func() v1alpha1.TargetStatus {
		t := &v1alpha1.Target{}
		_ = shared.AdminClient().Get(ctx, ctrlclient.ObjectKey{Namespace: ns, Name: name}, t)
		return t.Status
	}
}

var _ = Describe("a release deployed by stella-agent to Docker targets", func() {
	It("runs with its sticker, rolls v2 out container by container, keeps v2 when v3 is unhealthy, and reports and reverts drift", func(ctx SpecContext) {
		docker, admin, ns, refs, stateDir := hostStory(ctx)
		startAgent(ctx, ns, "host-1", stateDir)
		Eventually(func() []v1alpha1.TargetType {
			a := &v1alpha1.Agent{}
			_ = admin.Get(ctx, ctrlclient.ObjectKey{Namespace: ns, Name: "host-1"}, a)
			return a.Status.Capabilities
		}).WithContext(ctx).WithTimeout(30*time.Second).Should(Equal([]v1alpha1.TargetType{v1alpha1.TargetTypeCompose, v1alpha1.TargetTypeDocker}),
			"the agent reports the drivers it has")

		prodEnvironment(ctx, ns, v1alpha1.StrategyRolling)
		for name, policy := range map[string]v1alpha1.DriftPolicy{"web-1": v1alpha1.DriftPolicyRevert, "web-2": v1alpha1.DriftPolicyReport} {
			Expect(admin.Create(ctx, &v1alpha1.Target{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"env": "prod"}},
				Spec: v1alpha1.TargetSpec{
					Type: v1alpha1.TargetTypeDocker, Agent: "host-1", DriftPolicy: policy,
					Components: []v1alpha1.ComponentTemplate{{Name: "api", ContainerName: ns + "-" + name + "-api", Network: "none"}},
				},
			})).To(Succeed())
		}
		container := func(target string) string { return ns + "-" + target + "-api" }
		for _, v := range []string{"v1", "v2", "v3"} {
			Expect(admin.Create(ctx, appRelease(ns, "shop-"+v, strings.TrimPrefix(v, "v")+".0.0", refs[v]))).To(Succeed())
		}

		By("promoting v1: both targets run it, with the sticker on the host")
		endsIn(ctx, promote(ctx, admin, ns, "shop-v1", "prod"), v1alpha1.PromotionSucceeded)
		for _, t := range []string{"web-1", "web-2"} {
			Expect(runs(ctx, docker, container(t))()).To(Equal(digestOf(refs["v1"])))
			res, err := docker.ContainerInspect(ctx, container(t), client.ContainerInspectOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Container.Config.Labels).To(HaveKeyWithValue(agents.LabelRelease, "shop-v1"))
			Expect(res.Container.Config.Labels).To(HaveKeyWithValue(agents.LabelComponent, "api"))
			Expect(res.Container.Config.Labels).To(HaveKeyWithValue(agents.LabelDigest, digestOf(refs["v1"])))
			Expect(res.Container.Config.Labels).To(HaveKey(v1alpha1.LabelPromotion))
			sticker, err := os.ReadFile(filepath.Join(stateDir, t, agents.StickerFile))
			Expect(err).NotTo(HaveOccurred())
			Expect(string(sticker)).To(ContainSubstring(`"release": "shop-v1"`))
			Expect(string(sticker)).To(ContainSubstring(digestOf(refs["v1"])))
		}
		Eventually(target(ctx, ns, "web-1")).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			HaveField("Drift", v1alpha1.DriftInSync), HaveField("Health", v1alpha1.HealthHealthy),
			HaveField("Observed.Release", "shop-v1")))

		By("promoting v2: the containers are replaced one target after the other")
		v2 := endsIn(ctx, promote(ctx, admin, ns, "shop-v2", "prod"), v1alpha1.PromotionSucceeded)
		Expect(v2.Status.Targets).To(HaveLen(2))
		Expect(v2.Status.Targets[0].Batch).NotTo(Equal(v2.Status.Targets[1].Batch), "a rolling strategy deploys one target per batch")
		for _, t := range []string{"web-1", "web-2"} {
			Expect(runs(ctx, docker, container(t))()).To(Equal(digestOf(refs["v2"])))
		}
		task := taskOf(ctx, v2, "web-1")
		Expect(task.Spec.Previous.Release).To(Equal("shop-v1"), "the task knows what ran before")

		By("promoting v3, which fails its health check: v2 keeps running and the promotion fails")
		v3 := endsIn(ctx, promote(ctx, admin, ns, "shop-v3", "prod"), v1alpha1.PromotionFailed)
		failed := taskOf(ctx, v3, v3.Status.Targets[0].Target)
		Expect(failed.Status.Phase).To(Equal(v1alpha1.DeployTaskRolledBack))
		Expect(failed.Status.Message).To(ContainSubstring("health check"))
		Expect(failed.Status.Message).To(ContainSubstring("release shop-v2 runs as before"))
		Expect(tasksOf(ctx, v3)).To(HaveLen(1), "the rollout stopped at the first batch")
		for _, t := range []string{"web-1", "web-2"} {
			Expect(runs(ctx, docker, container(t))()).To(Equal(digestOf(refs["v2"])))
		}

		By("swapping web-2's container by hand: it is reported Drifted")
		swapByHand(ctx, docker, container("web-2"), refs["v1"])
		Eventually(target(ctx, ns, "web-2")).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			HaveField("Drift", v1alpha1.DriftDrifted),
			HaveField("Conditions", ContainElement(And(HaveField("Type", "Drifted"), HaveField("Message", ContainSubstring(digestOf(refs["v1"]))))))))
		Eventually(func() []string { return eventReasons(ctx, ns, "web-2") }).WithContext(ctx).WithTimeout(10 * time.Second).Should(ContainElement("Drifted"))
		Consistently(runs(ctx, docker, container("web-2"))).WithContext(ctx).WithTimeout(3*time.Second).Should(Equal(digestOf(refs["v1"])), "Report leaves the drift in place")

		By("swapping web-1's container by hand: its Revert policy puts v2 back")
		swapByHand(ctx, docker, container("web-1"), refs["v1"])
		Eventually(runs(ctx, docker, container("web-1"))).WithContext(ctx).WithTimeout(60 * time.Second).Should(Equal(digestOf(refs["v2"])))
		Eventually(func() []string { return eventReasons(ctx, ns, "web-1") }).WithContext(ctx).WithTimeout(10 * time.Second).Should(ContainElement("Reverted"))
		Eventually(target(ctx, ns, "web-1")).WithContext(ctx).WithTimeout(30 * time.Second).Should(HaveField("Drift", v1alpha1.DriftInSync))
	})
})

// swapByHand replaces a container with one of another image, as somebody
// on the host might.
func swapByHand(ctx context.Context, docker *client.Client, name, image string) {
	GinkgoHelper()
	_, err := docker.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true})
	Expect(err).NotTo(HaveOccurred())
	created, err := docker.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Image: image})
	Expect(err).NotTo(HaveOccurred())
	_, err = docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// eventReasons are the reasons of the Events about the named Target.
func eventReasons(ctx context.Context, ns, name string) []string {
	var list corev1.EventList
	_ = shared.AdminClient().List(ctx, &list, ctrlclient.InNamespace(ns))
	var reasons []string
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == "Target" && e.InvolvedObject.Name == name {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

var _ = Describe("a release deployed by stella-agent to a Compose target", func() {
	It("runs pinned with its sticker, moves to v2, comes back to v2 when v3 is unhealthy, and reports drift", func(ctx SpecContext) {
		docker, admin, ns, refs, stateDir := hostStory(ctx)
		startAgent(ctx, ns, "host-1", stateDir)

		registry := refs["v1"][:strings.IndexByte(refs["v1"], '/')]
		file := filepath.Join(GinkgoT().TempDir(), "compose.yaml")
		Expect(os.WriteFile(file, []byte("services:\n  api:\n    image: "+registry+"/shop/api:v1\n    network_mode: none\n"), 0o644)).To(Succeed())
		prodEnvironment(ctx, ns, v1alpha1.StrategyAllAtOnce)
		project := ns + "-shop"
		Expect(admin.Create(ctx, &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop", Labels: map[string]string{"env": "prod"}},
			Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeCompose, Agent: "host-1",
				Compose: &v1alpha1.ComposeTarget{ProjectName: project, File: file}},
		})).To(Succeed())
		for _, v := range []string{"v1", "v2", "v3"} {
			Expect(admin.Create(ctx, appRelease(ns, "shop-"+v, strings.TrimPrefix(v, "v")+".0.0", refs[v]))).To(Succeed())
		}
		projectRuns := func() string {
			list, err := docker.ContainerList(ctx, client.ContainerListOptions{
				Filters: make(client.Filters).Add("label", "com.docker.compose.project="+project),
			})
			if err != nil || len(list.Items) != 1 {
				return ""
			}
			return runs(ctx, docker, list.Items[0].ID)()
		}

		By("promoting v1: the project runs it pinned, with the lock file and the sticker")
		endsIn(ctx, promote(ctx, admin, ns, "shop-v1", "prod"), v1alpha1.PromotionSucceeded)
		Expect(projectRuns()).To(Equal(digestOf(refs["v1"])))
		lock, err := os.ReadFile(filepath.Join(filepath.Dir(file), "compose.stella.lock.yml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(lock)).To(ContainSubstring(refs["v1"]))
		sticker, err := os.ReadFile(filepath.Join(stateDir, "shop", agents.StickerFile))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(sticker)).To(ContainSubstring(`"release": "shop-v1"`))

		By("promoting v2")
		endsIn(ctx, promote(ctx, admin, ns, "shop-v2", "prod"), v1alpha1.PromotionSucceeded)
		Expect(projectRuns()).To(Equal(digestOf(refs["v2"])))

		By("promoting v3, which fails its health check: the project runs v2 again")
		v3 := endsIn(ctx, promote(ctx, admin, ns, "shop-v3", "prod"), v1alpha1.PromotionFailed)
		task := taskOf(ctx, v3, "shop")
		Expect(task.Status.Phase).To(Equal(v1alpha1.DeployTaskRolledBack))
		Expect(task.Status.Message).To(ContainSubstring("health check"))
		Expect(projectRuns()).To(Equal(digestOf(refs["v2"])))
		Eventually(target(ctx, ns, "shop")).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			HaveField("Drift", v1alpha1.DriftInSync), HaveField("Observed.Release", "shop-v2")))

		By("running v1 in the project by hand: the target is reported Drifted")
		list, err := docker.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("label", "com.docker.compose.project="+project)})
		Expect(err).NotTo(HaveOccurred())
		Expect(list.Items).To(HaveLen(1))
		_, err = docker.ContainerRemove(ctx, list.Items[0].ID, client.ContainerRemoveOptions{Force: true})
		Expect(err).NotTo(HaveOccurred())
		created, err := docker.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{
			Image: refs["v1"], Labels: map[string]string{"com.docker.compose.project": project, "com.docker.compose.service": "api"},
		}, HostConfig: &container.HostConfig{NetworkMode: "none"}})
		Expect(err).NotTo(HaveOccurred())
		_, err = docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(target(ctx, ns, "shop")).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			HaveField("Drift", v1alpha1.DriftDrifted),
			HaveField("Conditions", ContainElement(And(HaveField("Type", "Drifted"), HaveField("Message", ContainSubstring(digestOf(refs["v1"]))))))))
	})
})

var _ = Describe("stella-agent faults", func() {
	It("resumes a deployment it was killed in without deploying twice, and leaves a finished one alone", func(ctx SpecContext) {
		docker, admin, ns, refs, stateDir := hostStory(ctx)
		first := startAgent(ctx, ns, "host-1", stateDir)

		prodEnvironment(ctx, ns, v1alpha1.StrategyAllAtOnce)
		name := ns + "-web-api"
		// A slow health check keeps the deployment going long enough to
		// kill the agent in the middle of it.
		Expect(admin.Create(ctx, &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: map[string]string{"env": "prod"}},
			Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-1", Components: []v1alpha1.ComponentTemplate{{
				Name: "api", ContainerName: name, Network: "none",
				HealthCheck: &v1alpha1.HealthCheck{Command: []string{"/app", "check"}, Interval: &metav1.Duration{Duration: 4 * time.Second}},
			}}},
		})).To(Succeed())
		Expect(admin.Create(ctx, appRelease(ns, "shop-v1", "1.0.0", refs["v1"]))).To(Succeed())
		promo := promote(ctx, admin, ns, "shop-v1", "prod")

		task := taskOf(ctx, promo, "web")
		Eventually(func() v1alpha1.DeployTaskPhase {
			_ = admin.Get(ctx, ctrlclient.ObjectKeyFromObject(task), task)
			return task.Status.Phase
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal(v1alpha1.DeployTaskRunning))
		first.Kill().Wait(10 * time.Second)

		runAgent(ns, "host-1", stateDir)
		endsIn(ctx, promo, v1alpha1.PromotionSucceeded)
		Expect(admin.Get(ctx, ctrlclient.ObjectKeyFromObject(task), task)).To(Succeed())
		Expect(task.Status.Phase).To(Equal(v1alpha1.DeployTaskSucceeded))
		Expect(task.Status.Attempts).To(BeEquivalentTo(2), "the restarted agent took the task up again")
		Expect(tasksOf(ctx, promo)).To(HaveLen(1))
		list, err := docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", agents.LabelNamespace+"="+ns)})
		Expect(err).NotTo(HaveOccurred())
		Expect(list.Items).To(HaveLen(1), "one container, no half-made one left")
		Expect(list.Items[0].Names).To(ConsistOf("/" + name))
		deployed := list.Items[0].ID

		By("restarting the agent once more: the finished task is not run again")
		runAgent(ns, "host-1", stateDir)
		Consistently(func() string {
			res, err := docker.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
			if err != nil {
				return ""
			}
			return res.Container.ID
		}).WithContext(ctx).WithTimeout(5 * time.Second).Should(Equal(deployed))
		Expect(admin.Get(ctx, ctrlclient.ObjectKeyFromObject(task), task)).To(Succeed())
		Expect(task.Status.Attempts).To(BeEquivalentTo(2))
	})

	It("turns the Targets of a silent agent Unknown after its grace period", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		args := joinArgs(ctx, ns, "host-1")
		agentObj := &v1alpha1.Agent{}
		Expect(admin.Get(ctx, ctrlclient.ObjectKey{Namespace: ns, Name: "host-1"}, agentObj)).To(Succeed())
		agentObj.Spec.HeartbeatGracePeriod = metav1.Duration{Duration: 3 * time.Second}
		Expect(admin.Update(ctx, agentObj)).To(Succeed())
		Expect(admin.Create(ctx, &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-1"},
		})).To(Succeed())
		session := runAgent(ns, "host-1", GinkgoT().TempDir(), args...)
		Eventually(target(ctx, ns, "web")).WithContext(ctx).WithTimeout(30 * time.Second).Should(HaveField("Drift", v1alpha1.DriftInSync))

		session.Kill().Wait(10 * time.Second)
		Eventually(target(ctx, ns, "web")).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			HaveField("Drift", v1alpha1.DriftUnknown), HaveField("Health", v1alpha1.HealthUnknown),
			HaveField("Conditions", ContainElement(And(HaveField("Type", v1alpha1.ConditionReady), HaveField("Reason", v1alpha1.ReasonAgentNotSeen))))))
		Expect(admin.Get(ctx, ctrlclient.ObjectKey{Namespace: ns, Name: "host-1"}, agentObj)).To(Succeed())
		Expect(conditionReason(agentObj.Status.Conditions, v1alpha1.ConditionReady)).To(Equal("AgentSilent"))
	})
})
