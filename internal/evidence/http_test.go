package evidence_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/internal/evidence"
)

func TestIndexListsEveryEndpoint(t *testing.T) {
	srv, seal := sealedServer(t)
	res, data := fetch(t, srv, http.MethodGet, evidence.PathPrefix)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s %s", evidence.PathPrefix, res.StatusCode, res.Header.Get("Content-Type"), data)
	}
	var index evidence.Index
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatalf("the index is not JSON: %v\n%s", err, data)
	}
	if index.Documentation != evidence.IndexDocumentation {
		t.Errorf("the index points to %q", index.Documentation)
	}
	doc, err := os.ReadFile(verifierDoc)
	if err != nil {
		t.Fatal(err)
	}
	// Every listed endpoint answers, with the placeholders filled in from
	// the seal, and is documented.
	fill := strings.NewReplacer("{keyid}", seal.KeyID, "{index}", "1", "{size}", "4", "{from}", "2", "{to}", "4",
		"{hex}", strings.TrimPrefix(string(seal.Statement), "sha256:"))
	want := []string{evidence.PathSigningKey, evidence.PathKeys, evidence.PathCheckpointKey, evidence.PathCheckpoint,
		evidence.PathEntries, evidence.PathBlobs, evidence.PathInclusion, evidence.PathConsistency}
	for _, e := range index.Endpoints {
		res, data := fetch(t, srv, http.MethodGet, fill.Replace(e.Path))
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != e.ContentType || len(data) == 0 {
			t.Errorf("GET %s, listed in the index: %d %s %s", fill.Replace(e.Path), res.StatusCode, res.Header.Get("Content-Type"), data)
		}
		if e.Description == "" || !bytes.Contains(doc, []byte("`"+e.Path+"`")) {
			t.Errorf("%s is not described in the index or not named in %s", e.Path, verifierDoc)
		}
		for i, p := range want {
			if strings.HasPrefix(e.Path, evidence.PathPrefix+p) {
				want[i] = ""
			}
		}
	}
	if left := strings.Join(want, " "); strings.TrimSpace(left) != "" {
		t.Errorf("the index does not list %s", left)
	}
}

func TestEndpointErrorsAreKubernetesStatuses(t *testing.T) {
	srv, _ := sealedServer(t)
	for _, tc := range []struct {
		method, path string
		code         int32
		reason       metav1.StatusReason
		message      string
	}{
		{"GET", "/evidence/v1/packets/shop-to-prod", 404, metav1.StatusReasonNotFound, "no evidence endpoint /evidence/v1/packets/shop-to-prod; GET /evidence/v1/ lists them"},
		{"GET", "/evidence/v1/entries/first", 400, metav1.StatusReasonBadRequest, `entry "first": the index is a decimal number from 0`},
		{"GET", "/evidence/v1/entries/4", 404, metav1.StatusReasonNotFound, "no entry 4: the log has 4 entries, numbered from 0"},
		{"GET", "/evidence/v1/blobs/sha256/" + strings.Repeat("0", 64), 404, metav1.StatusReasonNotFound, "sha256:" + strings.Repeat("0", 64)},
		{"GET", "/evidence/v1/blobs/sha256/xyz", 400, metav1.StatusReasonBadRequest, "xyz"},
		{"GET", "/evidence/v1/proofs/inclusion?index=one&size=4", 400, metav1.StatusReasonBadRequest, `index="one": want ?index=N&size=M, both decimal numbers`},
		{"GET", "/evidence/v1/proofs/inclusion?index=5&size=4", 400, metav1.StatusReasonBadRequest, "inclusion proof of entry 5 in the log of 4 entries"},
		{"GET", "/evidence/v1/proofs/consistency?from=1", 400, metav1.StatusReasonBadRequest, `to="": want ?from=N&to=M`},
		{"GET", "/evidence/v1/keys/nobody.pub", 404, metav1.StatusReasonNotFound, `no signing key "nobody.pub"`},
		{"POST", "/evidence/v1/checkpoint", 405, metav1.StatusReasonMethodNotAllowed, "POST /evidence/v1/checkpoint: the evidence endpoints are read-only; GET them"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			res, data := fetch(t, srv, tc.method, tc.path)
			var st metav1.Status
			if err := json.Unmarshal(data, &st); err != nil || res.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("not a JSON Status (%v, %s): %s", err, res.Header.Get("Content-Type"), data)
			}
			if int32(res.StatusCode) != tc.code || st.Kind != "Status" || st.APIVersion != "v1" || st.Status != metav1.StatusFailure ||
				st.Code != tc.code || st.Reason != tc.reason || !strings.Contains(st.Message, tc.message) {
				t.Errorf("HTTP %d, %+v; want code %d, reason %s, a message with %q", res.StatusCode, st, tc.code, tc.reason, tc.message)
			}
		})
	}
}
