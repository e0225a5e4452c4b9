package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"golang.org/x/mod/sumdb/note"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/test/framework"
)

// sealedPacket waits until the EvidencePacket the promotion names is sealed.
// sealedRolloutPacket waits for the sealed deployment or rollback record of
// promo's finished rollout.
func sealedRolloutPacket(ctx context.Context, c client.Client, promo *v1alpha1.Promotion) *v1alpha1.EvidencePacket {
	GinkgoHelper()
	var found *v1alpha1.EvidencePacket
	Eventually(func(g Gomega) {
		var list v1alpha1.EvidencePacketList
		g.Expect(c.List(ctx, &list, client.InNamespace(promo.Namespace), client.MatchingLabels{v1alpha1.LabelPromotion: v1alpha1.LabelValue(promo.Name)})).To(Succeed())
		found = nil
		for i := range list.Items {
			p := &list.Items[i]
			if p.Spec.PromotionUID == promo.UID && p.Spec.Type != v1alpha1.EvidenceReleaseDecision {
				found = p
			}
		}
		g.Expect(found).NotTo(BeNil(), "a rollout record of promotion %s", promo.Name)
		g.Expect(found.Status.Phase).To(Equal(v1alpha1.EvidenceSealed))
	}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
	return found
}

func sealedPacket(ctx context.Context, c client.Client, promo *v1alpha1.Promotion) *v1alpha1.EvidencePacket {
	GinkgoHelper()
	packet := &v1alpha1.EvidencePacket{}
	Eventually(func(g Gomega) {
		p := &v1alpha1.Promotion{}
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(promo), p)).To(Succeed())
		g.Expect(p.Status.EvidencePacket).NotTo(BeEmpty())
		g.Expect(c.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: p.Status.EvidencePacket}, packet)).To(Succeed())
		g.Expect(packet.Status.Phase).To(Equal(v1alpha1.EvidenceSealed))
	}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
	return packet
}

// verifyOffline copies what an auditor receives (the envelope and the
// server's public keys) to a directory of its own and verifies the packet
// from there.
func verifyOffline(dataDir string, packet *v1alpha1.EvidencePacket) *evidence.Statement {
	GinkgoHelper()
	auditor := GinkgoT().TempDir()
	envelopePath, ok := strings.CutPrefix(packet.Status.StorageURI, "file://")
	Expect(ok).To(BeTrue(), packet.Status.StorageURI)
	for src, dst := range map[string]string{
		envelopePath: "envelope.json",
		filepath.Join(dataDir, "evidence", evidence.PublicKeyFile):          "signing.pub",
		filepath.Join(dataDir, "evidence", evidence.CheckpointVerifierFile): "checkpoint.vkey",
	} {
		data, err := os.ReadFile(src)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(auditor, dst), data, 0o600)).To(Succeed())
	}
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(auditor, name))
		Expect(err).NotTo(HaveOccurred())
		return data
	}
	pub, err := evidence.ParsePublicKey(read("signing.pub"), "signing.pub")
	Expect(err).NotTo(HaveOccurred())
	cpVerifier, err := note.NewVerifier(strings.TrimSpace(string(read("checkpoint.vkey"))))
	Expect(err).NotTo(HaveOccurred())
	trust := evidence.Trust{Keys: evidence.Keys{}, Checkpoint: cpVerifier}
	Expect(trust.Keys.Add(pub)).To(Succeed())
	index, err := strconv.ParseUint(packet.Status.LogIndex, 10, 64)
	Expect(err).NotTo(HaveOccurred())
	var proof [][]byte
	for _, h := range packet.Status.InclusionProof {
		b, err := hex.DecodeString(h)
		Expect(err).NotTo(HaveOccurred())
		proof = append(proof, b)
	}
	st, err := evidence.VerifySealed(evidence.Sealed{Envelope: read("envelope.json"), LogIndex: index,
		Checkpoint: []byte(packet.Status.Checkpoint), InclusionProof: proof}, trust)
	Expect(err).NotTo(HaveOccurred())
	return st
}

