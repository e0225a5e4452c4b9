package evidence

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/pki"
)

// MaxBlobSize bounds one blob of the store.
const MaxBlobSize = 16 << 20

// ErrNotFound is a blob the store does not hold.
var ErrNotFound = errors.New("no such blob")

// BlobStore keeps evidence blobs under their sha256.
type BlobStore interface {
	// Put stores data and returns its digest; storing it again is harmless.
	Put(data []byte) (v1alpha1.Digest, error)
	// Get reads a blob and checks it still has its digest.
	Get(d v1alpha1.Digest) ([]byte, error)
	// URI says where a blob is, for people and for export.
	URI(d v1alpha1.Digest) string
	// List lists the blobs, oldest first.
	List() ([]StoredBlob, error)
}

// FileStore keeps blobs on the filesystem under their sha256, so that
// etcd objects only refer to them (etcd refuses requests over 1.5 MiB).
type FileStore struct {
	dir string
}

// NewFileStore stores blobs under dir.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o700); err != nil {
		return nil, err
	}
	return &FileStore{dir: dir}, nil
}

// Put stores data and returns its digest; storing it again is harmless.
func (s *FileStore) Put(data []byte) (v1alpha1.Digest, error) {
	if len(data) > MaxBlobSize {
		return "", fmt.Errorf("a blob has at most %d bytes, this one %d", MaxBlobSize, len(data))
	}
	d := DigestOf(data)
	path := s.path(d)
	if _, err := os.Stat(path); err == nil {
		return d, nil
	}
	if err := pki.WriteFileAtomic(path, data, 0o600); err != nil {
		return "", fmt.Errorf("store blob %s: %w", d, err)
	}
	return d, nil
}

// Get reads a blob and checks it still has its digest.
func (s *FileStore) Get(d v1alpha1.Digest) ([]byte, error) {
	if err := CheckDigest(d); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.path(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return nil, err
	}
	return data, CheckContent(d, data)
}

// CheckDigest refuses a digest that is not sha256:<64 hex>, before a blob
// store uses it in a path or key.
func CheckDigest(d v1alpha1.Digest) error {
	hexDigest, ok := strings.CutPrefix(string(d), "sha256:")
	if _, err := hex.DecodeString(hexDigest); !ok || err != nil || len(hexDigest) != 2*sha256.Size {
		return fmt.Errorf("%q is not a digest of the form sha256:<64 hex>", d)
	}
	return nil
}

// CheckContent refuses a blob read back whose content no longer has its
// digest.
func CheckContent(d v1alpha1.Digest, data []byte) error {
	if got := DigestOf(data); got != d {
		return fmt.Errorf("blob %s is damaged: its content has digest %s", d, got)
	}
	return nil
}

// URI says where a blob is, for people and for export.
func (s *FileStore) URI(d v1alpha1.Digest) string {
	return "file://" + s.path(d)
}

func (s *FileStore) path(d v1alpha1.Digest) string {
	return filepath.Join(s.dir, "sha256", strings.TrimPrefix(string(d), "sha256:"))
}

// DigestOf is sha256:<hex> of data.
func DigestOf(data []byte) v1alpha1.Digest {
	sum := sha256.Sum256(data)
	return v1alpha1.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// StoredBlob names a blob of a store and when it was stored.
type StoredBlob struct {
	Digest v1alpha1.Digest
	Stored time.Time
}

// List lists the store's blobs, oldest first.
func (s *FileStore) List() ([]StoredBlob, error) {
	files, err := os.ReadDir(filepath.Join(s.dir, "sha256"))
	if err != nil {
		return nil, err
	}
	var blobs []StoredBlob
	for _, f := range files {
		d := v1alpha1.Digest("sha256:" + f.Name())
		if f.IsDir() || CheckDigest(d) != nil {
			continue // a temporary file of an unfinished Put
		}
		info, err := f.Info()
		if err != nil {
			return nil, err
		}
		blobs = append(blobs, StoredBlob{Digest: d, Stored: info.ModTime()})
	}
	SortOldestFirst(blobs)
	return blobs, nil
}

// SortOldestFirst orders blobs as BlobStore.List returns them.
func SortOldestFirst(blobs []StoredBlob) {
	slices.SortFunc(blobs, func(a, b StoredBlob) int {
		return cmp.Or(a.Stored.Compare(b.Stored), cmp.Compare(a.Digest, b.Digest))
	})
}
