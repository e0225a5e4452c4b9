package archive

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTheArchiveEndpointsListEntriesAndAnswerFailuresAsStatus(t *testing.T) {
	a := openArchive(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range []struct{ name, uid, revision string }{{"p2", "u2", "20"}, {"p1", "u1", "10"}} {
		r := NewRecord(promotion(p.name, p.uid, "prod", p.revision, t0), nil, nil)
		if _, err := a.Put(&r); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	get := func(method, path string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}

	code, body := get(http.MethodGet, EnvironmentPath("shop", "prod"))
	entries, err := ParseList(body)
	if code != http.StatusOK || err != nil || len(entries) != 2 || entries[0].Name != "p1" || entries[1].Name != "p2" {
		t.Errorf("GET environment = %d %s (%v); want p1 then p2", code, body, err)
	}
	code, body = get(http.MethodGet, EnvironmentPath("shop", "stage"))
	if entries, err := ParseList(body); code != http.StatusOK || err != nil || len(entries) != 0 {
		t.Errorf("GET an environment with no archive = %d %s; want an empty list", code, body)
	}
	code, body = get(http.MethodGet, PromotionPath("shop", "p2"))
	if entries, err := ParseList(body); code != http.StatusOK || err != nil || len(entries) != 1 || entries[0].UID != "u2" {
		t.Errorf("GET promotion = %d %s", code, body)
	}

	for _, tc := range []struct {
		method, path string
		code         int
		reason       metav1.StatusReason
		message      string
	}{
		{http.MethodGet, PromotionPath("shop", "never"), 404, metav1.StatusReasonNotFound, `"shop/never" not found`},
		{http.MethodGet, PromotionPath("other", "p2"), 404, metav1.StatusReasonNotFound, `"other/p2" not found`},
		{http.MethodGet, EnvironmentPath("Shop", "prod"), 400, metav1.StatusReasonBadRequest, `namespace "Shop"`},
		{http.MethodGet, EnvironmentPath("shop", "pr_od"), 400, metav1.StatusReasonBadRequest, `environment name "pr_od"`},
		{http.MethodGet, PromotionPath("shop", "p-"), 400, metav1.StatusReasonBadRequest, `promotion name "p-"`},
		// A hostile client escapes a slash to climb out of the index.
		{http.MethodGet, PathPrefix + "namespaces/shop/environments/..%2F..%2Fshop%2Fpromotions%2Fp2", 400, metav1.StatusReasonBadRequest,
			`environment name "../../shop/promotions/p2"`},
		{http.MethodGet, PathPrefix + "namespaces/..%2Fshop/promotions/p2", 400, metav1.StatusReasonBadRequest, `namespace "../shop"`},
		{http.MethodGet, PathPrefix + "namespaces/shop/releases/r", 404, metav1.StatusReasonNotFound, "the archive serves"},
		{http.MethodDelete, PromotionPath("shop", "p2"), 405, metav1.StatusReasonMethodNotAllowed, "DELETE"},
	} {
		code, body := get(tc.method, tc.path)
		var status metav1.Status
		if err := json.Unmarshal(body, &status); err != nil || status.Kind != "Status" {
			t.Errorf("%s %s answered %d %s, not a Status", tc.method, tc.path, code, body)
			continue
		}
		if code != tc.code || status.Reason != tc.reason || !strings.Contains(status.Message, tc.message) {
			t.Errorf("%s %s = %d %s %q; want %d %s naming %s", tc.method, tc.path, code, status.Reason, status.Message, tc.code, tc.reason, tc.message)
		}
	}
}