var _ = Describe("evidence", func() {
	It("seals every final decision, allow or deny, into a signed and logged packet that verifies offline and replays to its hash", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, release(ns, "shop-2-rc", "2.0.0-rc.1"))).To(Succeed())
		Expect(admin.Create(ctx, &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-rc"},
			Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: `
import "strings"
allow: !strings.Contains(input.release.version, "-rc")
reasons: [if !allow {"release candidates stay out"}]
`}}})).To(Succeed())
		env := environment(ns, "guarded")
		env.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "no-rc"}}
		Expect(admin.Create(ctx, env)).To(Succeed())

		allowed := reachesPhase(ctx, promote(ctx, admin, ns, "shop-1", "guarded"), v1alpha1.PromotionSucceeded)
		denied := reachesPhase(ctx, promote(ctx, admin, ns, "shop-2-rc", "guarded"), v1alpha1.PromotionRejected)
		Expect(admin.Create(ctx, environment(ns, "prod", "guarded"))).To(Succeed())
		refused := reachesPhase(ctx, promote(ctx, admin, ns, "shop-2-rc", "prod"), v1alpha1.PromotionRejected)
		Expect(refused.Status.Decision.ReasonCodes).To(Equal([]string{"promotion.upstream-not-succeeded"}))
		indexes := map[string]bool{}
		for _, promo := range []*v1alpha1.Promotion{allowed, denied, refused} {
			packet := sealedPacket(ctx, admin, promo)
			Expect(packet.Spec.Type).To(Equal(v1alpha1.EvidenceReleaseDecision))
			Expect(packet.Spec.Promotion).To(Equal(promo.Name))
			Expect(packet.Spec.ContentDigest).To(Equal(promo.Status.Decision.StatementDigest))
			Expect(packet.Spec.Subjects).To(HaveLen(2))
			Expect(packet.Status.Verified).To(BeTrue())
			Expect(packet.Status.KeyID).To(HaveLen(64))
			indexes[packet.Status.LogIndex] = true

			st := verifyOffline(shared.DataDir, packet)
			Expect(st.PredicateType).To(Equal(evidence.PredicateDecision))
			var pred evidence.DecisionPredicate
			Expect(json.Unmarshal(st.Predicate, &pred)).To(Succeed())
			Expect(pred.Promotion).To(Equal(promo.Name))
			Expect(pred.Record.Result).To(Equal(promo.Status.Decision.Result))
			Expect(pred.DeterminismHash).To(Equal(promo.Status.Decision.DeterminismHash))
			replayed, err := pred.Record.Hash()
			Expect(err).NotTo(HaveOccurred())
			Expect(replayed).To(Equal(promo.Status.Decision.DeterminismHash), "the frozen record hashes to the decision's determinism hash")

			out, err := stellactl(ctx, shared.Kubeconfig(), "replay", "promotion", promo.Name, "-n", ns)
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("identical, " + string(promo.Status.Decision.Result)))
			Expect(out).To(ContainSubstring(string(promo.Status.Decision.DeterminismHash)))
		}
		Expect(indexes).To(HaveLen(3), "three decisions, three log entries")

		gate := &v1alpha1.Gate{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "no-rc"}, gate)).To(Succeed())
		gate.Spec.Policy.Source = "allow: true\nreasons: []\n"
		Expect(admin.Update(ctx, gate)).To(Succeed())
		Eventually(func() string {
			out, _ := stellactl(ctx, shared.Kubeconfig(), "replay", "promotion", denied.Name, "-n", ns, "--what-if")
			return out
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			ContainSubstring("identical, deny"),
			MatchRegexp(`no-rc\s+Fail\s+Pass`),
			ContainSubstring("deny [policy.denied] then, allow [] now (would change)")))
	})

	It("exports a packet that verifies offline, names what is wrong with a tampered one, and proves the log only grew", func(ctx SpecContext) {
		admin := shared.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, release(ns, "shop-2", "2.0.0"))).To(Succeed())
		dev := environment(ns, "dev")
		dev.Spec.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}
		Expect(admin.Create(ctx, dev)).To(Succeed())
		Expect(admin.Create(ctx, &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1", Labels: map[string]string{"env": "dev"}},
			Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-1"},
		})).To(Succeed())
		bindRole(ctx, admin, ns, "agent", "host-1")
		first := promote(ctx, admin, ns, "shop-1", "dev")
		report(ctx, shared.UserClient("host-1"), taskOf(ctx, first, "web-1"), v1alpha1.DeployTaskSucceeded, "deployed")
		first = reachesPhase(ctx, first, v1alpha1.PromotionSucceeded)
		sealedPacket(ctx, admin, first)

		bindRole(ctx, admin, ns, "viewer", "vic")
		bindRole(ctx, admin, ns, "viewer", "ann")
		Expect(admin.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "auditor-ann-" + ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "stella-auditor"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "ann"}},
		})).To(Succeed())
		work := GinkgoT().TempDir()
		tarPath := filepath.Join(work, "decision.tar")
		out, err := stellactl(ctx, shared.UserKubeconfig(work, "vic"), "evidence", "export", first.Name, "-n", ns, "-o", tarPath)
		Expect(err).To(HaveOccurred(), "a viewer without stella-auditor reads no evidence")
		Expect(out).To(ContainSubstring("forbidden"))
		ann := shared.UserKubeconfig(work, "ann")
		out, err = stellactl(ctx, ann, "evidence", "export", first.Name, "-n", ns, "-o", tarPath)
		Expect(err).NotTo(HaveOccurred(), out)

		// The auditor's machine: the packet and the server's key, nothing else.
		auditor := GinkgoT().TempDir()
		keyPath := filepath.Join(auditor, "stella.pub")
		key, err := os.ReadFile(filepath.Join(shared.DataDir, "evidence", evidence.PublicKeyFile))
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(keyPath, key, 0o600)).To(Succeed())
		packetData, err := os.ReadFile(tarPath)
		Expect(err).NotTo(HaveOccurred())
		write := func(name string, data []byte) string {
			p := filepath.Join(auditor, name)
			Expect(os.WriteFile(p, data, 0o600)).To(Succeed())
			return p
		}
		verify := func(file string, extra ...string) (string, int) {
			out, err := stellactlEnv(ctx, []string{"KUBECONFIG=/nonexistent"}, append([]string{"evidence", "verify", file}, extra...)...)
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				return out, exit.ExitCode()
			}
			Expect(err).NotTo(HaveOccurred(), out)
			return out, 0
		}
		out, code := verify(write("good.tar", packetData), "--key", keyPath)
		Expect(code).To(Equal(0), out)
		replayed, err := stellactlEnv(ctx, []string{"KUBECONFIG=/nonexistent"}, "replay", filepath.Join(auditor, "good.tar"), "--key", keyPath)
		Expect(err).NotTo(HaveOccurred(), replayed)
		Expect(replayed).To(ContainSubstring("identical, allow"))
		Expect(out).To(ContainSubstring("verified: " + evidence.PredicateDecision))
		Expect(out).To(ContainSubstring(first.Name + ": allow"))

		tampered := func(change func(*evidence.Packet)) []byte {
			p, err := evidence.ReadPacket(bytes.NewReader(packetData))
			Expect(err).NotTo(HaveOccurred())
			change(p)
			var buf bytes.Buffer
			Expect(p.WriteTar(&buf)).To(Succeed())
			return buf.Bytes()
		}
		otherKey, err := evidence.LoadOrCreateSigningKey(filepath.Join(auditor, "other"))
		Expect(err).NotTo(HaveOccurred())
		otherPub, err := evidence.MarshalPublicKey(otherKey.Public())
		Expect(err).NotTo(HaveOccurred())
		for _, tc := range []struct {
			name   string
			packet []byte
			extra  []string
			code   int
		}{
			{"one byte of the statement", tampered(func(p *evidence.Packet) { p.Statement[20] ^= 1 }), nil, 4},
			{"the envelope's signature", tampered(func(p *evidence.Packet) {
				var env evidence.Envelope
				Expect(json.Unmarshal(p.Envelope, &env)).To(Succeed())
				sig := []byte(env.Signatures[0].Sig)
				sig[5] = map[bool]byte{true: 'A', false: 'B'}[sig[5] != 'A']
				env.Signatures[0].Sig = string(sig)
				p.Envelope, _ = json.Marshal(env)
			}), nil, 3},
			{"a proof hash", tampered(func(p *evidence.Packet) {
				if len(p.Proof.Hashes) == 0 {
					p.Proof.Index = "1"
					return
				}
				h := []byte(p.Proof.Hashes[0])
				h[0] = map[bool]byte{true: '0', false: '1'}[h[0] != '0']
				p.Proof.Hashes[0] = string(h)
			}), nil, 5},
			{"the checkpoint", tampered(func(p *evidence.Packet) { p.Checkpoint[len(p.Checkpoint)-5] ^= 1 }), nil, 5},
			{"truncated", packetData[:len(packetData)/3], nil, 2},
			{"another server's key", packetData, []string{"--key", write("other.pub", otherPub)}, 6},
		} {
			out, code := verify(write(strings.ReplaceAll(tc.name, " ", "-")+".tar", tc.packet), tc.extra...)
			Expect(code).To(Equal(tc.code), "%s: %s", tc.name, out)
			Expect(out).NotTo(ContainSubstring("verified:"), tc.name)
		}

		rolloutTar := filepath.Join(work, "rollout.tar")
		out, err = stellactl(ctx, ann, "evidence", "export", first.Name, "-n", ns, "--rollout", "-o", rolloutTar)
		Expect(err).NotTo(HaveOccurred(), out)
		out, code = verify(rolloutTar, "--key", keyPath)
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring("verified: " + evidence.PredicateDeployment))

		oldCP, err := stellactl(ctx, ann, "log", "checkpoint")
		Expect(err).NotTo(HaveOccurred(), oldCP)
		oldPath := write("old.cp", []byte(oldCP))
		second := promote(ctx, admin, ns, "shop-2", "dev")
		report(ctx, shared.UserClient("host-1"), taskOf(ctx, second, "web-1"), v1alpha1.DeployTaskSucceeded, "deployed")
		sealedPacket(ctx, admin, reachesPhase(ctx, second, v1alpha1.PromotionSucceeded))
		out, err = stellactl(ctx, ann, "log", "verify", "--from", oldPath)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`consistent: the log of \d+ entries extends the log of \d+ entries`))
		forged := write("forged.cp", []byte(strings.Replace(oldCP, "\n", "\nX", 2)))
		_, err = stellactl(ctx, ann, "log", "verify", "--from", forged)
		var exit *exec.ExitError
		Expect(errors.As(err, &exit)).To(BeTrue())
		Expect(exit.ExitCode()).To(Equal(5))
	})
})

