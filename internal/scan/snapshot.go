package scan

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/pki"
)

// maxDocumentSize bounds one OSV document.
const maxDocumentSize = 8 << 20

// Document is one OSV advisory as it was imported, byte for byte.
type Document struct {
	// Name is where the document came from: a file, or a file in a zip.
	Name     string
	Raw      []byte
	Advisory *Advisory
}

// ReadDocuments reads OSV documents from a JSON file (one document, or an
// array of them), a directory of .json files, or a zip of them such as
// OSV's per-ecosystem exports. The first document that is not valid OSV
// fails it all, named with its file and field.
func ReadDocuments(path string) ([]Document, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var docs []Document
	switch {
	case info.IsDir():
		err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(d.Name(), ".json") {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			found, err := documentsIn(p, data)
			docs = append(docs, found...)
			return err
		})
	case strings.HasSuffix(path, ".zip"):
		docs, err = readZip(path)
	default:
		var data []byte
		if data, err = os.ReadFile(path); err == nil {
			docs, err = documentsIn(path, data)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s holds no OSV documents (.json files, or a zip of them)", path)
	}
	return docs, nil
}

func readZip(path string) ([]Document, error) {
	z, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable zip: %w", path, err)
	}
	defer z.Close()
	var docs []Document
	for _, f := range z.File {
		if f.FileInfo().IsDir() || !strings.HasSuffix(f.Name, ".json") {
			continue
		}
		name := path + ":" + f.Name
		if f.UncompressedSize64 > maxDocumentSize {
			return nil, fmt.Errorf("%s: larger than %d bytes", name, maxDocumentSize)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxDocumentSize+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		found, err := documentsIn(name, data)
		if err != nil {
			return nil, err
		}
		docs = append(docs, found...)
	}
	return docs, nil
}

// documentsIn parses a file's documents: one, or a JSON array of them.
func documentsIn(name string, data []byte) ([]Document, error) {
	if len(data) > maxDocumentSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxDocumentSize)
	}
	raws := []json.RawMessage{data}
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, fmt.Errorf("%s: not a JSON array of OSV documents: %w", name, err)
		}
	}
	docs := make([]Document, 0, len(raws))
	for i, raw := range raws {
		where := name
		if len(raws) > 1 {
			where = fmt.Sprintf("%s[%d]", name, i)
		}
		a, err := ParseAdvisory(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		docs = append(docs, Document{Name: where, Raw: bytes.Clone(raw), Advisory: a})
	}
	return docs, nil
}

// ReadSnapshot reads the OSV documents at path (see ReadDocuments) as one
// snapshot.
func ReadSnapshot(path string) (*Snapshot, error) {
	docs, err := ReadDocuments(path)
	if err != nil {
		return nil, err
	}
	return NewSnapshot(docs)
}

// Snapshot is a set of advisories, indexed for matching.
type Snapshot struct {
	// Digest identifies the set: the sha256 of its sorted list of document
	// IDs and digests. The same documents make the same digest, however and
	// whenever they were imported.
	Digest string
	// Documents, sorted by ID.
	Documents []Document
	// byPackage indexes the affected entries by OSV ecosystem base and name.
	byPackage map[packageKey][]*affectedEntry
}

type packageKey struct{ ecosystem, name string }

// affectedEntry is one affected package of an advisory. Its versions are
// parsed when it is first matched, once for every report that matches it.
type affectedEntry struct {
	advisory  *Advisory
	affected  osvAffected
	ecosystem string
	once      sync.Once
	prepared  *matcher
	severity  v1alpha1.Severity
	aliases   []string
	// verdicts remembers the verdict for each installed version matched:
	// images built on one base share their package versions, and parsing
	// and comparing versions is most of the cost of matching.
	verdicts sync.Map
}

type rangeVerdict struct {
	affected bool
	fixedIn  string
}

// affects tells whether an installed version is affected, and the first
// version that fixes it. The entry is readied on first use: its versions
// parsed, its severity rated, its aliases sorted.
func (e *affectedEntry) affects(installed *lazyVersion) (bool, string, error) {
	e.once.Do(func() {
		e.prepared = prepare(e.affected, e.ecosystem)
		e.severity = e.advisory.severity(e.affected)
		e.aliases = slices.Sorted(slices.Values(e.advisory.Aliases))
	})
	if e.prepared.err != nil {
		return false, "", e.prepared.err
	}
	if v, ok := e.verdicts.Load(installed.raw); ok {
		return v.(rangeVerdict).affected, v.(rangeVerdict).fixedIn, nil
	}
	parsed, err := installed.get()
	if err != nil {
		return false, "", err
	}
	affected, fixedIn := e.prepared.affects(parsed)
	e.verdicts.Store(installed.raw, rangeVerdict{affected, fixedIn})
	return affected, fixedIn, nil
}

