package scan

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"
)

// PathPrefix is where the API server serves the advisory store, to users
// allowed the nonResourceURL /advisories/v1/* (the stella-security
// ClusterRole).
const PathPrefix = "/advisories/v1/"

// PathSnapshots lists snapshots (GET) and imports one (POST, a zip of OSV
// JSON documents, with ?source= saying where they came from).
const PathSnapshots = "snapshots"

// HeaderSnapshot carries the digest of a snapshot served as a zip.
const HeaderSnapshot = "Stella-Advisory-Snapshot"

// MaxImportSize bounds an imported zip.
const MaxImportSize = 2 << 30

// ImportResult is what an import answers.
type ImportResult struct {
	Snapshot SnapshotInfo `json:"snapshot"`
	// Activated is false when the snapshot was active already: the import
	// changed nothing.
	Activated bool `json:"activated"`
}

// String says what the import did, for people.
func (r ImportResult) String() string {
	verb := "imported"
	if !r.Activated {
		verb = "unchanged: already active"
	}
	return fmt.Sprintf("advisory snapshot %s (%d advisories) %s", r.Snapshot.Digest, r.Snapshot.Documents, verb)
}

// Handler serves the advisory store.
func (s *Scanner) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathPrefix+PathSnapshots, func(w http.ResponseWriter, _ *http.Request) {
		infos, err := s.Advisories.List()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, infos)
	})
	mux.HandleFunc("GET "+PathPrefix+PathSnapshots+"/{digest}", func(w http.ResponseWriter, r *http.Request) {
		d := r.PathValue("digest")
		if d == "active" {
			active, err := s.Advisories.ActiveDigest()
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			d = active
		}
		if !snapshotDigest.MatchString(d) {
			http.Error(w, fmt.Sprintf("%q is not a snapshot digest: use sha256:<64 hex digits> or active", d), http.StatusBadRequest)
			return
		}
		// Checked against its manifest before it is served; the zip is
		// then sent as it was stored.
		if _, err := s.Advisories.Snapshot(d); err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, fs.ErrNotExist) {
				status = http.StatusNotFound
			}
			http.Error(w, err.Error(), status)
			return
		}
		f, err := s.Advisories.OpenZip(d)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set(HeaderSnapshot, d)
		_, _ = io.Copy(w, f)
	})
	mux.HandleFunc("POST "+PathPrefix+PathSnapshots, func(w http.ResponseWriter, r *http.Request) {
		result, status, err := s.importZip(r)
		if err != nil {
			http.Error(w, err.Error(), status)
			return
		}
		writeJSON(w, result)
	})
	return mux
}

// importZip spools the request's zip to disk, reads and checks every
// document, and imports them as one snapshot. Nothing is stored unless all
// of them are valid OSV.
func (s *Scanner) importZip(r *http.Request) (ImportResult, int, error) {
	source := r.URL.Query().Get("source")
	if source == "" {
		return ImportResult{}, http.StatusBadRequest, fmt.Errorf("say where the advisories come from with ?source=")
	}
	spool, err := os.CreateTemp(s.Advisories.dir, "import-*.zip")
	if err != nil {
		return ImportResult{}, http.StatusInternalServerError, err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	n, err := io.Copy(spool, io.LimitReader(r.Body, MaxImportSize+1))
	if err != nil {
		return ImportResult{}, http.StatusBadRequest, fmt.Errorf("read the upload: %w", err)
	}
	if n > MaxImportSize {
		return ImportResult{}, http.StatusRequestEntityTooLarge, fmt.Errorf("an import has at most %d bytes", MaxImportSize)
	}
	snap, err := ReadSnapshot(spool.Name())
	if err != nil {
		return ImportResult{}, http.StatusBadRequest, fmt.Errorf("%s: %w", source, stripSpool(err, spool.Name()))
	}
	info, activated, err := s.Import(snap, source, time.Now())
	if err != nil {
		return ImportResult{}, http.StatusInternalServerError, err
	}
	return ImportResult{Snapshot: info, Activated: activated}, http.StatusOK, nil
}

// stripSpool leaves the server's temporary file name out of messages: the
// documents are named by their path in the zip.
func stripSpool(err error, spool string) error {
	return errors.New(strings.ReplaceAll(err.Error(), spool+":", ""))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
