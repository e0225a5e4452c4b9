package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"golang.org/x/mod/sumdb/note"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
)

// sealedPacket waits until the EvidencePacket the promotion names is sealed.
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
		indexes := map[string]bool{}
		for _, promo := range []*v1alpha1.Promotion{allowed, denied} {
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
		}
		Expect(indexes).To(HaveLen(2), "two decisions, two log entries")
	})
})
