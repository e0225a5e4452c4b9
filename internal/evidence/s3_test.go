package evidence

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
)

// fakeS3 serves gofakes3 (an in-process S3 implementation) on 127.0.0.1
// with one bucket: no real S3 can run here, and this speaks the same API.
func fakeS3(t *testing.T, bucket string) S3Options {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	return S3Options{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: bucket, Prefix: "stella/", Insecure: true,
		AccessKey: "test", SecretKey: "test-secret"}
}

func TestS3StoreKeepsAndChecksBlobs(t *testing.T) {
	o := fakeS3(t, "evidence")
	store, err := NewS3Store(o)
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
	if _, err := store.Get(DigestOf([]byte("never stored"))); !errors.Is(err, ErrNotFound) {
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
	if _, err := NewS3Store(o); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a missing bucket: %v", err)
	}
}

func TestSealerWithS3Blobs(t *testing.T) {
	s, err := Open(t.TempDir(), func() *S3Options { o := fakeS3(t, "evidence"); return &o }(), testr.New(t))
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
	proof, _ := DecodeHashes(seal.InclusionProof)
	if _, err := VerifySealed(Sealed{Envelope: envelope, LogIndex: seal.LogIndex, Checkpoint: []byte(seal.Checkpoint), InclusionProof: proof}, s.Trust()); err != nil {
		t.Fatal(err)
	}
}
