package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/tlog"
)

// statement is the statement of a small decision, as the server seals it.
func statement(t *testing.T) []byte {
	t.Helper()
	return statementOf(t, "shop-to-prod")
}

func statementOf(t *testing.T, promotion string) []byte {
	t.Helper()
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	rel := v1alpha1.ReleaseSpec{Version: "1.0.0", Components: []v1alpha1.ReleaseComponent{
		{Name: "api", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@" + digest)},
	}}
	record := decision.Decide(decision.Inputs{
		Clock:       "2026-12-03T10:00:00Z",
		Promotion:   decision.Promotion{Name: "shop-to-prod", Spec: v1alpha1.PromotionSpec{Release: "shop", Environment: "prod", RequestedBy: "alice"}},
		Release:     decision.Named[v1alpha1.ReleaseSpec]{Name: "shop", Value: rel},
		Environment: decision.Named[v1alpha1.EnvironmentSpec]{Name: "prod"},
	}, nil, nil)
	st, err := evidence.DecisionStatement("shop", promotion, rel, record)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// fakeS3 serves gofakes3 (an in-process S3 implementation) on 127.0.0.1
// with one bucket: no real S3 can run here, and this speaks the same API.
func fakeS3(t *testing.T, bucket string) Options {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	return Options{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: bucket, Prefix: "stella/", Insecure: true,
		AccessKey: "test", SecretKey: "test-secret"}
}

func TestS3StoreKeepsAndChecksBlobs(t *testing.T) {
	o := fakeS3(t, "evidence")
	store, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	d, err := store.Put(statement(t))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := store.Put(statement(t)); err != nil || again != d {
		t.Fatalf("putting the same blob again: %s, %v", again, err)
	}
	got, err := store.Get(d)
	if err != nil || string(got) != string(statement(t)) {
		t.Fatalf("get %s: %v", d, err)
	}
	if !strings.HasPrefix(store.URI(d), "s3://evidence/stella/sha256/") {
		t.Errorf("URI %s", store.URI(d))
	}
	if _, err := store.Get(evidence.DigestOf([]byte("never stored"))); !errors.Is(err, evidence.ErrNotFound) {
		t.Errorf("a missing blob: %v, want ErrNotFound", err)
	}
	// Somebody overwrites a blob in the bucket: reading it says so.
	if _, err := store.client.PutObject(context.Background(), o.Bucket, store.key(d), strings.NewReader("forged"), 6, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(d); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("a changed blob: %v, want a damage error", err)
	}

	o.Bucket = "missing"
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a missing bucket: %v", err)
	}
}

func TestSealerWithS3Blobs(t *testing.T) {
	s, err := Open(t.TempDir(), func() *Options { o := fakeS3(t, "evidence"); return &o }(), testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	seal, err := s.Seal(statement(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(seal.EnvelopeURI, "s3://") {
		t.Errorf("envelope at %s, want the bucket", seal.EnvelopeURI)
	}
	envelope, err := s.Store.Get(seal.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	proof, _ := evidence.DecodeHashes(seal.InclusionProof)
	if _, err := evidence.VerifySealed(evidence.Sealed{Envelope: envelope, LogIndex: seal.LogIndex, Checkpoint: []byte(seal.Checkpoint), InclusionProof: proof}, s.Trust()); err != nil {
		t.Fatal(err)
	}
}

// A log cut short is rebuilt from the statements kept in the bucket.
func TestRepairLogWithS3Blobs(t *testing.T) {
	o := fakeS3(t, "evidence")
	dir := t.TempDir()
	s, err := Open(dir, &o, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Seal(statementOf(t, fmt.Sprintf("p-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "log", tlog.EntriesFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, good[:len(good)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r, err := evidence.RepairLog(dir, store)
	if err != nil || len(r.Restored) != 1 || r.Statements != 3 {
		t.Fatalf("repair from a bucket: %+v, %v", r, err)
	}
	if repaired, _ := os.ReadFile(path); !bytes.Equal(repaired, good) {
		t.Error("the repaired log differs from the log before the damage")
	}
}
