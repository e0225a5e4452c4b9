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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	// PathEntries serves the log's leaves as entries/<index>.
	PathEntries     = "entries/"
	PathBlobs       = "blobs/"
	PathInclusion   = "proofs/inclusion"
	PathConsistency = "proofs/consistency"
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

// Index is what GET PathPrefix answers: every endpoint, and where their
// formats are documented.
type Index struct {
	Endpoints     []Endpoint `json:"endpoints"`
	Documentation string     `json:"documentation"`
}

// Endpoint is one endpoint of the index.
type Endpoint struct {
	// Path is the absolute path to GET, with {placeholders}.
	Path        string `json:"path"`
	ContentType string `json:"contentType"`
	Description string `json:"description"`
}

// IndexDocumentation names, in the index, the document that describes
// every byte the endpoints serve.
const IndexDocumentation = "docs/evidence.md in the Stella source"

// endpoint is an Endpoint with what serves it.
type endpoint struct {
	Endpoint
	// pattern is its ServeMux pattern under PathPrefix.
	pattern string
	serve   func(*http.Request) ([]byte, error)
}

// endpointError is a failure an endpoint answers with a Kubernetes
// Status, so that kubectl and client-go show its message; any other error
// is an internal error.
type endpointError struct {
	code    int
	reason  metav1.StatusReason
	message string
}

func (e *endpointError) Error() string { return e.message }

func notFound(format string, args ...any) error {
	return &endpointError{http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) error {
	return &endpointError{http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf(format, args...)}
}

// endpoints are what Handler serves, in the order the index lists them.
func (s *Sealer) endpoints() []endpoint {
	return []endpoint{
		{Endpoint{PathPrefix, "application/json", "this index"}, "{$}", s.serveIndex},
		{Endpoint{PathPrefix + PathSigningKey, "application/x-pem-file",
			"the current signing key: PKIX PEM, Ed25519 or ECDSA P-256; its key ID is the hex SHA-256 of its DER"},
			PathSigningKey, func(*http.Request) ([]byte, error) { return os.ReadFile(filepath.Join(s.dir, PublicKeyFile)) }},
		{Endpoint{PathPrefix + PathKeys + "{keyid}.pub", "application/x-pem-file",
			"a signing key, current or retired, by key ID"}, PathKeys + "{keyid}", s.serveKey},
		{Endpoint{PathPrefix + PathCheckpointKey, "text/plain; charset=utf-8",
			"the note verifier key of the log's checkpoints: <origin>+<key hash, 8 hex>+<base64 of 0x01 and the Ed25519 public key>"},
			PathCheckpointKey, func(*http.Request) ([]byte, error) { return os.ReadFile(filepath.Join(s.dir, CheckpointVerifierFile)) }},
		{Endpoint{PathPrefix + PathCheckpoint, "text/plain; charset=utf-8",
			"the log's latest checkpoint: origin, size and base64 root hash, signed as a note"},
			PathCheckpoint, func(*http.Request) ([]byte, error) { return s.log.Checkpoint() }},
		{Endpoint{PathPrefix + PathEntries + "{index}", "application/json",
			"the log's leaf at a decimal index: the RFC 8785 JSON of {_type, predicateType, statement}, whose RFC 6962 leaf hash the proofs prove"},
			PathEntries + "{index}", s.serveEntry},
		{Endpoint{PathPrefix + PathBlobs + "sha256/{hex}", "application/octet-stream",
			"a sealed statement or DSSE envelope, by the hex SHA-256 of its bytes"}, PathBlobs + "sha256/{hex}", s.serveBlob},
		{Endpoint{PathPrefix + PathInclusion + "?index={index}&size={size}", "application/json",
			`the proof that the log of size entries holds entry index: {"index", "size", "hashes"}, hashes in hex`},
			PathInclusion, s.serveInclusion},
		{Endpoint{PathPrefix + PathConsistency + "?from={from}&to={to}", "application/json",
			`the proof that the log of to entries extends the log of from entries: {"from", "to", "hashes"}, hashes in hex`},
			PathConsistency, s.serveConsistency},
	}
}

// Handler serves the sealer's public keys, checkpoint, log entries, blobs
// and proofs, and their index at PathPrefix. Every failure is a
// Kubernetes Status.
func (s *Sealer) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, e := range s.endpoints() {
		mux.HandleFunc("GET "+PathPrefix+e.pattern, func(w http.ResponseWriter, r *http.Request) {
			data, err := e.serve(r)
			if err != nil {
				WriteStatus(w, err)
				return
			}
			w.Header().Set("Content-Type", e.ContentType)
			// A client gone away is nothing to report to.
			_, _ = w.Write(data)
		})
	}
	mux.HandleFunc(PathPrefix, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			WriteStatus(w, &endpointError{http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed,
				fmt.Sprintf("%s %s: the evidence endpoints are read-only; GET them", r.Method, r.URL.Path)})
			return
		}
		WriteStatus(w, notFound("no evidence endpoint %s; GET %s lists them", r.URL.Path, PathPrefix))
	})
	return mux
}

