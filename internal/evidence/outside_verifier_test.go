package evidence_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/test/verifier"
)

// updateDoc regenerates the worked example of docs/evidence.md from a
// real sealer:
//
//	go test ./internal/evidence -run '^TestDocumentedExampleVerifies$' -update-doc
var updateDoc = flag.Bool("update-doc", false, "regenerate the worked example of docs/evidence.md")

const verifierDoc = "../../docs/evidence.md"

// decisionStatement is the statement of an allowed decision to promote
// version of shop to prod.
func decisionStatement(t *testing.T, version string) []byte {
	t.Helper()
	image := v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@sha256:" + strings.Repeat("ab", 32))
	release := v1alpha1.ReleaseSpec{Version: version, Components: []v1alpha1.ReleaseComponent{{Name: "api", Image: image}}}
	promotion := "shop-" + version + "-to-prod"
	in := decision.Inputs{
		Clock:       "2026-12-03T10:00:00Z",
		Promotion:   decision.Promotion{Name: promotion, Spec: v1alpha1.PromotionSpec{Release: "shop-" + version, Environment: "prod", RequestedBy: "alice"}},
		Release:     decision.Named[v1alpha1.ReleaseSpec]{Name: "shop-" + version, Value: release},
		Environment: decision.Named[v1alpha1.EnvironmentSpec]{Name: "prod"},
	}
	st, err := evidence.DecisionStatement("shop", promotion, release, decision.Decide(in, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// sealedServer is a real sealer that sealed four decisions, serving its
// endpoints, and the seal of the last decision.
func sealedServer(t *testing.T) (*httptest.Server, evidence.Seal) {
	t.Helper()
	s, err := evidence.OpenSealer(t.TempDir(), nil, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	// Seal as the replica holding the leader Lease does, under the log's lock.
	if err := s.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	var seal evidence.Seal
	for _, version := range []string{"1.0.0", "1.1.0", "1.2.0", "2.0.0"} {
		if seal, err = s.Seal(decisionStatement(t, version)); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, seal
}

// fetch sends method to path of srv and returns the answer.
func fetch(t *testing.T, srv *httptest.Server, method, path string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, data
}

// exportedPacket is the last decision of sealedServer exported as
// 'stellactl evidence export' does, reading its blobs, leaf and keys from
// the sealer's endpoints.
func exportedPacket(t *testing.T) *evidence.Packet {
	t.Helper()
	srv, seal := sealedServer(t)
	get := func(path string) []byte {
		res, data := fetch(t, srv, http.MethodGet, evidence.PathPrefix+path)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, res.StatusCode, data)
		}
		return data
	}
	blob := func(d v1alpha1.Digest) []byte {
		return get(evidence.PathBlobs + "sha256/" + strings.TrimPrefix(string(d), "sha256:"))
	}
	return &evidence.Packet{Statement: blob(seal.Statement), Envelope: blob(seal.Envelope), Checkpoint: []byte(seal.Checkpoint),
		Proof: evidence.Proof{Index: fmt.Sprint(seal.LogIndex), Hashes: seal.InclusionProof},
		Leaf:  get(evidence.PathEntries + fmt.Sprint(seal.LogIndex)), SigningKey: get(evidence.PathKeys + seal.KeyID + ".pub"),
		CheckpointKey: get(evidence.PathCheckpointKey)}
}

func tarOf(t *testing.T, p *evidence.Packet) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := p.WriteTar(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestOutsideVerifierChecksAnExportedPacket checks an exported packet with
// the documented formats alone: the leaf is in the packet, and the
// signature over the PAE by the documented key ID, the leaf hash, the
// inclusion proof and the checkpoint's signature all verify.
func TestOutsideVerifierChecksAnExportedPacket(t *testing.T) {
	p := exportedPacket(t)
	members, err := verifier.ReadTar(tarOf(t, p))
	if err != nil {
		t.Fatal(err)
	}
	if len(members[evidence.FileLeaf]) == 0 {
		t.Fatalf("the exported packet has no %s", evidence.FileLeaf)
	}
	v, err := verifier.Verify(members, p.SigningKey, string(p.CheckpointKey))
	if err != nil {
		t.Fatalf("an outside verifier refuses the packet: %v", err)
	}
	if v.Index != 3 || v.Checkpoint.Size != 4 || !bytes.Equal(v.Leaf, members[evidence.FileLeaf]) {
		t.Errorf("verified entry %d of %d, leaf %q", v.Index, v.Checkpoint.Size, v.Leaf)
	}

	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 1
		return b
	}
	for name, change := range map[string]func(verifier.Packet){
		"a leaf of another statement": func(m verifier.Packet) {
			m[evidence.FileLeaf] = bytes.Replace(m[evidence.FileLeaf], []byte(`"statement":"sha256:`), []byte(`"statement":"sha256:0`), 1)
		},
		"a proof hash": func(m verifier.Packet) {
			m[evidence.FileProof] = bytes.Replace(m[evidence.FileProof], []byte(`"hashes": [`+"\n"+`    "`), []byte(`"hashes": [`+"\n"+`    "f`), 1)
		},
		"the checkpoint root": func(m verifier.Packet) {
			m[evidence.FileCheckpoint] = flip(m[evidence.FileCheckpoint], bytes.IndexByte(m[evidence.FileCheckpoint], '\n')+4)
		},
		"the statement": func(m verifier.Packet) { m[evidence.FileStatement] = flip(m[evidence.FileStatement], 30) },
		"the signature": func(m verifier.Packet) {
			m[evidence.FileEnvelope] = flip(m[evidence.FileEnvelope], bytes.Index(m[evidence.FileEnvelope], []byte(`"sig":"`))+8)
		},
	} {
		t.Run(name, func(t *testing.T) {
			tampered := verifier.Packet{}
			for k, b := range members {
				tampered[k] = bytes.Clone(b)
			}
			change(tampered)
			if maps.EqualFunc(tampered, members, bytes.Equal) {
				t.Fatalf("changing %s changed nothing", name)
			}
			if _, err := verifier.Verify(tampered, p.SigningKey, string(p.CheckpointKey)); err == nil {
				t.Errorf("the outside verifier accepts a packet with %s changed", name)
			}
		})
	}
}

// exampleBlock is a fenced block of the worked example, after its marker
// <!-- example: NAME --> or <!-- example: NAME, no final newline -->.
var exampleBlock = regexp.MustCompile("(?s)<!-- example: ([^,>]+?)(, no final newline)? -->\n```[a-z]*\n(.*?)```\n")

// exampleBlocks are the blocks of doc by name, as the bytes they stand for.
func exampleBlocks(doc []byte) map[string][]byte {
	blocks := map[string][]byte{}
	for _, m := range exampleBlock.FindAllSubmatch(doc, -1) {
		content := m[3]
		if len(m[2]) > 0 {
			content = bytes.TrimSuffix(content, []byte("\n"))
		}
		blocks[string(m[1])] = content
	}
	return blocks
}

// exampleValues are the values the worked example shows, derived with the
// outside verifier from the example's packet members.
func exampleValues(t *testing.T, members verifier.Packet) map[string][]byte {
	t.Helper()
	v, err := verifier.Verify(members, members[evidence.FileSigningKey], string(members[evidence.FileCheckpointKey]))
	if err != nil {
		t.Fatalf("the outside verifier refuses the example: %v", err)
	}
	var env evidence.Envelope
	if err := json.Unmarshal(members[evidence.FileEnvelope], &env); err != nil {
		t.Fatal(err)
	}
	pae := verifier.PAE(env.PayloadType, members[evidence.FileStatement])
	var proof evidence.Proof
	if err := json.Unmarshal(members[evidence.FileProof], &proof); err != nil {
		t.Fatal(err)
	}
	hashes, err := verifier.DecodeHashes(proof.Hashes)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := verifier.ParseVerifierKey(string(members[evidence.FileCheckpointKey]))
	if err != nil {
		t.Fatal(err)
	}
	keyData := append([]byte{1}, vkey.Key...)
	paeSum := sha256.Sum256(pae)
	return map[string][]byte{
		"key ID":           []byte(v.KeyID + "\n"),
		"statement digest": []byte(v.Statement + "\n"),
		"PAE":              fmt.Appendf(nil, "%s<the %d bytes of statement.json>\nSHA-256 of the PAE: %x\n", pae[:len(pae)-len(members[evidence.FileStatement])], len(members[evidence.FileStatement]), paeSum),
		"leaf hash":        []byte(hex.EncodeToString(v.LeafHash[:]) + "\n"),
		"inclusion":        inclusionSteps(v.Index, v.Checkpoint.Size, v.LeafHash, hashes, v.Checkpoint.Root),
		"key hash":         fmt.Appendf(nil, "SHA-256(%q || 0x0a || 0x01 || public key) = %x\nkey hash: %08x\n", vkey.Name, sha256.Sum256(append([]byte(vkey.Name+"\n"), keyData...)), vkey.Hash),
		"public key":       []byte(hex.EncodeToString(vkey.Key) + "\n"),
	}
}

// inclusionSteps shows the RFC 9162 walk from a leaf hash to the root, one
// hash per line, with the root the checkpoint holds.
func inclusionSteps(index, size uint64, leaf [32]byte, proof [][32]byte, root [32]byte) []byte {
	var out bytes.Buffer
	fmt.Fprintf(&out, "fn=%d sn=%d r=%x (leaf hash)\n", index, size-1, leaf)
	fn, sn, r := index, size-1, leaf
	for i, p := range proof {
		if fn&1 == 1 || fn == sn {
			r = verifier.NodeHash(p, r)
			fmt.Fprintf(&out, "fn=%d sn=%d r=SHA-256(0x01 || hashes[%d] || r)=%x\n", fn, sn, i, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = verifier.NodeHash(r, p)
			fmt.Fprintf(&out, "fn=%d sn=%d r=SHA-256(0x01 || r || hashes[%d])=%x\n", fn, sn, i, r)
		}
		fn >>= 1
		sn >>= 1
	}
	fmt.Fprintf(&out, "fn=%d sn=%d: the walk ends; r is the checkpoint's root %s\n", fn, sn, base64.StdEncoding.EncodeToString(root[:]))
	return out.Bytes()
}

// TestDocumentedExampleVerifies recomputes every value of the worked
// example in docs/evidence.md from the example's own bytes, with the
// outside verifier, and verifies the example's packet with Stella's
// verifier too, so that the document and the code cannot drift apart.
func TestDocumentedExampleVerifies(t *testing.T) {
	doc, err := os.ReadFile(verifierDoc)
	if err != nil {
		t.Fatal(err)
	}
	if *updateDoc {
		doc = regenerateExample(t, doc)
	}
	blocks := exampleBlocks(doc)
	members := verifier.Packet{}
	for _, name := range []string{evidence.FileSigningKey, evidence.FileCheckpointKey, evidence.FileStatement, evidence.FileEnvelope,
		evidence.FileLeaf, evidence.FileProof, evidence.FileCheckpoint} {
		if blocks[name] == nil {
			t.Fatalf("%s has no example block %q", verifierDoc, name)
		}
		members[name] = blocks[name]
	}
	for name, want := range exampleValues(t, members) {
		if !bytes.Equal(blocks[name], want) {
			t.Errorf("example block %q of %s:\n%s\nrecomputed from the example's bytes:\n%s", name, verifierDoc, blocks[name], want)
		}
	}

	vkey, err := verifier.ParseVerifierKey(string(members[evidence.FileCheckpointKey]))
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(vkey.Key)
	if err != nil {
		t.Fatal(err)
	}
	if origin := fmt.Sprintf("stella-ops.org/evidence-log/%x", sha256.Sum256(der))[:len("stella-ops.org/evidence-log/")+16]; vkey.Name != origin {
		t.Errorf("the example's origin is %s; the documented rule gives %s", vkey.Name, origin)
	}

	var proof evidence.Proof
	if err := json.Unmarshal(members[evidence.FileProof], &proof); err != nil {
		t.Fatal(err)
	}
	p := &evidence.Packet{Statement: members[evidence.FileStatement], Envelope: members[evidence.FileEnvelope], Leaf: members[evidence.FileLeaf],
		Checkpoint: members[evidence.FileCheckpoint], Proof: proof, SigningKey: members[evidence.FileSigningKey], CheckpointKey: members[evidence.FileCheckpointKey]}
	trust, err := p.TrustOf(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Verify(trust); err != nil {
		t.Errorf("Stella's verifier refuses the documented example: %v", err)
	}
	exported, err := evidence.ReadPacket(bytes.NewReader(tarOf(t, p)))
	if err != nil {
		t.Fatal(err)
	}
	if written, _ := json.MarshalIndent(exported.Proof, "", "  "); !bytes.Equal(written, members[evidence.FileProof]) {
		t.Errorf("the example's proof.json is not as an export writes it:\n%s", written)
	}
}

// regenerateExample writes the worked example of a freshly sealed packet
// into doc's example blocks and into the file.
func regenerateExample(t *testing.T, doc []byte) []byte {
	t.Helper()
	p := exportedPacket(t)
	proof, err := json.MarshalIndent(p.Proof, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	members := verifier.Packet{evidence.FileSigningKey: p.SigningKey, evidence.FileCheckpointKey: p.CheckpointKey, evidence.FileStatement: p.Statement,
		evidence.FileEnvelope: p.Envelope, evidence.FileLeaf: p.Leaf, evidence.FileProof: proof, evidence.FileCheckpoint: p.Checkpoint}
	values := exampleValues(t, members)
	for name, data := range members {
		values[name] = data
	}
	doc = exampleBlock.ReplaceAllFunc(doc, func(block []byte) []byte {
		m := exampleBlock.FindSubmatch(block)
		data, ok := values[string(m[1])]
		if !ok {
			t.Fatalf("%s: no value for example block %q", verifierDoc, m[1])
		}
		if len(m[2]) > 0 || !bytes.HasSuffix(data, []byte("\n")) {
			data = append(bytes.Clone(data), '\n')
		}
		opening := block[:bytes.Index(block, []byte("```"))]
		fence := block[len(opening) : len(opening)+bytes.IndexByte(block[len(opening):], '\n')+1]
		return slices.Concat(opening, fence, data, []byte("```\n"))
	})
	if err := os.WriteFile(verifierDoc, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	return doc
}