var _ = Describe("evidence signing keys", func() {
	It("rotates: packets sealed with the retired key still export and verify, new ones use the new key", func(ctx SpecContext) {
		srv := startServer(framework.ServerOptions{})
		admin := srv.AdminClient()
		ns := newNamespace(ctx, admin)
		for _, r := range []*v1alpha1.Release{release(ns, "shop-1", "1.0.0"), release(ns, "shop-2", "2.0.0")} {
			Expect(admin.Create(ctx, r)).To(Succeed())
		}
		Expect(admin.Create(ctx, environment(ns, "dev"))).To(Succeed())
		first := reachesPhaseOn(ctx, admin, promote(ctx, admin, ns, "shop-1", "dev"), v1alpha1.PromotionSucceeded)
		before := sealedPacket(ctx, admin, first)

		Expect(srv.Stop()).To(Succeed())
		out, err := framework.Run(ctx, bin.Stella, nil, "keys", "rotate", "--data-dir", srv.DataDir)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("retired signing key " + before.Status.KeyID))
		again := startServer(framework.ServerOptions{DataDir: srv.DataDir, Listen: srv.Listen})
		admin = again.AdminClient()
		second := reachesPhaseOn(ctx, admin, promote(ctx, admin, ns, "shop-2", "dev"), v1alpha1.PromotionSucceeded)
		after := sealedPacket(ctx, admin, second)
		Expect(after.Status.KeyID).NotTo(Equal(before.Status.KeyID))

		work := GinkgoT().TempDir()
		for _, promo := range []*v1alpha1.Promotion{first, second} {
			tarPath := filepath.Join(work, promo.Name+".tar")
			out, err := stellactl(ctx, again.Kubeconfig(), "evidence", "export", promo.Name, "-n", ns, "-o", tarPath)
			Expect(err).NotTo(HaveOccurred(), out)
			out, err = stellactlEnv(ctx, []string{"KUBECONFIG=/nonexistent"}, "evidence", "verify", tarPath)
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("verified:"))
		}
	})
})

