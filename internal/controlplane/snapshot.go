package controlplane

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	clientv3 "go.etcd.io/etcd/client/v3"
	etcdsnapshot "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	genericrequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/stella-ops/stella/internal/tlog"
	"github.com/stella-ops/stella/internal/version"
)

// SnapshotPrefix is where the API server serves backups, to users allowed
// the nonResourceURL /snapshot/* (no Stella role grants it: only
// cluster-admin, the admin credential of the data directory).
const SnapshotPrefix = "/snapshot/v1/"

// SnapshotPath serves one backup archive (see writeSnapshot).
const SnapshotPath = SnapshotPrefix + "archive"

// Members of a snapshot archive, a gzip-compressed tar.
const (
	// snapshotEtcdMember is etcd's own snapshot of the store, with the
	// sha256 etcd appends to it.
	snapshotEtcdMember = "etcd.db"
	snapshotPKIDir     = "pki"
	snapshotEvidence   = "evidence"
	// snapshotManifestMember comes last: the sha256 and size of every
	// other member. An archive without it was cut short.
	snapshotManifestMember = "MANIFEST.json"
	snapshotFormat         = 1
	maxManifestSize        = 16 << 20
)

// SnapshotManifest lists the members of a snapshot archive.
type SnapshotManifest struct {
	Format      int              `json:"format"`
	CreatedAt   time.Time        `json:"createdAt"`
	CreatedWith string           `json:"createdWith"`
	Members     []SnapshotMember `json:"members"`
}

// SnapshotMember is one file of a snapshot archive.
type SnapshotMember struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// snapshotHandler serves a backup of a running control plane with
// embedded etcd. It is served by the API server, behind its authentication
// and RBAC, rather than by a command reading etcd and the directory
// itself: the server knows its own etcd and evidence directory, holds the
// data directory's lock, and the backup works from any machine with the
// admin credential.
type snapshotHandler struct {
	etcdURL     string
	dataDir     dataDir
	evidenceDir string
	log         logr.Logger
}

