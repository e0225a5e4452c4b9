package evidence

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// PathPrefix is where the API server serves evidence, read-only, to users
// allowed the nonResourceURL /evidence/* (the stella-auditor ClusterRole).
const PathPrefix = "/evidence/v1/"

// Paths under PathPrefix.
const (
	PathSigningKey = "keys/" + PublicKeyFile
	// PathKeys serves a signing public key, current or retired, as
	// keys/<key ID>.pub.
	PathKeys          = "keys/"
	PathCheckpointKey = "keys/" + CheckpointVerifierFile
	PathCheckpoint    = "checkpoint"
	PathBlobs         = "blobs/"
	PathInclusion     = "proofs/inclusion"
	PathConsistency   = "proofs/consistency"
)

// Proof is a Merkle proof as the endpoints serve it.
type Proof struct {
	// Index is the entry proven (inclusion), as a decimal string.
	Index string `json:"index,omitempty"`
	// From and To are the log sizes proven consistent, as decimal strings.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Size is the log size the inclusion is proven in.
	Size   string   `json:"size,omitempty"`
	Hashes []string `json:"hashes"`
}

// Handler serves the sealer's public keys, checkpoint, blobs and proofs.
func (s *Sealer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathPrefix+PathSigningKey, func(w http.ResponseWriter, _ *http.Request) {
		s.serveFile(w, filepath.Join(s.dir, PublicKeyFile), "application/x-pem-file")
	})
	mux.HandleFunc("GET "+PathPrefix+PathKeys+"{keyid}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutSuffix(r.PathValue("keyid"), ".pub")
		keys, err := PublicKeys(s.dir)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		pub, found := keys[id]
		if !ok || !found {
			http.Error(w, fmt.Sprintf("no signing key %q, current or retired", id), http.StatusNotFound)
			return
		}
		data, err := MarshalPublicKey(pub)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(data)
	})
	mux.HandleFunc("GET "+PathPrefix+PathCheckpointKey, func(w http.ResponseWriter, _ *http.Request) {
		s.serveFile(w, filepath.Join(s.dir, CheckpointVerifierFile), "text/plain; charset=utf-8")
	})
	mux.HandleFunc("GET "+PathPrefix+PathCheckpoint, func(w http.ResponseWriter, _ *http.Request) {
		cp, err := s.log.Checkpoint()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(cp)
	})
	mux.HandleFunc("GET "+PathPrefix+PathBlobs+"sha256/{hex}", func(w http.ResponseWriter, r *http.Request) {
		data, err := s.Store.Get(v1alpha1.Digest("sha256:" + r.PathValue("hex")))
		switch {
		case errors.Is(err, ErrNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadRequest)
		default:
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(data)
		}
	})
	mux.HandleFunc("GET "+PathPrefix+PathInclusion, func(w http.ResponseWriter, r *http.Request) {
		index, err1 := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
		size, err2 := strconv.ParseUint(r.URL.Query().Get("size"), 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			http.Error(w, "want ?index=N&size=M, both decimal: "+err.Error(), http.StatusBadRequest)
			return
		}
		hashes, err := s.log.InclusionProof(index, size)
		writeProof(w, Proof{Index: strconv.FormatUint(index, 10), Size: strconv.FormatUint(size, 10)}, hashes, err)
	})
	mux.HandleFunc("GET "+PathPrefix+PathConsistency, func(w http.ResponseWriter, r *http.Request) {
		from, err1 := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
		to, err2 := strconv.ParseUint(r.URL.Query().Get("to"), 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			http.Error(w, "want ?from=N&to=M, both decimal: "+err.Error(), http.StatusBadRequest)
			return
		}
		hashes, err := s.log.ConsistencyProof(from, to)
		writeProof(w, Proof{From: strconv.FormatUint(from, 10), To: strconv.FormatUint(to, 10)}, hashes, err)
	})
	return mux
}

func (s *Sealer) serveFile(w http.ResponseWriter, path, contentType string) {
	data, err := os.ReadFile(path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write(data)
}

func writeProof(w http.ResponseWriter, p Proof, hashes [][]byte, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.Hashes = make([]string, len(hashes))
	for i, h := range hashes {
		p.Hashes[i] = hex.EncodeToString(h)
	}
	w.Header().Set("Content-Type", "application/json")
	// A client gone away is nothing to report to.
	_ = json.NewEncoder(w).Encode(p)
}

// DecodeHashes reads hex proof hashes.
func DecodeHashes(hashes []string) ([][]byte, error) {
	out := make([][]byte, len(hashes))
	for i, h := range hashes {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("proof hash %d %q is not 64 hex digits", i, strings.TrimSpace(h))
		}
		out[i] = b
	}
	return out, nil
}