// NewSnapshot makes a snapshot of documents. Two documents with one ID are
// refused unless they are the same bytes.
func NewSnapshot(docs []Document) (*Snapshot, error) {
	docs = slices.Clone(docs)
	slices.SortStableFunc(docs, func(a, b Document) int { return strings.Compare(a.Advisory.ID, b.Advisory.ID) })
	h := sha256.New()
	s := &Snapshot{byPackage: map[packageKey][]*affectedEntry{}}
	for i, d := range docs {
		if i > 0 && docs[i-1].Advisory.ID == d.Advisory.ID {
			if !bytes.Equal(docs[i-1].Raw, d.Raw) {
				return nil, fmt.Errorf("advisory %s appears twice with different content, in %s and %s: import one of them", d.Advisory.ID, docs[i-1].Name, d.Name)
			}
			continue
		}
		fmt.Fprintf(h, "%s %s\n", d.Advisory.ID, digestOf(d.Raw))
		s.Documents = append(s.Documents, d)
		if d.Advisory.Withdrawn != "" {
			continue
		}
		for _, aff := range d.Advisory.Affected {
			if aff.Package == nil {
				continue
			}
			base, _, _ := strings.Cut(aff.Package.Ecosystem, ":")
			key := packageKey{base, aff.Package.Name}
			s.byPackage[key] = append(s.byPackage[key], &affectedEntry{advisory: d.Advisory, affected: aff, ecosystem: base})
		}
	}
	s.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return s, nil
}

// WriteZip writes the snapshot's documents, unchanged, as <id>.json files
// of a zip, the form OSV exports and imports take.
func (s *Snapshot) WriteZip(w io.Writer) error {
	z := zip.NewWriter(w)
	for _, d := range s.Documents {
		if d.Raw == nil {
			return fmt.Errorf("snapshot %s was read for matching only: serve its stored zip", s.Digest)
		}
		f, err := z.CreateHeader(&zip.FileHeader{Name: d.Advisory.ID + ".json", Method: zip.Deflate})
		if err != nil {
			return err
		}
		if _, err := f.Write(d.Raw); err != nil {
			return err
		}
	}
	return z.Close()
}

// forMatching is the snapshot without its documents' bytes, which matching
// does not read: kept in memory, they would double what a snapshot costs.
func (s *Snapshot) forMatching() *Snapshot {
	light := *s
	light.Documents = make([]Document, len(s.Documents))
	for i, d := range s.Documents {
		light.Documents[i] = Document{Name: d.Name, Advisory: d.Advisory}
	}
	return &light
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// SnapshotInfo is a stored snapshot's provenance.
type SnapshotInfo struct {
	Digest string `json:"digest"`
	// Source is where the documents were imported from.
	Source string `json:"source"`
	// ImportedAt is when this content was first imported.
	ImportedAt time.Time `json:"importedAt"`
	// Documents counts the advisories.
	Documents int `json:"documents"`
	// Active says the scanner matches against this snapshot.
	Active bool `json:"active,omitempty"`
}

// snapshotManifest is the stored form of a snapshot: its provenance and
// its documents' IDs and digests.
type snapshotManifest struct {
	SnapshotInfo
	Entries []manifestEntry `json:"entries"`
}

type manifestEntry struct {
	ID     string `json:"id"`
	Digest string `json:"digest"`
}

// AdvisoryStore keeps snapshots on disk, each under its digest: a zip of
// its documents, unchanged, and a manifest with its provenance and each
// document's digest. One snapshot is active.
type AdvisoryStore struct {
	dir string
	mu  sync.Mutex
	// loaded keeps the last snapshot read, since reading one parses every
	// document.
	loaded *Snapshot
}

// OpenAdvisoryStore keeps snapshots under dir.
func OpenAdvisoryStore(dir string) (*AdvisoryStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, "snapshots"), 0o700); err != nil {
		return nil, fmt.Errorf("create the advisory store: %w", err)
	}
	return &AdvisoryStore{dir: dir}, nil
}

// ErrNoSnapshot is a store without an active snapshot.
var ErrNoSnapshot = errors.New("no advisory snapshot has been imported: import OSV advisories with stellactl advisories import")

// Import stores the snapshot and makes it active. Importing the content of
// the active snapshot again changes nothing (activated is false); the
// content of an older one makes that one active again, with its first
// provenance.
func (s *AdvisoryStore) Import(snap *Snapshot, source string, now time.Time) (info SnapshotInfo, activated bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := s.manifestPath(snap.Digest)
	var m snapshotManifest
	if data, err := os.ReadFile(path); err != nil || json.Unmarshal(data, &m) != nil || m.Digest != snap.Digest {
		m = snapshotManifest{SnapshotInfo: SnapshotInfo{Digest: snap.Digest, Source: source, ImportedAt: now.UTC().Truncate(time.Second), Documents: len(snap.Documents)}}
		for _, d := range snap.Documents {
			m.Entries = append(m.Entries, manifestEntry{ID: d.Advisory.ID, Digest: digestOf(d.Raw)})
		}
		// One file for all the documents: a file each made an import of
		// 50,000 advisories take half a minute. The manifest, written
		// after it, makes the snapshot exist.
		if err := writeZipAtomic(s.zipPath(snap.Digest), snap); err != nil {
			return SnapshotInfo{}, false, fmt.Errorf("store snapshot %s: %w", snap.Digest, err)
		}
		data, err := json.MarshalIndent(m, "", " ")
		if err != nil {
			return SnapshotInfo{}, false, err
		}
		if err := pki.WriteFileAtomic(path, data, 0o600); err != nil {
			return SnapshotInfo{}, false, fmt.Errorf("store snapshot %s: %w", snap.Digest, err)
		}
	}
	m.Active = true
	if active, _ := s.activeDigest(); active == snap.Digest {
		return m.SnapshotInfo, false, nil
	}
	if err := pki.WriteFileAtomic(filepath.Join(s.dir, "active"), []byte(snap.Digest+"\n"), 0o600); err != nil {
		return SnapshotInfo{}, false, fmt.Errorf("activate snapshot %s: %w", snap.Digest, err)
	}
	s.loaded = snap.forMatching()
	return m.SnapshotInfo, true, nil
}

