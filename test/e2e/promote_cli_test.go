package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
)

// exitCodeOf is the exit status of a stellactl run that returned err.
func exitCodeOf(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	Expect(err).NotTo(HaveOccurred())
	return 0
}

// createdPromotion is the promotion stellactl promote said it created.
func createdPromotion(ns, out string) *v1alpha1.Promotion {
	GinkgoHelper()
	name := regexp.MustCompile(`promotion.stella-ops.org/(\S+) created`).FindStringSubmatch(out)
	Expect(name).To(HaveLen(2), out)
	return &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name[1]}}
}

var _ = Describe("stellactl promote checks before it creates, and --wait follows the promotion", func() {
	var (
		admin client.Client
		ns    string
	)
	BeforeEach(func(ctx SpecContext) {
		admin = shared.AdminClient()
		ns = newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		for _, env := range []string{"dev", "stage", "prod"} {
			Expect(admin.Create(ctx, environment(ns, env))).To(Succeed())
		}
	})

	noPromotions := func(ctx SpecContext, namespace string) {
		GinkgoHelper()
		var promos v1alpha1.PromotionList
		Expect(admin.List(ctx, &promos, client.InNamespace(namespace))).To(Succeed())
		Expect(promos.Items).To(BeEmpty(), "nothing is created")
	}

	It("refuses a mistyped environment, a missing release, the wrong namespace and a user who may not promote, creating nothing", func(ctx SpecContext) {
		bindRole(ctx, admin, ns, "releaser", "rel")
		bindRole(ctx, admin, ns, "viewer", "vic")
		work := GinkgoT().TempDir()
		rel := shared.UserKubeconfig(work, "rel")

		By("a releaser types prdo for prod")
		out, err := stellactl(ctx, rel, "promote", "shop-1", "--to", "prdo", "-n", ns)
		Expect(exitCodeOf(err)).To(Equal(1), out)
		Expect(out).To(ContainSubstring(`spec.environment: Environment "prdo" does not exist in namespace ` + ns + `; did you mean "prod"?`))
		Expect(out).To(ContainSubstring("nothing was created"))
		Expect(out).NotTo(ContainSubstring("spec.release"), "the release exists")
		noPromotions(ctx, ns)

		By("a releaser names a release that does not exist, and an environment nothing is close to")
		out, err = stellactl(ctx, rel, "promote", "shop-9", "--to", "qa", "-n", ns)
		Expect(exitCodeOf(err)).To(Equal(1), out)
		Expect(out).To(ContainSubstring(`spec.release: Release "shop-9" does not exist in namespace ` + ns + `; did you mean "shop-1"?`))
		Expect(out).To(ContainSubstring(`spec.environment: Environment "qa" does not exist in namespace ` + ns + `; it has "dev", "prod" and "stage"`))
		noPromotions(ctx, ns)

		By("the admin promotes in a namespace that has neither, and learns where they are")
		// Names of this namespace's own, so that no other story's objects
		// are "elsewhere" too.
		basket, edge := "basket-"+ns, "edge-"+ns
		Expect(admin.Create(ctx, release(ns, basket, "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, environment(ns, edge))).To(Succeed())
		other := newNamespace(ctx, admin)
		out, err = stellactl(ctx, shared.Kubeconfig(), "promote", basket, "--to", edge, "-n", other)
		Expect(exitCodeOf(err)).To(Equal(1), out)
		Expect(out).To(And(
			ContainSubstring(fmt.Sprintf(`namespace %s has no releases: is -n/--namespace right? (Release %s exists in namespace %q: pass -n %s)`, other, basket, ns, ns)),
			ContainSubstring(fmt.Sprintf(`namespace %s has no environments: is -n/--namespace right? (Environment %s exists in namespace %q: pass -n %s)`, other, edge, ns, ns))))
		noPromotions(ctx, other)

		By("a viewer, who may read but not promote")
		out, err = stellactl(ctx, shared.UserKubeconfig(work, "vic"), "promote", "shop-1", "--to", "prod", "-n", ns)
		Expect(exitCodeOf(err)).To(Equal(1), out)
		Expect(out).To(ContainSubstring("you may not create promotions in namespace " + ns + ": promoting needs the releaser role there"))
		noPromotions(ctx, ns)
	})

	It("the server refuses a Promotion of a missing release or into a missing environment, however it is created, naming the field", func(ctx SpecContext) {
		By("through the API")
		err := admin.Create(ctx, promotion(ns, "typo", "shop-9", "prod"))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(And(
			ContainSubstring(`spec.release: Invalid value: "shop-9": Release shop-9 does not exist in namespace `+ns),
			ContainSubstring("create the release first, or promote one that exists")))
		Expect(err.Error()).NotTo(ContainSubstring("spec.environment"))

		By("with kubectl's apply")
		manifest := filepath.Join(GinkgoT().TempDir(), "promotion.yaml")
		Expect(os.WriteFile(manifest, []byte(`apiVersion: stella-ops.org/v1alpha1
kind: Promotion
metadata:
  name: typo
spec:
  release: shop-1
  environment: prdo
`), 0o600)).To(Succeed())
		out, err := stellactl(ctx, shared.Kubeconfig(), "apply", "-f", manifest, "-n", ns)
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(And(
			ContainSubstring(`spec.environment: Invalid value: "prdo": Environment prdo does not exist in namespace `+ns),
			ContainSubstring("promote into one that exists")))
		noPromotions(ctx, ns)

		By("a release deleted a moment ago is not promoted from a stale copy")
		Expect(admin.Create(ctx, release(ns, "shop-gone", "0.9.0"))).To(Succeed())
		Expect(admin.Delete(ctx, &v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-gone"}})).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-gone"}, &v1alpha1.Release{}))
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(BeTrue())
		err = admin.Create(ctx, promotion(ns, "gone", "shop-gone", "prod"))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		noPromotions(ctx, ns)

		By("the same promotion, named right, is accepted and runs")
		reachesPhase(ctx, promote(ctx, admin, ns, "shop-1", "prod"), v1alpha1.PromotionSucceeded)
	})

	It("--wait prints each phase as it happens and exits 0 on Succeeded, 12 on Rejected, 15 when it gives up", func(ctx SpecContext) {
		kc := shared.Kubeconfig()

		By("an environment with no gates and no targets: Succeeded, exit 0")
		out, err := stellactl(ctx, kc, "promote", "shop-1", "--to", "dev", "-n", ns, "--wait", "--timeout", "2m")
		Expect(exitCodeOf(err)).To(Equal(0), out)
		done := createdPromotion(ns, out)
		Expect(out).To(MatchRegexp(`promotion.stella-ops.org/%s Succeeded: \S`, regexp.QuoteMeta(done.Name)))
		reachesPhase(ctx, done, v1alpha1.PromotionSucceeded)

		By("a policy gate that denies: Rejected, exit 12")
		Expect(admin.Create(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "frozen"},
			Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: "allow: false\nreasons: [\"frozen for the holidays\"]\n"}}})).To(Succeed())
		stage := &v1alpha1.Environment{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "stage"}, stage)).To(Succeed())
		before := stage.DeepCopy()
		stage.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "frozen"}}
		Expect(admin.Patch(ctx, stage, client.MergeFrom(before))).To(Succeed())
		out, err = stellactl(ctx, kc, "promote", "shop-1", "--to", "stage", "-n", ns, "--wait", "--timeout", "2m")
		Expect(exitCodeOf(err)).To(Equal(12), out)
		rejected := createdPromotion(ns, out)
		Expect(out).To(And(
			MatchRegexp(`promotion.stella-ops.org/%s Rejected: \S`, regexp.QuoteMeta(rejected.Name)),
			ContainSubstring("error: promotion "+rejected.Name+" ended Rejected")))

		By("prod waits for one approval: giving up after 3s exits 15 and leaves the promotion running")
		gate := approvalGate(ns, "one-approver")
		gate.Spec.Approval.Count = 1
		Expect(admin.Create(ctx, gate)).To(Succeed())
		prod := &v1alpha1.Environment{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "prod"}, prod)).To(Succeed())
		before = prod.DeepCopy()
		prod.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "one-approver"}}
		Expect(admin.Patch(ctx, prod, client.MergeFrom(before))).To(Succeed())
		out, err = stellactl(ctx, kc, "promote", "shop-1", "--to", "prod", "-n", ns, "--wait", "--timeout", "3s")
		Expect(exitCodeOf(err)).To(Equal(15), out)
		first := createdPromotion(ns, out)
		Expect(out).To(And(
			MatchRegexp(`promotion.stella-ops.org/%s AwaitingApproval: `, regexp.QuoteMeta(first.Name)),
			ContainSubstring("promotion "+first.Name+" is still AwaitingApproval after 3s; it goes on")))
		staysInPhase(ctx, first, v1alpha1.PromotionAwaitingApproval)

		By("a second promotion queues behind it; --wait shows Pending, then AwaitingApproval once the first is rejected, then Succeeded once approved")
		Expect(admin.Create(ctx, release(ns, "shop-2", "2.0.0"))).To(Succeed())
		cmd := exec.CommandContext(ctx, bin.Stellactl, "promote", "shop-2", "--to", "prod", "-n", ns, "--wait", "--timeout", "2m")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kc)
		waiting, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(waiting.Kill)
		Eventually(waiting.Out).WithTimeout(30 * time.Second).Should(gbytes.Say(`promotion.stella-ops.org/(\S+) created`))
		Eventually(waiting.Out).WithTimeout(30 * time.Second).Should(gbytes.Say(`Pending: waiting for promotion ` + regexp.QuoteMeta(first.Name) + ` to finish`))
		Consistently(waiting.Out).WithTimeout(2 * time.Second).ShouldNot(gbytes.Say("AwaitingApproval"))

		bindRole(ctx, admin, ns, "approver", "bob")
		bob := shared.UserKubeconfig(GinkgoT().TempDir(), "bob")
		out, err = stellactl(ctx, bob, "reject", first.Name, "-n", ns, "--comment", "wrong build")
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(waiting.Out).WithTimeout(30 * time.Second).Should(gbytes.Say(`AwaitingApproval: `))
		Expect(waiting.ExitCode()).To(Equal(-1), "still waiting")

		var promos v1alpha1.PromotionList
		Expect(admin.List(ctx, &promos, client.InNamespace(ns))).To(Succeed())
		second := ""
		for _, p := range promos.Items {
			if p.Spec.Release == "shop-2" {
				second = p.Name
			}
		}
		Expect(second).NotTo(BeEmpty())
		out, err = stellactl(ctx, bob, "approve", second, "-n", ns, "--comment", "good build")
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(waiting.Out).WithTimeout(30 * time.Second).Should(gbytes.Say(`Succeeded: `))
		Eventually(waiting).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
	})

	It("a user with only the auditor role exports a sealed packet, which verifies offline", func(ctx SpecContext) {
		promo := reachesPhase(ctx, promote(ctx, admin, ns, "shop-1", "dev"), v1alpha1.PromotionSucceeded)
		sealedPacket(ctx, admin, promo)

		work := GinkgoT().TempDir()
		kubeconfig, stderr, err := stellactlStdout(ctx, shared.Kubeconfig(), "auth", "create-user", "audra", "--role", "auditor")
		Expect(err).NotTo(HaveOccurred(), stderr)
		audra := filepath.Join(work, "audra.kubeconfig")
		Expect(os.WriteFile(audra, []byte(kubeconfig), 0o600)).To(Succeed())

		By("the auditor role reads evidence, not releases")
		out, err := stellactl(ctx, audra, "get", "releases", "-n", ns)
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("forbidden"))

		decision := filepath.Join(work, "decision.tar")
		out, err = stellactl(ctx, audra, "evidence", "export", promo.Name, "-n", ns, "-o", decision)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("written to " + decision))

		keyPath := filepath.Join(work, "stella.pub")
		key, err := os.ReadFile(filepath.Join(shared.DataDir, "evidence", evidence.PublicKeyFile))
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(keyPath, key, 0o600)).To(Succeed())
		out, err = stellactlEnv(ctx, []string{"KUBECONFIG=/nonexistent"}, "evidence", "verify", decision, "--key", keyPath)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(And(ContainSubstring("verified: "+evidence.PredicateDecision), ContainSubstring(promo.Name+": allow")))
	})
})
