package archive

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stella-ops/stella/internal/evidence"
)

// PathPrefix is where the API server serves the archive's index,
// read-only. It is under the evidence endpoints' prefix, so the same
// authorization applies: users allowed the nonResourceURL /evidence/*
// (the stella-auditor ClusterRole, bound cluster-wide) read it, nobody
// else. Records are blobs of the evidence store, read at
// /evidence/v1/blobs/sha256/<hex> like statements and envelopes.
const PathPrefix = "/evidence/v1/archive/"

// Paths under PathPrefix, with {placeholders}.
const (
	// PathEnvironment lists an environment's archived promotions, oldest
	// first, as a List.
	PathEnvironment = "namespaces/{namespace}/environments/{environment}"
	// PathPromotion lists the archived promotions of a name, oldest first
	// (a name is used again when a promotion is deleted and made again).
	PathPromotion = "namespaces/{namespace}/promotions/{promotion}"
)

// EnvironmentPath and PromotionPath are the paths, under the API server's
// root, of the two lists.
func EnvironmentPath(namespace, env string) string {
	return PathPrefix + "namespaces/" + namespace + "/environments/" + env
}

// PromotionPath is the path of the archived promotions named name.
func PromotionPath(namespace, name string) string {
	return PathPrefix + "namespaces/" + namespace + "/promotions/" + name
}

// List is what both endpoints answer.
type List struct {
	APIVersion string  `json:"apiVersion"`
	Kind       string  `json:"kind"`
	Items      []Entry `json:"items"`
}

// ListKind is the kind of List.
const ListKind = "ArchiveEntryList"

var archiveResource = schema.GroupResource{Group: "stella-ops.org", Resource: "archived promotions"}

// Handler serves the archive's index. Every failure is a Kubernetes
// Status, as the evidence endpoints answer them.
func (a *Archive) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathPrefix+PathEnvironment, func(w http.ResponseWriter, r *http.Request) {
		ns, env := r.PathValue("namespace"), r.PathValue("environment")
		if err := checkNames(ns, env, ""); err != nil {
			evidence.WriteStatus(w, apierrors.NewBadRequest(err.Error()+"; ask for "+PathPrefix+"namespaces/<namespace>/environments/<environment>"))
			return
		}
		entries, err := a.Environment(ns, env)
		writeList(w, entries, err)
	})
	mux.HandleFunc("GET "+PathPrefix+PathPromotion, func(w http.ResponseWriter, r *http.Request) {
		ns, name := r.PathValue("namespace"), r.PathValue("promotion")
		if err := checkNames(ns, "", name); err != nil {
			evidence.WriteStatus(w, apierrors.NewBadRequest(err.Error()+"; ask for "+PathPrefix+"namespaces/<namespace>/promotions/<promotion>"))
			return
		}
		entries, err := a.Promotion(ns, name)
		if err == nil && len(entries) == 0 {
			evidence.WriteStatus(w, apierrors.NewNotFound(archiveResource, ns+"/"+name))
			return
		}
		writeList(w, entries, err)
	})
	mux.HandleFunc(PathPrefix, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			evidence.WriteStatus(w, apierrors.NewMethodNotSupported(archiveResource, r.Method))
			return
		}
		evidence.WriteStatus(w, apierrors.NewNotFound(archiveResource, fmt.Sprintf("%s (the archive serves %s%s and %s%s)", r.URL.Path,
			PathPrefix, PathEnvironment, PathPrefix, PathPromotion)))
	})
	return mux
}

func writeList(w http.ResponseWriter, entries []Entry, err error) {
	if err != nil {
		evidence.WriteStatus(w, apierrors.NewInternalError(err))
		return
	}
	if entries == nil {
		entries = []Entry{}
	}
	data, err := json.Marshal(List{APIVersion: "stella-ops.org/v1alpha1", Kind: ListKind, Items: entries})
	if err != nil {
		evidence.WriteStatus(w, apierrors.NewInternalError(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data) // a client gone away is nothing to report to
}

// ParseList reads what the endpoints answer.
func ParseList(data []byte) ([]Entry, error) {
	var l List
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("archive list: %w", err)
	}
	if l.Kind != ListKind {
		return nil, errors.New("archive list: the server answered something else; does it archive promotions?")
	}
	return l.Items, nil
}