func (h snapshotHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != SnapshotPath || r.Method != http.MethodGet {
		http.Error(w, "GET "+SnapshotPath+" serves a backup archive", http.StatusNotFound)
		return
	}
	db, err := h.saveEtcd(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer os.Remove(db)
	w.Header().Set("Content-Type", "application/gzip")
	if err := writeSnapshot(w, db, h.dataDir, h.evidenceDir); err != nil {
		// The archive ends without its manifest, which the reader refuses.
		h.log.Error(err, "Snapshot archive cut short")
		return
	}
	who := ""
	if u, ok := genericrequest.UserFrom(r.Context()); ok {
		who = u.GetName()
	}
	h.log.Info("Served a snapshot archive", "user", who)
}

// saveEtcd writes etcd's snapshot of the store, consistent at one
// revision, to a temporary file of the data directory.
func (h snapshotHandler) saveEtcd(ctx context.Context) (string, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{h.etcdURL}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return "", fmt.Errorf("connect to the embedded etcd: %w", err)
	}
	defer cli.Close()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return "", fmt.Errorf("snapshot the embedded etcd: %w", err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(string(h.dataDir), ".snapshot-etcd-*.db")
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("read etcd's snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// writeSnapshot writes the archive: etcd's snapshot first, then the
// marker, the PKI and the evidence directory, then the manifest.
//
// The order makes the copy consistent without stopping the server. Every
// EvidencePacket in etcd's snapshot was sealed before the snapshot was
// taken, so its blob and log entry are on disk before the evidence is
// copied. Within the evidence directory the log's entries file is copied
// last, up to the size it had when opened: the entries file only grows
// while the server runs, so the copy holds every entry the copied
// checkpoint covers, and at most a torn record past it, which the log cuts
// when it opens (it was never acknowledged).
func writeSnapshot(w io.Writer, etcdSnapshot string, dir dataDir, evidenceDir string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	m := SnapshotManifest{Format: snapshotFormat, CreatedAt: time.Now().UTC(), CreatedWith: version.String()}
	add := func(name, file string) error {
		member, err := addTarFile(tw, name, file)
		if err != nil {
			return fmt.Errorf("archive %s: %w", file, err)
		}
		m.Members = append(m.Members, member)
		return nil
	}
	if err := add(snapshotEtcdMember, etcdSnapshot); err != nil {
		return err
	}
	if err := add(markerFile, dir.path(markerFile)); err != nil {
		return err
	}
	for _, tree := range []struct{ name, dir string }{{snapshotPKIDir, dir.pki()}, {snapshotEvidence, evidenceDir}} {
		files, err := treeFiles(tree.dir)
		if err != nil {
			return err
		}
		for _, rel := range files {
			if err := add(path.Join(tree.name, filepath.ToSlash(rel)), filepath.Join(tree.dir, rel)); err != nil {
				return err
			}
		}
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: snapshotManifestMember, Mode: 0o600, Size: int64(len(raw)), ModTime: m.CreatedAt, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(raw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// treeFiles lists the regular files under dir, relative to it, the log's
// entries files last (see writeSnapshot). Hidden files are files being
// written atomically, not yet in place; they are left out. A missing dir
// has none.
func treeFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return filepath.SkipDir
		}
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	sort.SliceStable(files, func(i, j int) bool {
		return filepath.Base(files[i]) != tlog.EntriesFile && filepath.Base(files[j]) == tlog.EntriesFile
	})
	return files, nil
}

// addTarFile copies file into the archive as name, up to the size it had
// when opened.
func addTarFile(tw *tar.Writer, name, file string) (SnapshotMember, error) {
	f, err := os.Open(file)
	if err != nil {
		return SnapshotMember{}, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return SnapshotMember{}, err
	}
	hdr := &tar.Header{Name: name, Mode: int64(info.Mode().Perm()), Size: info.Size(), ModTime: info.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return SnapshotMember{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(f, info.Size()))
	if err != nil {
		return SnapshotMember{}, err
	}
	if n != info.Size() {
		return SnapshotMember{}, fmt.Errorf("it shrank from %d to %d bytes while it was copied", info.Size(), n)
	}
	return SnapshotMember{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// ReadSnapshot reads a snapshot archive, passes each member to extract
// (nil reads and checks only), and checks every member against the
// manifest at its end. An archive cut short, a member changed, added or
// missing, or a name outside the archive's layout is an error naming it.
func ReadSnapshot(r io.Reader, extract func(name string, mode fs.FileMode, content io.Reader) error) (*SnapshotManifest, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not a Stella snapshot archive (gzip): %w", err)
	}
	tr := tar.NewReader(gz)
	seen := map[string]SnapshotMember{}
	var manifest *SnapshotManifest
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the archive (cut short or damaged): %w", err)
		}
		if manifest != nil {
			return nil, fmt.Errorf("member %q follows %s, which ends an archive", hdr.Name, snapshotManifestMember)
		}
		if hdr.Name == snapshotManifestMember {
			raw, err := io.ReadAll(io.LimitReader(tr, maxManifestSize+1))
			if err != nil {
				return nil, fmt.Errorf("read %s (the archive is cut short or damaged): %w", snapshotManifestMember, err)
			}
			if len(raw) > maxManifestSize {
				return nil, fmt.Errorf("%s is over %d bytes", snapshotManifestMember, maxManifestSize)
			}
			manifest = &SnapshotManifest{}
			if err := json.Unmarshal(raw, manifest); err != nil {
				return nil, fmt.Errorf("%s is not valid JSON: %w", snapshotManifestMember, err)
			}
			continue
		}
		if err := checkMemberName(hdr); err != nil {
			return nil, err
		}
		if _, dup := seen[hdr.Name]; dup {
			return nil, fmt.Errorf("member %q appears twice", hdr.Name)
		}
		h := sha256.New()
		content := io.TeeReader(tr, h)
		if extract != nil {
			err = extract(hdr.Name, fs.FileMode(hdr.Mode).Perm(), content)
		} else {
			_, err = io.Copy(io.Discard, content)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("member %q: the archive is cut short or damaged: %w", hdr.Name, err)
		}
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", hdr.Name, err)
		}
		seen[hdr.Name] = SnapshotMember{Name: hdr.Name, Size: hdr.Size, SHA256: hex.EncodeToString(h.Sum(nil))}
	}
	if manifest == nil {
		return nil, fmt.Errorf("the archive has no %s: it was cut short, or is not a Stella snapshot", snapshotManifestMember)
	}
	if manifest.Format != snapshotFormat {
		return nil, fmt.Errorf("the archive has format %d (written by %s); this stella reads format %d", manifest.Format, manifest.CreatedWith, snapshotFormat)
	}
	for _, want := range manifest.Members {
		got, ok := seen[want.Name]
		if !ok {
			return nil, fmt.Errorf("member %q is in %s but not in the archive", want.Name, snapshotManifestMember)
		}
		if got != want {
			return nil, fmt.Errorf("member %q does not match %s (sha256 %s, %d bytes; the manifest says %s, %d bytes)",
				want.Name, snapshotManifestMember, got.SHA256, got.Size, want.SHA256, want.Size)
		}
		delete(seen, want.Name)
	}
	for name := range seen {
		return nil, fmt.Errorf("member %q is not in %s", name, snapshotManifestMember)
	}
	return manifest, nil
}

// checkMemberName accepts regular files at the archive's known places
// only, so that extracting can never write outside its directory.
func checkMemberName(hdr *tar.Header) error {
	name := hdr.Name
	if hdr.Typeflag != tar.TypeReg {
		return fmt.Errorf("member %q is not a regular file", name)
	}
	if path.Clean(name) != name || path.IsAbs(name) || strings.HasPrefix(name, "../") || strings.Contains(name, "\\") {
		return fmt.Errorf("member %q is not a clean relative path", name)
	}
	top, _, nested := strings.Cut(name, "/")
	switch {
	case !nested && (name == snapshotEtcdMember || name == markerFile):
	case nested && (top == snapshotPKIDir || top == snapshotEvidence):
	default:
		return fmt.Errorf("member %q is not part of a Stella snapshot", name)
	}
	return nil
}

// Restored says what RestoreSnapshot wrote.
type Restored struct {
	Manifest    *SnapshotManifest
	DataDir     string
	EvidenceDir string
}

// RestoreSnapshot makes a data directory from a snapshot archive. dataDir
// (and evidenceDir, when it is elsewhere) must be new or empty: a restore
// never writes over anything. The archive is checked in full before
// anything is put in place; on failure what was made is removed again.
func RestoreSnapshot(archive, dataDirPath, evidenceDir string) (*Restored, error) {
	dir := dataDir(dataDirPath)
	if evidenceDir == "" {
		evidenceDir = dir.evidence()
	}
	for _, d := range []string{string(dir), evidenceDir} {
		if err := mustBeEmpty(d); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("open the snapshot: %w", err)
	}
	defer f.Close()
	_, statErr := os.Stat(string(dir))
	created := errors.Is(statErr, fs.ErrNotExist)
	lock, err := dir.lock("stella snapshot restore")
	if err != nil {
		return nil, err
	}
	restored, err := restoreInto(f, dir, evidenceDir)
	lock.Close()
	if err != nil {
		// Undo: the directory was new or empty, so everything in it is ours.
		if created {
			os.RemoveAll(string(dir))
		} else if entries, readErr := os.ReadDir(string(dir)); readErr == nil {
			for _, e := range entries {
				os.RemoveAll(dir.path(e.Name()))
			}
		}
		if evidenceDir != dir.evidence() {
			os.RemoveAll(evidenceDir)
		}
		return nil, fmt.Errorf("restore %s: %w (nothing was restored)", archive, err)
	}
	os.Remove(dir.path(lockFile))
	return restored, nil
}

func restoreInto(archive io.Reader, dir dataDir, evidenceDir string) (*Restored, error) {
	staging, err := os.MkdirTemp(string(dir), ".restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(staging)
	manifest, err := ReadSnapshot(archive, func(name string, mode fs.FileMode, content io.Reader) error {
		dst := filepath.Join(staging, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, content); err != nil {
			out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		return nil, err
	}
	// etcd's restore checks the sha256 etcd appended to its snapshot, and
	// writes a new single-member store whose write-ahead log starts at the
	// snapshot. The member's name and token are the embedded etcd's; its
	// peer address changes at every start anyway.
	peer := "http://127.0.0.1:2380"
	err = etcdsnapshot.NewV3(zap.NewNop()).Restore(etcdsnapshot.RestoreConfig{
		SnapshotPath:        filepath.Join(staging, snapshotEtcdMember),
		Name:                "stella",
		OutputDataDir:       dir.etcd(),
		PeerURLs:            []string{peer},
		InitialCluster:      "stella=" + peer,
		InitialClusterToken: "etcd-cluster",
	})
	if err != nil {
		return nil, fmt.Errorf("restore etcd's snapshot into %s: %w", dir.etcd(), err)
	}
	if err := os.Rename(filepath.Join(staging, snapshotPKIDir), dir.pki()); err != nil {
		return nil, fmt.Errorf("put the PKI in place: %w", err)
	}
	// A server that sealed nothing had no evidence files.
	if err := os.MkdirAll(filepath.Join(staging, snapshotEvidence), 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(evidenceDir), 0o700); err != nil {
		return nil, err
	}
	if err := os.Remove(evidenceDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.Rename(filepath.Join(staging, snapshotEvidence), evidenceDir); err != nil {
		return nil, fmt.Errorf("put the evidence in place at %s: %w", evidenceDir, err)
	}
	// The marker last: it says the directory is complete.
	if err := os.Rename(filepath.Join(staging, markerFile), dir.path(markerFile)); err != nil {
		return nil, fmt.Errorf("put %s in place: %w", markerFile, err)
	}
	return &Restored{Manifest: manifest, DataDir: string(dir), EvidenceDir: evidenceDir}, nil
}

// mustBeEmpty accepts a directory that does not exist or is empty.
func mustBeEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not empty: a snapshot is restored only into a new or empty directory, so that nothing there is overwritten; "+
			"move it away or name another directory", dir)
	}
	return nil
}
