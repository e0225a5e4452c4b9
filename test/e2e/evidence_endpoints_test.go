package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/test/verifier"
)

var _ = Describe("evidence endpoints", func() {
	It("give an auditor a packet with its leaf that an outside verifier checks, an index of the endpoints, and errors kubectl shows", func(ctx SpecContext) {
		kubectlPath, err := exec.LookPath("kubectl")
		if err != nil {
			Skip("kubectl is not on PATH")
		}
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		dev := environment(ns, "dev")
		dev.Spec.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}
		Expect(admin.Create(ctx, dev)).To(Succeed())
		Expect(admin.Create(ctx, &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1", Labels: map[string]string{"env": "dev"}},
			Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-1"},
		})).To(Succeed())
		bindRole(ctx, admin, ns, "agent", "host-1")
		promo := promote(ctx, admin, ns, "shop-1", "dev")
		report(ctx, shared.UserClient("host-1"), taskOf(ctx, promo, "web-1"), v1alpha1.DeployTaskSucceeded, "deployed")
		promo = reachesPhase(ctx, promo, v1alpha1.PromotionSucceeded)
		packet := sealedPacket(ctx, admin, promo)

		By("an auditor exports the decision")
		bindRole(ctx, admin, ns, "viewer", "ida")
		Expect(admin.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "auditor-ida-" + ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "stella-auditor"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "ida"}},
		})).To(Succeed())
		work := GinkgoT().TempDir()
		ida := shared.UserKubeconfig(work, "ida")
		tarPath := filepath.Join(work, "decision.tar")
		out, err := stellactl(ctx, ida, "evidence", "export", promo.Name, "-n", ns, "-o", tarPath)
		Expect(err).NotTo(HaveOccurred(), out)

		By("an outside verifier checks it with the server's keys, obtained separately")
		data, err := os.ReadFile(tarPath)
		Expect(err).NotTo(HaveOccurred())
		members, err := verifier.ReadTar(data)
		Expect(err).NotTo(HaveOccurred())
		Expect(members).To(HaveKey(evidence.FileLeaf))
		signingKey, err := os.ReadFile(filepath.Join(shared.DataDir, "evidence", evidence.PublicKeyFile))
		Expect(err).NotTo(HaveOccurred())
		checkpointKey, err := os.ReadFile(filepath.Join(shared.DataDir, "evidence", evidence.CheckpointVerifierFile))
		Expect(err).NotTo(HaveOccurred())
		verified, err := verifier.Verify(members, signingKey, string(checkpointKey))
		Expect(err).NotTo(HaveOccurred())
		Expect(verified.Statement).To(Equal(string(packet.Spec.ContentDigest)))
		Expect(verified.KeyID).To(Equal(packet.Status.KeyID))

		kubectl := func(args ...string) (string, error) {
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, kubectlPath, append([]string{"--kubeconfig", ida}, args...)...).CombinedOutput()
			return string(out), err
		}
		By("the log serves the same leaf at the packet's index")
		leaf, err := kubectl("get", "--raw", evidence.PathPrefix+evidence.PathEntries+packet.Status.LogIndex)
		Expect(err).NotTo(HaveOccurred(), leaf)
		Expect(leaf).To(Equal(string(members[evidence.FileLeaf])))

		By("GET /evidence/v1/ lists the endpoints")
		raw, err := kubectl("get", "--raw", evidence.PathPrefix)
		Expect(err).NotTo(HaveOccurred(), raw)
		var index evidence.Index
		Expect(json.Unmarshal([]byte(raw), &index)).To(Succeed(), raw)
		var paths []string
		for _, e := range index.Endpoints {
			paths = append(paths, e.Path)
		}
		Expect(paths).To(ContainElements("/evidence/v1/checkpoint", "/evidence/v1/entries/{index}", "/evidence/v1/blobs/sha256/{hex}",
			"/evidence/v1/proofs/inclusion?index={index}&size={size}", "/evidence/v1/keys/{keyid}.pub"))

		By("kubectl shows the server's message for a bad request")
		for path, message := range map[string]string{
			"/evidence/v1/entries/999999":                           "Error from server (NotFound): no entry 999999: the log has ",
			"/evidence/v1/proofs/inclusion?index=one&size=4":        `Error from server (BadRequest): index="one": want ?index=N&size=M, both decimal numbers`,
			"/evidence/v1/blobs/sha256/" + strings.Repeat("0", 64):  "Error from server (NotFound): ",
			"/evidence/v1/packets/" + promo.Name:                    "Error from server (NotFound): no evidence endpoint /evidence/v1/packets/" + promo.Name + "; GET /evidence/v1/ lists them",
			"/evidence/v1/keys/" + strings.Repeat("0", 64) + ".pub": `Error from server (NotFound): no signing key "` + strings.Repeat("0", 64) + `.pub", current or retired`,
		} {
			out, err := kubectl("get", "--raw", path)
			Expect(err).To(HaveOccurred(), "%s: %s", path, out)
			Expect(out).To(ContainSubstring(message), path)
		}
	})
})
