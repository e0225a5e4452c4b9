package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/sshd"
)

// The SSH host of these stories is this machine: a real OpenSSH server on
// 127.0.0.1 in front of the local Docker engine, which the server reaches
// only through SSH.
var _ = Describe("a release deployed by the server over SSH, without an agent", func() {
	It("runs with its sticker on the host, keeps v2 when v3 is unhealthy, refuses a wrong host key, pins a first-use key and reports drift", func(ctx SpecContext) {
		srv := sshd.Start(GinkgoT())
		docker, admin, ns, refs, stateDir := hostStory(ctx)
		Expect(admin.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deploy-key"},
			Data:       map[string][]byte{"id_ed25519": srv.ClientKey},
		})).To(Succeed())
		prodEnvironment(ctx, ns, v1alpha1.StrategyAllAtOnce)
		sshTarget := func(name string) *v1alpha1.Target {
			return &v1alpha1.Target{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: v1alpha1.TargetSpec{
					Type: v1alpha1.TargetTypeSSH, StickerPath: filepath.Join(stateDir, name, agents.StickerFile),
					SSH: &v1alpha1.SSHTarget{
						Host: srv.Host, Port: int32(srv.Port), User: srv.User, HostKey: srv.HostKey, Driver: v1alpha1.TargetTypeDocker,
						PrivateKeySecretRef: v1alpha1.SecretKeyReference{Name: "deploy-key", Key: "id_ed25519"},
					},
					Components: []v1alpha1.ComponentTemplate{{Name: "api", ContainerName: ns + "-" + name + "-api", Network: "none"}},
				},
			}
		}
		edge := sshTarget("edge")
		edge.Labels = map[string]string{"env": "prod"}
		Expect(admin.Create(ctx, edge)).To(Succeed())
		container := ns + "-edge-api"
		for _, v := range []string{"v1", "v2", "v3"} {
			Expect(admin.Create(ctx, appRelease(ns, "shop-"+v, strings.TrimPrefix(v, "v")+".0.0", refs[v]))).To(Succeed())
		}

		By("promoting v1: the server deploys it over SSH and writes the sticker on the host")
		v1 := endsIn(ctx, promote(ctx, admin, ns, "shop-v1", "prod"), v1alpha1.PromotionSucceeded)
		Expect(runs(ctx, docker, container)()).To(Equal(digestOf(refs["v1"])))
		task := taskOf(ctx, v1, "edge")
		Expect(task.Labels).NotTo(HaveKey("stella-ops.org/agent"), "no agent serves an SSH target")
		sticker, err := os.ReadFile(filepath.Join(stateDir, "edge", agents.StickerFile))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(sticker)).To(ContainSubstring(`"release": "shop-v1"`))
		Eventually(target(ctx, ns, "edge")).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			HaveField("Drift", v1alpha1.DriftInSync), HaveField("Observed.Release", "shop-v1")))

		By("promoting v2, then v3, which fails its health check: v2 keeps running")
		endsIn(ctx, promote(ctx, admin, ns, "shop-v2", "prod"), v1alpha1.PromotionSucceeded)
		Expect(runs(ctx, docker, container)()).To(Equal(digestOf(refs["v2"])))
		v3 := endsIn(ctx, promote(ctx, admin, ns, "shop-v3", "prod"), v1alpha1.PromotionFailed)
		failed := taskOf(ctx, v3, "edge")
		Expect(failed.Status.Phase).To(Equal(v1alpha1.DeployTaskRolledBack))
		Expect(failed.Status.Message).To(ContainSubstring("health check"))
		Expect(runs(ctx, docker, container)()).To(Equal(digestOf(refs["v2"])))

		By("pinning another host key: the deployment is refused and v2 keeps running")
		_, otherKey := sshd.NewKey(GinkgoT())
		patchHostKey(ctx, ns, "edge", otherKey)
		refused := endsIn(ctx, promote(ctx, admin, ns, "shop-v1", "prod"), v1alpha1.PromotionFailed)
		Expect(taskOf(ctx, refused, "edge").Status.Message).To(ContainSubstring("not the one pinned in Target spec.ssh.hostKey"))
		Expect(runs(ctx, docker, container)()).To(Equal(digestOf(refs["v2"])))
		Eventually(target(ctx, ns, "edge")).WithContext(ctx).WithTimeout(30 * time.Second).Should(
			HaveField("Conditions", ContainElement(And(HaveField("Type", v1alpha1.ConditionReady), HaveField("Status", metav1.ConditionFalse),
				HaveField("Message", ContainSubstring("spec.ssh.hostKey"))))))
		patchHostKey(ctx, ns, "edge", srv.HostKey)

		By("swapping the container by hand on the host: the target is reported Drifted")
		swapByHand(ctx, docker, container, refs["v1"])
		Eventually(target(ctx, ns, "edge")).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			HaveField("Drift", v1alpha1.DriftDrifted),
			HaveField("Conditions", ContainElement(And(HaveField("Type", "Drifted"), HaveField("Message", ContainSubstring(digestOf(refs["v1"]))))))))

		By("a Target that trusts on first use: the server pins the key it saw")
		tofu := sshTarget("first-use")
		tofu.Spec.SSH.HostKey, tofu.Spec.SSH.TrustOnFirstUse = "", true
		Expect(admin.Create(ctx, tofu)).To(Succeed())
		Eventually(func() string {
			got := &v1alpha1.Target{}
			_ = admin.Get(ctx, ctrlclient.ObjectKeyFromObject(tofu), got)
			return got.Spec.SSH.HostKey
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal(srv.HostKey))
	})

	It("refuses at admission server-deployed targets with an agent, an SSH target without a host key or trust, and malformed addresses", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		sshTarget := func(mutate func(*v1alpha1.SSHTarget)) v1alpha1.TargetSpec {
			s := &v1alpha1.SSHTarget{Host: "127.0.0.1", User: "deploy", HostKey: "ssh-ed25519 AAAA", Driver: v1alpha1.TargetTypeDocker,
				PrivateKeySecretRef: v1alpha1.SecretKeyReference{Name: "k", Key: "id"}}
			mutate(s)
			return v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeSSH, SSH: s}
		}
		nomadTarget := v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeNomad, Agent: "host-1", Nomad: &v1alpha1.NomadTarget{Address: "http://127.0.0.1:4646", Job: "shop"}}
		for msg, spec := range map[string]v1alpha1.TargetSpec{
			"agent must be empty for ssh, nomad and ecs targets": nomadTarget,
			"pin the host's key in hostKey":                      sshTarget(func(s *v1alpha1.SSHTarget) { s.HostKey = "" }),
			"compose is required when driver is compose":         sshTarget(func(s *v1alpha1.SSHTarget) { s.Driver = v1alpha1.TargetTypeCompose }),
			"spec.nomad.address":                                 {Type: v1alpha1.TargetTypeNomad, Nomad: &v1alpha1.NomadTarget{Address: "nomad.example.com:4646", Job: "shop"}},
			"spec.ecs.region":                                    {Type: v1alpha1.TargetTypeECS, ECS: &v1alpha1.ECSTarget{Cluster: "prod", Service: "api", Region: "Ireland"}},
		} {
			err := admin.Create(ctx, &v1alpha1.Target{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"}, Spec: spec})
			Expect(err).To(HaveOccurred(), msg)
			Expect(err.Error()).To(ContainSubstring(msg))
		}
	})
})

// patchHostKey pins key as the host key of an SSH Target.
func patchHostKey(ctx SpecContext, ns, name, key string) {
	GinkgoHelper()
	t := &v1alpha1.Target{}
	Expect(shared.AdminClient().Get(ctx, ctrlclient.ObjectKey{Namespace: ns, Name: name}, t)).To(Succeed())
	before := t.DeepCopy()
	t.Spec.SSH.HostKey = key
	Expect(shared.AdminClient().Patch(ctx, t, ctrlclient.MergeFrom(before))).To(Succeed())
}
