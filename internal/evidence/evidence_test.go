package evidence

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"golang.org/x/mod/sumdb/note"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/tlog"
)

const digest = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func release() v1alpha1.ReleaseSpec {
	return v1alpha1.ReleaseSpec{Version: "1.2.3", Components: []v1alpha1.ReleaseComponent{
		{Name: "worker", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/worker@" + digest)},
		{Name: "api", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@" + digest)},
	}}
}

// record builds a decision from scratch each time, as two servers would.
func record() decision.Record {
	in := decision.Inputs{
		Clock:       "2026-11-28T10:00:00Z",
		Promotion:   decision.Promotion{Name: "shop-to-prod", Spec: v1alpha1.PromotionSpec{Release: "shop", Environment: "prod", RequestedBy: "alice"}},
		Release:     decision.Named[v1alpha1.ReleaseSpec]{Name: "shop", Value: release()},
		Environment: decision.Named[v1alpha1.EnvironmentSpec]{Name: "prod"},
		Approvals: []decision.Approval{
			{Name: "b", Spec: v1alpha1.ApprovalSpec{Promotion: "shop-to-prod", Approver: "carol", Decision: v1alpha1.ApprovalApprove}, CreatedAt: "2026-11-28T09:00:00Z"},
			{Name: "a", Spec: v1alpha1.ApprovalSpec{Promotion: "shop-to-prod", Approver: "bob", Decision: v1alpha1.ApprovalApprove}, CreatedAt: "2026-11-28T09:30:00Z"},
		},
	}
	return decision.Decide(in, []v1alpha1.GateEvaluation{{Name: "two-approvers", Type: "approval", Result: v1alpha1.GatePass}}, nil)
}

func statement(t *testing.T) []byte {
	t.Helper()
	st, err := DecisionStatement("shop", "shop-to-prod", release(), record())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func signers(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return map[string]crypto.Signer{"ed25519": ed, "ecdsa-p256": ec}
}

func TestSignAndVerify(t *testing.T) {
	for name, key := range signers(t) {
		t.Run(name, func(t *testing.T) {
			s, err := NewSigner(key)
			if err != nil {
				t.Fatal(err)
			}
			env, err := s.Sign(statement(t))
			if err != nil {
				t.Fatal(err)
			}
			keys := Keys{}
			keys.Add(key.Public())
			payload, keyID, err := Verify(env, keys)
			if err != nil {
				t.Fatal(err)
			}
			if string(payload) != string(statement(t)) || keyID != s.KeyID() {
				t.Errorf("verified %q by %s, want the statement by %s", payload, keyID, s.KeyID())
			}
			if _, err := ParseStatement(payload); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSameInputsGiveTheSameBytes(t *testing.T) {
	if a, b := statement(t), statement(t); string(a) != string(b) {
		t.Fatalf("two statements of one decision differ:\n%s\n%s", a, b)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	one, _ := NewSigner(key)
	two, _ := NewSigner(key) // another server holding the same key
	a, _ := one.Sign(statement(t))
	b, _ := two.Sign(statement(t))
	if string(a) != string(b) {
		t.Fatalf("Ed25519 envelopes of one statement differ:\n%s\n%s", a, b)
	}
	var st Statement
	json.Unmarshal(statement(t), &st)
	if len(st.Subject) != 2 || st.Subject[0].Name != "127.0.0.1:5000/shop/api" || st.Subject[0].Digest["sha256"] != strings.TrimPrefix(digest, "sha256:") {
		t.Errorf("subjects = %+v", st.Subject)
	}
}

func TestTamperedOrForeignEnvelopesFail(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s, _ := NewSigner(key)
	env, _ := s.Sign(statement(t))
	keys := Keys{}
	keys.Add(key.Public())
	edit := func(change func(*Envelope)) []byte {
		var e Envelope
		json.Unmarshal(env, &e)
		change(&e)
		out, _ := json.Marshal(e)
		return out
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	other := Keys{}
	other.Add(otherKey.Public())
	for _, tc := range []struct {
		name     string
		envelope []byte
		keys     Keys
		want     error
	}{
		{"one byte of the payload", edit(func(e *Envelope) {
			p, _ := base64.StdEncoding.DecodeString(e.Payload)
			p[10] ^= 1
			e.Payload = base64.StdEncoding.EncodeToString(p)
		}), keys, ErrBadSignature},
		{"the signature", edit(func(e *Envelope) {
			sig, _ := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
			sig[0] ^= 1
			e.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
		}), keys, ErrBadSignature},
		{"the payload type", edit(func(e *Envelope) { e.PayloadType = "text/plain" }), keys, ErrMalformed},
		{"no signature", edit(func(e *Envelope) { e.Signatures = nil }), keys, ErrMalformed},
		{"an unknown key", env, other, ErrUnknownKey},
		{"truncated", env[:len(env)/2], keys, ErrMalformed},
		{"over the size bound", append(env, make([]byte, MaxEnvelopeSize)...), keys, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Verify(tc.envelope, tc.keys); !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseStatementRefusesWhatStellaDoesNotWrite(t *testing.T) {
	unknown, err := canonicalJSON(Statement{Type: "https://in-toto.io/Statement/v1", PredicateType: "https://example.com/other/v1",
		Subject: []Subject{{Name: "x", Digest: map[string]string{"sha256": "00"}}}, Predicate: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	noSubject, _ := canonicalJSON(Statement{Type: "https://in-toto.io/Statement/v1", PredicateType: PredicateDecision, Predicate: json.RawMessage(`{}`)})
	for name, data := range map[string][]byte{"unknown predicate type": unknown, "no subject": noSubject, "not JSON": []byte("{")} {
		if _, err := ParseStatement(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// sslVerifier verifies with the standard library only, for
// go-securesystemslib's DSSE verifier: nothing of this package's own
// verification is used.
type sslVerifier struct{ pub ed25519.PublicKey }

func (v sslVerifier) Verify(_ context.Context, data, sig []byte) error {
	if !ed25519.Verify(v.pub, data, sig) {
		return errors.New("bad signature")
	}
	return nil
}
func (v sslVerifier) KeyID() (string, error) {
	id, err := KeyID(v.pub)
	return id, err
}
func (v sslVerifier) Public() crypto.PublicKey { return v.pub }

func TestEnvelopesVerifyWithSecureSystemsLib(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	s, _ := NewSigner(key)
	raw, _ := s.Sign(statement(t))
	var env ssldsse.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	ev, err := ssldsse.NewEnvelopeVerifier(sslVerifier{pub})
	if err != nil {
		t.Fatal(err)
	}
	accepted, err := ev.Verify(context.Background(), &env)
	if err != nil {
		t.Fatal(err)
	}
	if len(accepted) != 1 || accepted[0].KeyID != s.KeyID() {
		t.Errorf("accepted %+v, want key %s", accepted, s.KeyID())
	}
	env.Payload = base64.StdEncoding.EncodeToString(append(statement(t), ' '))
	if _, err := ev.Verify(context.Background(), &env); err == nil {
		t.Error("go-securesystemslib accepted a changed payload")
	}
}

func TestSigningKeyIsCreatedOnceAndKeptPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "evidence")
	first, err := LoadOrCreateSigningKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, SigningKeyFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", info, err)
	}
	second, err := LoadOrCreateSigningKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !first.(ed25519.PrivateKey).Equal(second) {
		t.Fatal("the second start made a new key")
	}
	pubPEM, _ := os.ReadFile(filepath.Join(dir, PublicKeyFile))
	pub, err := ParsePublicKey(pubPEM, PublicKeyFile)
	if err != nil || !first.Public().(ed25519.PublicKey).Equal(pub) {
		t.Fatalf("public key file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, SigningKeyFile), []byte("garbage"), 0o600)
	if _, err := LoadOrCreateSigningKey(dir); err == nil || !strings.Contains(err.Error(), SigningKeyFile) {
		t.Fatalf("a corrupt key file: %v, want an error naming it", err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := ParsePublicKey(mustPEM(t, ec.Public()), "p384.pub"); err == nil {
		t.Error("a P-384 key was accepted")
	}
}

func mustPEM(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	out, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNoteKeysSignCheckpoints(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, verifier, _, err := NoteKeys("stella.example/log", key)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: "stella.example/log\n1\nAAAA\n"}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(verifier)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(msg)
	if again, _ := note.Sign(&note.Note{Text: "stella.example/log\n1\nAAAA\n"}, signer); sha256.Sum256(again) != sum {
		t.Error("signing one checkpoint twice gave different notes")
	}
}

func BenchmarkVerify(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s, _ := NewSigner(key)
	st, _ := DecisionStatement("shop", "shop-to-prod", release(), record())
	env, _ := s.Sign(st)
	keys := Keys{}
	keys.Add(key.Public())
	for b.Loop() {
		if _, _, err := Verify(env, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// sealingSealer opens the evidence directory dir and takes its log's lock,
// as the replica holding the leader Lease does.
func sealingSealer(tb testing.TB, dir string, store BlobStore, log logr.Logger) *Sealer {
	tb.Helper()
	s, err := OpenSealer(dir, store, log)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Acquire(context.Background()); err != nil {
		s.Close()
		tb.Fatal(err)
	}
	return s
}

// TestSealIsRefusedWithoutTheLogsLock seals on a replica that does not
// hold the Lease, beside one that does: the refusal says why, and the log
// gets nothing.
func TestSealIsRefusedWithoutTheLogsLock(t *testing.T) {
	dir := t.TempDir()
	leader := sealingSealer(t, dir, nil, testr.New(t))
	defer leader.Close()
	follower, err := OpenSealer(dir, nil, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	entries := filepath.Join(dir, logDir, tlog.EntriesFile)
	before, err := os.ReadFile(entries)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follower.Seal(statement(t)); !errors.Is(err, tlog.ErrNotWriter) || !strings.Contains(err.Error(), "leader Lease") {
		t.Fatalf("sealing without the log's lock: %v; want a refusal naming the leader Lease", err)
	}
	if after, _ := os.ReadFile(entries); !bytes.Equal(after, before) {
		t.Fatal("a refused seal wrote to the log")
	}
	sealed, err := leader.Seal(statement(t))
	if err != nil || sealed.LogIndex != 0 {
		t.Fatalf("the leader's seal: index %d, %v; want 0", sealed.LogIndex, err)
	}
	if cp, err := follower.log.Checkpoint(); err != nil || string(cp) != sealed.Checkpoint {
		t.Fatalf("the follower serves the checkpoint %s, %v; want the leader's:\n%s", cp, err, sealed.Checkpoint)
	}
}

func TestSealOnceAndVerifyWithPublicFilesOnly(t *testing.T) {
	dir := t.TempDir()
	s := sealingSealer(t, dir, nil, testr.New(t))
	first, err := s.Seal(statement(t))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := DecisionStatement("shop", "another", release(), record())
	if _, err := s.Seal(other); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A restart between signing and logging seals again: one entry.
	s = sealingSealer(t, dir, nil, testr.New(t))
	defer s.Close()
	again, err := s.Seal(statement(t))
	if err != nil {
		t.Fatal(err)
	}
	if again.LogIndex != first.LogIndex || s.log.Size() != 2 {
		t.Fatalf("sealing again gave index %d (first %d) and %d entries, want one entry each", again.LogIndex, first.LogIndex, s.log.Size())
	}

	// What a verifier on another machine holds: public files and the packet.
	pubPEM, _ := os.ReadFile(filepath.Join(dir, PublicKeyFile))
	vkey, _ := os.ReadFile(filepath.Join(dir, CheckpointVerifierFile))
	pub, err := ParsePublicKey(pubPEM, PublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cpVerifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	trust := Trust{Keys: Keys{}, Checkpoint: cpVerifier}
	trust.Keys.Add(pub)
	envelope, err := s.Store.Get(again.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	proof := make([][]byte, len(again.InclusionProof))
	for i, h := range again.InclusionProof {
		proof[i], _ = hex.DecodeString(h)
	}
	sealed := Sealed{Envelope: envelope, LogIndex: again.LogIndex, Checkpoint: []byte(again.Checkpoint), InclusionProof: proof}
	st, err := VerifySealed(sealed, trust)
	if err != nil {
		t.Fatal(err)
	}
	if st.PredicateType != PredicateDecision {
		t.Errorf("predicate type %s", st.PredicateType)
	}

	tampered := sealed
	tampered.InclusionProof = append([][]byte{}, proof...)
	if len(proof) > 0 {
		tampered.InclusionProof[0] = append([]byte{}, proof[0]...)
		tampered.InclusionProof[0][0] ^= 1
	} else {
		tampered.LogIndex++
	}
	if _, err := VerifySealed(tampered, trust); !errors.Is(err, ErrBadProof) {
		t.Errorf("a changed proof: %v, want ErrBadProof", err)
	}
	badCP := sealed
	badCP.Checkpoint = []byte(strings.Replace(again.Checkpoint, "\n2\n", "\n3\n", 1))
	if _, err := VerifySealed(badCP, trust); !errors.Is(err, ErrBadCheckpoint) {
		t.Errorf("a changed checkpoint: %v, want ErrBadCheckpoint", err)
	}
}

// BenchmarkSeal seals distinct decisions into a log on disk.
func BenchmarkSeal(b *testing.B) {
	s := sealingSealer(b, b.TempDir(), nil, logr.Discard())
	defer s.Close()
	for i := 0; b.Loop(); i++ {
		st, err := DecisionStatement("shop", fmt.Sprintf("p-%d", i), release(), record())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Seal(st); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConcurrentSealsAllVerify seals from several goroutines at once, as
// the evidence reconciler's workers do, so that their log entries are
// committed in groups: every seal verifies on its own, each at its own
// index.
func TestConcurrentSealsAllVerify(t *testing.T) {
	s := sealingSealer(t, t.TempDir(), nil, testr.New(t))
	defer s.Close()
	const sealers, perSealer = 6, 10
	seals := make([]Seal, sealers*perSealer)
	errs := make([]error, len(seals))
	var wg sync.WaitGroup
	for g := range sealers {
		wg.Go(func() {
			for i := g * perSealer; i < (g+1)*perSealer; i++ {
				st, err := DecisionStatement("shop", fmt.Sprintf("p-%d", i), release(), record())
				if err == nil {
					seals[i], err = s.Seal(st)
				}
				errs[i] = err
			}
		})
	}
	wg.Wait()
	trust := s.Trust()
	indexes := map[uint64]int{}
	for i, seal := range seals {
		if errs[i] != nil {
			t.Fatalf("seal %d: %v", i, errs[i])
		}
		if other, ok := indexes[seal.LogIndex]; ok {
			t.Fatalf("seals %d and %d of different statements share the log index %d", other, i, seal.LogIndex)
		}
		indexes[seal.LogIndex] = i
		envelope, err := s.Store.Get(seal.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		proof := make([][]byte, len(seal.InclusionProof))
		for j, h := range seal.InclusionProof {
			proof[j], _ = hex.DecodeString(h)
		}
		st, err := VerifySealed(Sealed{Envelope: envelope, LogIndex: seal.LogIndex, Checkpoint: []byte(seal.Checkpoint), InclusionProof: proof}, trust)
		if err != nil {
			t.Fatalf("seal %d: %v", i, err)
		}
		if want := fmt.Sprintf("p-%d", i); !strings.Contains(string(st.Predicate), want) {
			t.Fatalf("seal %d verifies a statement of another promotion than %s", i, want)
		}
	}
	if got := s.log.Size(); got != uint64(len(seals)) {
		t.Fatalf("%d seals left %d log entries, want one each", len(seals), got)
	}
}

// BenchmarkSealParallel seals distinct decisions from 2 goroutines per CPU,
// as the evidence reconciler's 4 workers do on 2 cores.
func BenchmarkSealParallel(b *testing.B) {
	s := sealingSealer(b, b.TempDir(), nil, logr.Discard())
	defer s.Close()
	var next atomic.Int64
	b.SetParallelism(2)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			st, err := DecisionStatement("shop", fmt.Sprintf("p-%d", next.Add(1)), release(), record())
			if err == nil {
				_, err = s.Seal(st)
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyPacket verifies an exported packet from a log of 10,000
// entries, as stellactl evidence verify does after reading the file.
func BenchmarkVerifyPacket(b *testing.B) {
	s := sealingSealer(b, b.TempDir(), nil, logr.Discard())
	defer s.Close()
	var seal Seal
	var st []byte
	var err error
	for i := range 10000 {
		st, _ = DecisionStatement("shop", fmt.Sprintf("p-%d", i), release(), record())
		if seal, err = s.Seal(st); err != nil {
			b.Fatal(err)
		}
	}
	envelope, _ := s.Store.Get(seal.Envelope)
	p := &Packet{Statement: st, Envelope: envelope, Checkpoint: []byte(seal.Checkpoint),
		Proof: Proof{Index: fmt.Sprint(seal.LogIndex), Hashes: seal.InclusionProof}}
	trust := s.Trust()
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Verify(trust); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRotatedKeysStillVerifyWhatTheySealed(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := RotateSigningKey(dir); err == nil {
		t.Fatal("rotating before any key exists succeeded")
	}
	s := sealingSealer(t, dir, nil, testr.New(t))
	before, err := s.Seal(statement(t))
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	oldID, newID, err := RotateSigningKey(dir)
	if err != nil || oldID != before.KeyID || newID == oldID {
		t.Fatalf("rotate: %s → %s, %v (sealed with %s)", oldID, newID, err, before.KeyID)
	}
	s = sealingSealer(t, dir, nil, testr.New(t))
	defer s.Close()
	other, _ := DecisionStatement("shop", "after-rotation", release(), record())
	after, err := s.Seal(other)
	if err != nil || after.KeyID != newID {
		t.Fatalf("sealed with %s after rotating to %s: %v", after.KeyID, newID, err)
	}
	keys, err := PublicKeys(dir)
	if err != nil || len(keys) != 2 {
		t.Fatalf("public keys %v, %v; want the retired and the new one", keys, err)
	}
	for _, seal := range []Seal{before, after} {
		envelope, _ := s.Store.Get(seal.Envelope)
		if _, keyID, err := Verify(envelope, keys); err != nil || keyID != seal.KeyID {
			t.Errorf("envelope sealed by %s: %s, %v", seal.KeyID, keyID, err)
		}
	}
}