// WriteStatus answers err as a Kubernetes Status, as every endpoint under
// /evidence/v1/ does (the promotion archive's too): an endpoint's own
// failure or an API status error by its code and reason, anything else as
// an internal error.
func WriteStatus(w http.ResponseWriter, err error) {
	status := metav1.Status{Code: http.StatusInternalServerError, Reason: metav1.StatusReasonInternalError, Message: err.Error()}
	var own *endpointError
	var api apierrors.APIStatus
	switch {
	case errors.As(err, &own):
		status.Code, status.Reason, status.Message = int32(own.code), own.reason, own.message
	case errors.As(err, &api):
		status = api.Status()
	}
	status.TypeMeta, status.Status = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, metav1.StatusFailure
	data, _ := json.Marshal(status)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(int(status.Code))
	_, _ = w.Write(data)
}

func (s *Sealer) serveIndex(*http.Request) ([]byte, error) {
	index := Index{Documentation: IndexDocumentation}
	for _, e := range s.endpoints() {
		index.Endpoints = append(index.Endpoints, e.Endpoint)
	}
	return json.MarshalIndent(index, "", "  ")
}

func (s *Sealer) serveKey(r *http.Request) ([]byte, error) {
	id, ok := strings.CutSuffix(r.PathValue("keyid"), ".pub")
	keys, err := PublicKeys(s.dir)
	if err != nil {
		return nil, err
	}
	pub, found := keys[id]
	if !ok || !found {
		return nil, notFound("no signing key %q, current or retired: ask for keys/<key ID>.pub, the key ID being 64 hex digits", r.PathValue("keyid"))
	}
	return MarshalPublicKey(pub)
}

func (s *Sealer) serveEntry(r *http.Request) ([]byte, error) {
	index, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		return nil, badRequest("entry %q: the index is a decimal number from 0", r.PathValue("index"))
	}
	// The size is read after the entry, which brings a replica that does
	// not write the log up to date.
	entry, err := s.log.Entry(index)
	if size := s.log.Size(); err != nil && index >= size {
		return nil, notFound("no entry %d: the log has %d entries, numbered from 0", index, size)
	}
	return entry, err
}

func (s *Sealer) serveBlob(r *http.Request) ([]byte, error) {
	data, err := s.Store.Get(v1alpha1.Digest("sha256:" + r.PathValue("hex")))
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, notFound("%v", err)
	case err != nil:
		return nil, badRequest("%v", err)
	}
	return data, nil
}

// queryNumbers reads the decimal query parameters names of r.
func queryNumbers(r *http.Request, names ...string) ([]uint64, error) {
	out := make([]uint64, len(names))
	for i, name := range names {
		n, err := strconv.ParseUint(r.URL.Query().Get(name), 10, 64)
		if err != nil {
			return nil, badRequest("%s=%q: want ?%s=N&%s=M, both decimal numbers", name, r.URL.Query().Get(name), names[0], names[1])
		}
		out[i] = n
	}
	return out, nil
}

func (s *Sealer) serveInclusion(r *http.Request) ([]byte, error) {
	n, err := queryNumbers(r, "index", "size")
	if err != nil {
		return nil, err
	}
	hashes, err := s.log.InclusionProof(n[0], n[1])
	if err != nil {
		return nil, badRequest("inclusion proof of entry %d in the log of %d entries: %v", n[0], n[1], err)
	}
	return proofJSON(Proof{Index: strconv.FormatUint(n[0], 10), Size: strconv.FormatUint(n[1], 10)}, hashes)
}

func (s *Sealer) serveConsistency(r *http.Request) ([]byte, error) {
	n, err := queryNumbers(r, "from", "to")
	if err != nil {
		return nil, err
	}
	hashes, err := s.log.ConsistencyProof(n[0], n[1])
	if err != nil {
		return nil, badRequest("consistency proof from %d to %d entries: %v", n[0], n[1], err)
	}
	return proofJSON(Proof{From: strconv.FormatUint(n[0], 10), To: strconv.FormatUint(n[1], 10)}, hashes)
}

// proofJSON is p with hashes, as the proof endpoints serve it.
func proofJSON(p Proof, hashes [][]byte) ([]byte, error) {
	p.Hashes = make([]string, len(hashes))
	for i, h := range hashes {
		p.Hashes[i] = hex.EncodeToString(h)
	}
	data, err := json.Marshal(p)
	return append(data, '\n'), err
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
