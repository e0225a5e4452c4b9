package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
	"github.com/stella-ops/stella/test/framework"
)

// retainedEnvironment is an environment that keeps keep finished
// promotions in the API and archives older ones at once.
func retainedEnvironment(ns, name string, keep int32) *v1alpha1.Environment {
	env := environment(ns, name)
	env.Spec.PromotionRetention = &v1alpha1.PromotionRetention{Keep: &keep, MinAge: &metav1.Duration{}}
	return env
}

// historyOf is what `stellactl history ENV -o json` lists.
func historyOf(ctx context.Context, kubeconfig, ns, env string) []historyItem {
	GinkgoHelper()
	out, stderr, err := stellactlStdout(ctx, kubeconfig, "history", env, "-n", ns, "-o", "json")
	Expect(err).NotTo(HaveOccurred(), out+stderr)
	var list struct {
		Items []historyItem `json:"items"`
	}
	Expect(json.Unmarshal([]byte(out), &list)).To(Succeed(), out)
	return list.Items
}

type historyItem struct {
	Metadata struct {
		Name string    `json:"name"`
		UID  types.UID `json:"uid"`
	} `json:"metadata"`
	Release  string `json:"release"`
	Phase    string `json:"phase"`
	Archived bool   `json:"archived"`
}

// leftInAPI counts what the API still holds of the promotions with uids.
func leftInAPI(ctx context.Context, c client.Client, ns string, uids map[types.UID]bool) (promotions, packets, approvals int) {
	GinkgoHelper()
	var pl v1alpha1.PromotionList
	var el v1alpha1.EvidencePacketList
	var al v1alpha1.ApprovalList
	Expect(c.List(ctx, &pl, client.InNamespace(ns))).To(Succeed())
	Expect(c.List(ctx, &el, client.InNamespace(ns))).To(Succeed())
	Expect(c.List(ctx, &al, client.InNamespace(ns))).To(Succeed())
	for _, p := range pl.Items {
		if uids[p.UID] {
			promotions++
		}
	}
	for _, e := range el.Items {
		if uids[e.Spec.PromotionUID] {
			packets++
		}
	}
	for _, a := range al.Items {
		if uids[a.Spec.PromotionUID] {
			approvals++
		}
	}
	return promotions, packets, approvals
}

// exportsAndVerifies exports the promotion's decision, verifies it on a
// machine with no server, and replays it from the server.
func exportsAndVerifies(ctx context.Context, kubeconfig, ns, promotion string) {
	GinkgoHelper()
	tarPath := filepath.Join(GinkgoT().TempDir(), promotion+".tar")
	out, err := stellactl(ctx, kubeconfig, "evidence", "export", promotion, "-n", ns, "-o", tarPath)
	Expect(err).NotTo(HaveOccurred(), out)
	out, err = stellactlEnv(ctx, []string{"KUBECONFIG=/nonexistent"}, "evidence", "verify", tarPath)
	Expect(err).NotTo(HaveOccurred(), out)
	Expect(out).To(ContainSubstring("verified:"))
	out, err = stellactl(ctx, kubeconfig, "replay", "promotion", promotion, "-n", ns)
	Expect(err).NotTo(HaveOccurred(), out)
}

var _ = Describe("promotion history beyond retention", func() {
	It("leaves the API and stays listed, described, exported, verified and replayed from the archive", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, retainedEnvironment(ns, "dev", 1))).To(Succeed())
		var promos []*v1alpha1.Promotion
		uids := map[types.UID]bool{}
		for i := 1; i <= 4; i++ {
			name := fmt.Sprintf("shop-%d", i)
			Expect(admin.Create(ctx, release(ns, name, fmt.Sprintf("%d.0.0", i)))).To(Succeed())
			By("promoting " + name + " and waiting for its decision to be sealed")
			p := reachesPhase(ctx, promote(ctx, admin, ns, name, "dev"), v1alpha1.PromotionSucceeded)
			sealedPacket(ctx, admin, p)
			promos = append(promos, p)
			uids[p.UID] = true
		}
		newest := promos[3]
		delete(uids, newest.UID)

		By("the three older promotions leaving the API with their packets; the newest stays")
		Eventually(func() [3]int {
			p, e, a := leftInAPI(ctx, admin, ns, uids)
			return [3]int{p, e, a}
		}).WithContext(ctx).WithTimeout(60 * time.Second).Should(Equal([3]int{0, 0, 0}))
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(newest), &v1alpha1.Promotion{})).To(Succeed())
		env := &v1alpha1.Environment{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "dev"}, env)).To(Succeed())
		Expect(env.Status.CurrentRelease).To(Equal("shop-4"))

		By("stellactl history listing all four, in the order they ran")
		history := historyOf(ctx, shared.Kubeconfig(), ns, "dev")
		Expect(history).To(HaveLen(4))
		for i, item := range history {
			Expect(item.Metadata.UID).To(Equal(promos[i].UID), "entry %d", i)
			Expect(item.Release).To(Equal(promos[i].Spec.Release))
			Expect(item.Phase).To(Equal(string(v1alpha1.PromotionSucceeded)))
			Expect(item.Archived).To(Equal(i < 3), "entry %d", i)
		}
		out, err := stellactl(ctx, shared.Kubeconfig(), "history", "dev", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(promos[0].Name))
		Expect(out).To(ContainSubstring("archive"))

		By("describing, exporting, verifying and replaying an archived promotion as before")
		oldest := promos[0]
		out, err = stellactl(ctx, shared.Kubeconfig(), "describe", "promotion", oldest.Name, "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("shop-1"))
		Expect(out).To(ContainSubstring("Archived:"))
		exportsAndVerifies(ctx, shared.Kubeconfig(), ns, oldest.Name)
		exportsAndVerifies(ctx, shared.Kubeconfig(), ns, newest.Name)

		By("a namespace's viewer, not an auditor, seeing only the API's promotions, and the archive refused to them in every namespace")
		bindRole(ctx, admin, ns, "viewer", "vic-"+ns)
		vic := shared.UserKubeconfig(GinkgoT().TempDir(), "vic-"+ns)
		out, stderr, err := stellactlStdout(ctx, vic, "history", "dev", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out+stderr)
		Expect(stderr).To(ContainSubstring("stella-auditor"))
		Expect(out).To(ContainSubstring(newest.Name))
		Expect(out).NotTo(ContainSubstring(oldest.Name))
		for _, path := range []string{archive.EnvironmentPath(ns, "dev"), archive.EnvironmentPath("default", "dev"), archive.PromotionPath(ns, oldest.Name)} {
			out, err := stellactl(ctx, vic, "get", "--raw", path)
			Expect(err).To(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("Forbidden"), path)
		}
		By("malformed names refused by name")
		for path, message := range map[string]string{
			archive.EnvironmentPath("Bad", "dev"):   `namespace "Bad"`,
			archive.PromotionPath(ns, "x_y"):        `promotion name "x_y"`,
			archive.PromotionPath(ns, "never-made"): "not found",
		} {
			out, err := stellactl(ctx, shared.Kubeconfig(), "get", "--raw", path)
			Expect(err).To(HaveOccurred(), out)
			Expect(out).To(ContainSubstring(message), path)
		}

		By("a promotion in neither the API nor the archive being reported as before")
		out, err = stellactl(ctx, shared.Kubeconfig(), "evidence", "export", "never-made", "-n", ns, "-o", filepath.Join(GinkgoT().TempDir(), "x.tar"))
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring(`"never-made" not found`))
	})
})