var _ = Describe("evidence across a crash", func() {
	It("after kill -9 in the middle of sealing, every decision is sealed exactly once and the log opens consistent", func(ctx SpecContext) {
		const n = 60
		srv := startServer(framework.ServerOptions{})
		admin := srv.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		for i := range n {
			Expect(admin.Create(ctx, environment(ns, fmt.Sprintf("env-%02d", i)))).To(Succeed())
		}
		for i := range n {
			Expect(admin.Create(ctx, promotion(ns, fmt.Sprintf("p-%02d", i), "shop-1", fmt.Sprintf("env-%02d", i)))).To(Succeed())
		}
		sealed := func(c client.Client) func() int {
			return func() int {
				var list v1alpha1.EvidencePacketList
				_ = c.List(ctx, &list, client.InNamespace(ns))
				count := 0
				for _, p := range list.Items {
					if p.Status.Phase == v1alpha1.EvidenceSealed {
						count++
					}
				}
				return count
			}
		}
		Eventually(sealed(admin)).WithContext(ctx).WithPolling(20 * time.Millisecond).WithTimeout(60 * time.Second).Should(BeNumerically(">=", 3))
		srv.Kill()

		again := startServer(framework.ServerOptions{DataDir: srv.DataDir, Listen: srv.Listen})
		admin = again.AdminClient()
		Eventually(sealed(admin)).WithContext(ctx).WithTimeout(90 * time.Second).Should(Equal(n))
		var list v1alpha1.EvidencePacketList
		Expect(admin.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		indexes := map[string]string{}
		for _, p := range list.Items {
			Expect(indexes).NotTo(HaveKey(p.Status.LogIndex), "packets %s and %s share a log entry", p.Name, indexes[p.Status.LogIndex])
			indexes[p.Status.LogIndex] = p.Name
			Expect(p.Status.Verified).To(BeTrue(), p.Name)
		}
		Expect(again.Stop()).To(Succeed())
		entries, err := evidence.OpenLog(filepath.Join(again.DataDir, "evidence"), GinkgoLogr)
		Expect(err).NotTo(HaveOccurred())
		defer entries.Close()
		Expect(entries.Size()).To(Equal(uint64(n)), "one log entry per decision: none lost, none twice")
	})
})