// Active reads the active snapshot.
func (s *AdvisoryStore) Active() (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	digest, err := s.activeDigest()
	if err != nil {
		return nil, err
	}
	return s.load(digest)
}

// OpenZip opens the stored zip of a snapshot, its documents as imported.
func (s *AdvisoryStore) OpenZip(digest string) (*os.File, error) {
	if !snapshotDigest.MatchString(digest) {
		return nil, fmt.Errorf("%q is not a snapshot digest: use sha256:<64 hex digits>, as stellactl advisories list shows", digest)
	}
	return os.Open(s.zipPath(digest))
}

// Snapshot reads a stored snapshot by digest.
func (s *AdvisoryStore) Snapshot(digest string) (*Snapshot, error) {
	if !snapshotDigest.MatchString(digest) {
		return nil, fmt.Errorf("%q is not a snapshot digest: use sha256:<64 hex digits>, as stellactl advisories list shows", digest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load(digest)
}

var snapshotDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// List says what snapshots the store holds, newest import first.
func (s *AdvisoryStore) List() ([]SnapshotInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := os.ReadDir(filepath.Join(s.dir, "snapshots"))
	if err != nil {
		return nil, err
	}
	active, _ := s.activeDigest()
	var infos []SnapshotInfo
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var m snapshotManifest
		data, err := os.ReadFile(filepath.Join(s.dir, "snapshots", e.Name()))
		if err != nil || json.Unmarshal(data, &m) != nil {
			return nil, fmt.Errorf("snapshot manifest %s is unreadable", e.Name())
		}
		m.Active = m.Digest == active
		infos = append(infos, m.SnapshotInfo)
	}
	slices.SortFunc(infos, func(a, b SnapshotInfo) int { return b.ImportedAt.Compare(a.ImportedAt) })
	return infos, nil
}

// ActiveDigest is the digest of the active snapshot. Another process may
// import into the same directory (stella advisories import), so it is read
// from disk each time.
func (s *AdvisoryStore) ActiveDigest() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.activeDigest()
}

func (s *AdvisoryStore) activeDigest() (string, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, "active"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", ErrNoSnapshot
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// load reads a snapshot and checks every document still has its digest.
func (s *AdvisoryStore) load(digest string) (*Snapshot, error) {
	if s.loaded != nil && s.loaded.Digest == digest {
		return s.loaded, nil
	}
	var m snapshotManifest
	data, err := os.ReadFile(s.manifestPath(digest))
	if err != nil {
		return nil, fmt.Errorf("advisory snapshot %s: %w", digest, err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("advisory snapshot %s: the manifest is corrupt: %w", digest, err)
	}
	docs, err := readZip(s.zipPath(digest))
	if err != nil {
		return nil, fmt.Errorf("advisory snapshot %s: %w", digest, err)
	}
	if len(docs) != len(m.Entries) {
		return nil, fmt.Errorf("advisory snapshot %s holds %d advisories, its manifest %d: the store was changed", digest, len(docs), len(m.Entries))
	}
	slices.SortStableFunc(docs, func(a, b Document) int { return strings.Compare(a.Advisory.ID, b.Advisory.ID) })
	for i, e := range m.Entries {
		if docs[i].Advisory.ID != e.ID || digestOf(docs[i].Raw) != e.Digest {
			return nil, fmt.Errorf("advisory snapshot %s: advisory %s no longer has digest %s: the store was changed", digest, e.ID, e.Digest)
		}
		docs[i].Name = e.ID
	}
	snap, err := NewSnapshot(docs)
	if err != nil {
		return nil, err
	}
	if snap.Digest != digest {
		return nil, fmt.Errorf("advisory snapshot %s now has digest %s: the store was changed", digest, snap.Digest)
	}
	s.loaded = snap.forMatching()
	return s.loaded, nil
}

func (s *AdvisoryStore) manifestPath(digest string) string {
	return filepath.Join(s.dir, "snapshots", strings.TrimPrefix(digest, "sha256:")+".json")
}

func (s *AdvisoryStore) zipPath(digest string) string {
	return filepath.Join(s.dir, "snapshots", strings.TrimPrefix(digest, "sha256:")+".zip")
}

// writeZipAtomic writes the snapshot's zip through a temporary file, flushed
// and renamed into place.
func writeZipAtomic(path string, snap *Snapshot) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*.zip")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = snap.WriteZip(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