var _ = Describe("archiving across a crash", func() {
	It("after kill -9 while archiving, every promotion is archived exactly once and leaves the API", func(ctx SpecContext) {
		const n = 24
		srv := startServer(framework.ServerOptions{})
		admin := srv.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, release(ns, "shop-2", "2.0.0"))).To(Succeed())
		for i := range n {
			Expect(admin.Create(ctx, retainedEnvironment(ns, fmt.Sprintf("env-%02d", i), 0))).To(Succeed())
		}
		// Into each environment shop-1, then shop-2: with keep 0 the first
		// is archived once it is sealed, and the second stays, as the
		// environment's newest success always does.
		uids, newest := map[types.UID]bool{}, map[types.UID]bool{}
		for i := range n {
			p := promotion(ns, fmt.Sprintf("p-%02d", i), "shop-1", fmt.Sprintf("env-%02d", i))
			Expect(admin.Create(ctx, p)).To(Succeed())
			uids[p.UID] = true
		}
		for i := range n {
			p := promotion(ns, fmt.Sprintf("p-%02d-next", i), "shop-2", fmt.Sprintf("env-%02d", i))
			Expect(admin.Create(ctx, p)).To(Succeed())
			newest[p.UID] = true
		}
		archiveDir := filepath.Join(srv.DataDir, "evidence", archive.DirName)
		archived := func() int {
			files, _ := filepath.Glob(filepath.Join(archiveDir, ns, "environments", "*", "*.json"))
			return len(files)
		}
		By("killing the server once archiving has begun")
		Eventually(archived).WithContext(ctx).WithPolling(20 * time.Millisecond).WithTimeout(90 * time.Second).Should(BeNumerically(">=", 2))
		srv.Kill()

		By("restarting it: every promotion leaves the API, with its packets")
		again := startServer(framework.ServerOptions{DataDir: srv.DataDir, Listen: srv.Listen})
		admin = again.AdminClient()
		Eventually(func() [3]int {
			p, e, a := leftInAPI(ctx, admin, ns, uids)
			return [3]int{p, e, a}
		}).WithContext(ctx).WithTimeout(120 * time.Second).Should(Equal([3]int{0, 0, 0}))

		By("the archive holding each promotion once, each exporting and verifying")
		Expect(archived()).To(Equal(n))
		for i := range n {
			env := fmt.Sprintf("env-%02d", i)
			history := historyOf(ctx, again.Kubeconfig(), ns, env)
			Expect(history).To(HaveLen(2), "environment %s", env)
			Expect(uids).To(HaveKey(history[0].Metadata.UID))
			Expect(history[0].Archived).To(BeTrue())
			Expect(newest).To(HaveKey(history[1].Metadata.UID))
			Expect(history[1].Archived).To(BeFalse())
		}
		p, _, _ := leftInAPI(ctx, admin, ns, newest)
		Expect(p).To(Equal(n), "every environment's newest success stays in the API")
		for _, name := range []string{"p-00", fmt.Sprintf("p-%02d", n-1)} {
			exportsAndVerifies(ctx, again.Kubeconfig(), ns, name)
		}
		_, err := os.Stat(filepath.Join(archiveDir, ns, "promotions", "p-00"))
		Expect(err).NotTo(HaveOccurred())
		Expect(apierrors.IsNotFound(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "p-00"}, &v1alpha1.Promotion{}))).To(BeTrue())
	})
})
