package controlplane

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestLockRefusesASecondHolderNamingTheFirst(t *testing.T) {
	dir := dataDir(filepath.Join(t.TempDir(), "data"))
	first, err := dir.lock("stella serve")
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	_, err = dir.lock("stella snapshot restore")
	if err == nil {
		t.Fatal("a second holder got the lock")
	}
	for _, want := range []string{fmt.Sprintf("in use by process %d (stella serve, started ", os.Getpid()), dir.path(lockFile), "stop that process"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := dir.lock("stella serve")
	if err != nil {
		t.Fatalf("the lock is not taken again once released: %v", err)
	}
	again.Close()
	if isNew, err := dir.check(); err != nil || !isNew {
		t.Errorf("a directory holding only the lock file is new: got %v, %v", isNew, err)
	}
}

func TestCheckStore(t *testing.T) {
	validDB := func(t *testing.T, path string) {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("key"))
			if err != nil {
				return err
			}
			for i := range 500 {
				if err := b.Put(fmt.Appendf(nil, "k%04d", i), bytes.Repeat([]byte{'v'}, 200)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, db string)
		// want are parts of the error; none means the store is fine.
		want    []string
		missing bool
	}{
		{name: "an intact database", prepare: validDB},
		{name: "no etcd directory", prepare: func(t *testing.T, db string) {
			os.RemoveAll(filepath.Dir(filepath.Dir(filepath.Dir(db))))
		}, want: []string{"has no etcd store", "--reinitialize-store", "stella snapshot restore"}, missing: true},
		{name: "random bytes over the database", prepare: func(t *testing.T, db string) {
			garbage := bytes.Repeat([]byte{0x5a, 0xc3, 0x11, 0x7e}, 64<<10)
			if err := os.WriteFile(db, garbage, 0o600); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"is damaged", "stella snapshot restore", "nothing was changed"}},
		{name: "a damaged page inside an intact file", prepare: func(t *testing.T, db string) {
			validDB(t, db)
			f, err := os.OpenFile(db, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Past the two meta pages, over the bucket's pages.
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xff}, 3*4096), 3*4096); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"is damaged"}},
		{name: "a member directory without a database", prepare: func(t *testing.T, db string) {}, want: []string{"is damaged", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := dataDir(t.TempDir())
			db := etcdDB(dir.etcd())
			if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
				t.Fatal(err)
			}
			tc.prepare(t, db)
			err := dir.checkStore()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("an intact store was refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("the store was accepted")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if errors.Is(err, errStoreMissing) != tc.missing {
				t.Errorf("errStoreMissing: got %v, want %v", errors.Is(err, errStoreMissing), tc.missing)
			}
		})
	}
}

// testSnapshot writes the archive of a small data directory and returns it.
func testSnapshot(t *testing.T) []byte {
	t.Helper()
	dir := dataDir(t.TempDir())
	files := map[string]string{
		markerFile:                            `{"format": 1}`,
		"pki/ca.crt":                          "ca",
		"evidence/signing.key":                "key",
		"evidence/log/entries":                "entries",
		"evidence/log/checkpoint":             "checkpoint",
		"evidence/blobs/sha256/ab":            "blob",
		"evidence/blobs/sha256/.ab.tmp123456": "half-written",
		"etcd-snapshot":                       "etcd",
	}
	for name, content := range files {
		p := dir.path(filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, dir.path("etcd-snapshot"), dir, dir.evidence()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotArchiveOrderAndManifest(t *testing.T) {
	var names []string
	got := map[string]string{}
	m, err := ReadSnapshot(bytes.NewReader(testSnapshot(t)), func(name string, _ fs.FileMode, r io.Reader) error {
		data, err := io.ReadAll(r)
		names = append(names, name)
		got[name] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"etcd.db", "stella.json", "pki/ca.crt", "evidence/blobs/sha256/ab", "evidence/log/checkpoint", "evidence/signing.key", "evidence/log/entries"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("members %v, want %v (etcd first, the log's entries after every other evidence file, no hidden files)", names, want)
	}
	if len(m.Members) != len(want) || got["evidence/log/entries"] != "entries" {
		t.Errorf("manifest %+v, contents %v", m.Members, got)
	}
}

// rewrite changes the archive's members through change and writes it
// again, keeping the original manifest.
func rewrite(t *testing.T, archive []byte, change func(hdr *tar.Header, data []byte) (*tar.Header, []byte)) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	ogz := gzip.NewWriter(&out)
	tw := tar.NewWriter(ogz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdr, data = change(hdr, data)
		if hdr == nil {
			continue
		}
		hdr.Size = int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	ogz.Close()
	return out.Bytes()
}

func TestReadSnapshotRefusesDamagedArchives(t *testing.T) {
	good := testSnapshot(t)
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"cut short", good[:len(good)/2], "cut short"},
		{"a member changed", rewrite(t, good, func(h *tar.Header, d []byte) (*tar.Header, []byte) {
			if h.Name == "pki/ca.crt" {
				return h, []byte("another ca")
			}
			return h, d
		}), `member "pki/ca.crt" does not match MANIFEST.json`},
		{"a member missing", rewrite(t, good, func(h *tar.Header, d []byte) (*tar.Header, []byte) {
			if h.Name == "evidence/log/entries" {
				return nil, nil
			}
			return h, d
		}), `member "evidence/log/entries" is in MANIFEST.json but not in the archive`},
		{"no manifest", rewrite(t, good, func(h *tar.Header, d []byte) (*tar.Header, []byte) {
			if h.Name == snapshotManifestMember {
				return nil, nil
			}
			return h, d
		}), "has no MANIFEST.json"},
		{"a path out of the directory", rewrite(t, good, func(h *tar.Header, d []byte) (*tar.Header, []byte) {
			if h.Name == "pki/ca.crt" {
				h.Name = "pki/../../ca.crt"
			}
			return h, d
		}), "is not a clean relative path"},
		{"a symlink", rewrite(t, good, func(h *tar.Header, d []byte) (*tar.Header, []byte) {
			if h.Name == "pki/ca.crt" {
				h.Typeflag, h.Linkname = tar.TypeSymlink, "/etc/passwd"
				return h, nil
			}
			return h, d
		}), "is not a regular file"},
		{"not gzip", []byte("plain text"), "not a Stella snapshot archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadSnapshot(bytes.NewReader(tc.archive), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestRestoreSnapshotRefusesANonEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	precious := filepath.Join(dir, "precious")
	if err := os.WriteFile(precious, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "backup.tar.gz")
	if err := os.WriteFile(archive, testSnapshot(t), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := RestoreSnapshot(archive, dir, "")
	if err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("got %v, want a refusal of a non-empty directory", err)
	}
	if data, _ := os.ReadFile(precious); string(data) != "keep" {
		t.Errorf("the directory was changed")
	}
	// A new directory and an archive whose etcd member is not an etcd
	// snapshot: refused, and nothing is left behind.
	fresh := filepath.Join(t.TempDir(), "new")
	_, err = RestoreSnapshot(archive, fresh, "")
	if err == nil || !strings.Contains(err.Error(), "nothing was restored") {
		t.Fatalf("got %v, want a failed restore", err)
	}
	if _, statErr := os.Stat(fresh); !errors.Is(statErr, fs.ErrNotExist) {
		t.Errorf("a failed restore left %s behind", fresh)
	}
}
