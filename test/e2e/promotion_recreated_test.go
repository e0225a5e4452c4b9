package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
)

// A Promotion deleted and created again under its name is a new promotion:
// it deploys and seals for itself, and never takes its predecessor's
// DeployTasks, decision or rollout record as its own.
var _ = Describe("a promotion created again under a deleted one's name", func() {
	It("deploys and is sealed on its own, even while the old one's task is still being deleted", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, release(ns, "shop-2", "2.0.0"))).To(Succeed())
		stage := environment(ns, "stage")
		stage.Spec.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "stage"}}
		Expect(admin.Create(ctx, stage)).To(Succeed())
		Expect(admin.Create(ctx, &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1", Labels: map[string]string{"env": "stage"}},
			Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-1"},
		})).To(Succeed())
		bindRole(ctx, admin, ns, "agent", "host-1")
		agent := shared.UserClient("host-1")

		By("p deploys shop-1; a finalizer keeps its DeployTask after p is gone")
		first := promotion(ns, "p", "shop-1", "stage")
		Expect(admin.Create(ctx, first)).To(Succeed())
		oldTask := taskOf(ctx, first, "web-1")
		held := oldTask.DeepCopy()
		held.Finalizers = append(held.Finalizers, "e2e.stella-ops.org/hold")
		Expect(admin.Patch(ctx, held, client.MergeFrom(oldTask))).To(Succeed())
		report(ctx, agent, held, v1alpha1.DeployTaskSucceeded, "deployed shop-1")
		done := reachesPhase(ctx, first, v1alpha1.PromotionSucceeded)
		firstDecision := sealedPacket(ctx, admin, done)
		Expect(firstDecision.Spec.PromotionUID).To(Equal(first.UID))

		Expect(admin.Delete(ctx, first)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(apierrors.IsNotFound(admin.Get(ctx, client.ObjectKeyFromObject(first), &v1alpha1.Promotion{}))).To(BeTrue())
			task := &v1alpha1.DeployTask{}
			g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(held), task)).To(Succeed())
			g.Expect(task.DeletionTimestamp).NotTo(BeNil(), "the garbage collector deletes the task of the deleted promotion")
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())

		By("p is created again for shop-2: the old task's success is not its own")
		again := promotion(ns, "p", "shop-2", "stage")
		Expect(admin.Create(ctx, again)).To(Succeed())
		staysInPhase(ctx, again, v1alpha1.PromotionDeploying)
		got := &v1alpha1.Promotion{}
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(again), got)).To(Succeed())
		Expect(got.Status.Targets).To(ConsistOf(HaveField("Phase", Not(Equal(v1alpha1.DeployTaskSucceeded)))))
		Expect(got.Status.EvidencePacket).NotTo(Equal(firstDecision.Name), "the new decision gets a packet of its own")

		By("once the old task is gone, the new p deploys shop-2 through a task of its own")
		task := &v1alpha1.DeployTask{}
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(held), task)).To(Succeed())
		released := task.DeepCopy()
		released.Finalizers = nil
		Expect(admin.Patch(ctx, released, client.MergeFrom(task))).To(Succeed())
		var own *v1alpha1.DeployTask
		Eventually(func(g Gomega) {
			own = taskOf(ctx, again, "web-1")
			g.Expect(metav1.GetControllerOf(own)).To(HaveField("UID", again.UID))
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(own.Spec.Release).To(Equal("shop-2"))
		report(ctx, agent, own, v1alpha1.DeployTaskSucceeded, "deployed shop-2")
		latest := reachesPhase(ctx, again, v1alpha1.PromotionSucceeded)

		By("each p has its own sealed decision; export and replay follow the new one")
		decision := sealedPacket(ctx, admin, latest)
		Expect(decision.Name).NotTo(Equal(firstDecision.Name))
		Expect(decision.Spec.PromotionUID).To(Equal(again.UID))
		Expect(decision.Spec.ContentDigest).NotTo(Equal(firstDecision.Spec.ContentDigest))
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(firstDecision), &v1alpha1.EvidencePacket{})).To(Succeed(), "the old record stays")
		out, err := stellactl(ctx, shared.Kubeconfig(), "replay", "promotion", "p", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("identical, allow"))

		work := GinkgoT().TempDir()
		for _, rollout := range []bool{false, true} {
			path := filepath.Join(work, "p.tar")
			args := []string{"evidence", "export", "p", "-n", ns, "-o", path}
			if rollout {
				args = append(args, "--rollout")
			}
			Eventually(func() error {
				_, err := stellactl(ctx, shared.Kubeconfig(), args...)
				return err
			}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
			f, err := os.Open(path)
			Expect(err).NotTo(HaveOccurred())
			packet, err := evidence.ReadPacket(f)
			Expect(f.Close()).To(Succeed())
			Expect(err).NotTo(HaveOccurred())
			var exported v1alpha1.EvidencePacket
			Expect(json.Unmarshal(packet.Object, &exported)).To(Succeed())
			Expect(exported.Spec.PromotionUID).To(Equal(again.UID), "rollout=%v", rollout)
		}
	})
})
