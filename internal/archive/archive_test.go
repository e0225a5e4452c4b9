package archive

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
)

func openArchive(t *testing.T) *Archive {
	t.Helper()
	store, err := evidence.NewFileStore(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Open(filepath.Join(t.TempDir(), DirName), store)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func promotion(name, uid, env, revision string, finished time.Time) *v1alpha1.Promotion {
	at := metav1.NewTime(finished)
	return &v1alpha1.Promotion{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID(uid), ResourceVersion: "99",
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "stellactl"}}},
		Spec:   v1alpha1.PromotionSpec{Release: "r-" + name, Environment: env},
		Status: v1alpha1.PromotionStatus{Phase: v1alpha1.PromotionSucceeded, CreationRevision: revision, FinishedAt: &at},
	}
}

func TestAnArchivedPromotionIsListedAndFoundByName(t *testing.T) {
	a := openArchive(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	approval := v1alpha1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "ok", ResourceVersion: "7"},
		Spec: v1alpha1.ApprovalSpec{Promotion: "p1", Decision: v1alpha1.ApprovalApprove}}
	packet := v1alpha1.EvidencePacket{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p1-decision-u1"},
		Status: v1alpha1.EvidencePacketStatus{Phase: v1alpha1.EvidenceSealed, LogIndex: "3"}}
	record := NewRecord(promotion("p1", "u1", "prod", "20", t0), []v1alpha1.Approval{approval}, []v1alpha1.EvidencePacket{packet})
	if record.Promotion.ResourceVersion != "" || record.Promotion.ManagedFields != nil || record.Approvals[0].ResourceVersion != "" {
		t.Errorf("the record keeps what only the API server needs: %+v", record.Promotion.ObjectMeta)
	}
	if has, err := a.Has("shop", "prod", "p1", "u1"); err != nil || has {
		t.Fatalf("Has before Put = %v, %v; want false", has, err)
	}
	entry, err := a.Put(&record)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := a.Has("shop", "prod", "p1", "u1"); err != nil || !has {
		t.Fatalf("Has after Put = %v, %v; want true", has, err)
	}
	// Archiving again, as a restart before the delete does, changes nothing.
	again, err := a.Put(&record)
	if err != nil || !equality.Semantic.DeepEqual(again, entry) {
		t.Fatalf("Put again = %+v, %v; want %+v", again, err, entry)
	}
	listed, err := a.Environment("shop", "prod")
	if err != nil || len(listed) != 1 || !equality.Semantic.DeepEqual(listed[0], entry) {
		t.Fatalf("Environment = %+v, %v; want one %+v", listed, err, entry)
	}
	got, e, err := a.Latest("shop", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(e, entry) || got.Promotion.Spec.Release != "r-p1" || got.EvidencePackets[0].Status.LogIndex != "3" || got.Approvals[0].Name != "ok" {
		t.Errorf("Latest = %+v, %+v", e, got)
	}
	if _, _, err := a.Latest("shop", "p2"); !strings.Contains(err.Error(), "not archived") {
		t.Errorf("Latest of a promotion never archived: %v, want not archived", err)
	}
	if l, err := a.Environment("other", "prod"); err != nil || len(l) != 0 {
		t.Errorf("another namespace's environment of the same name lists %v, %v", l, err)
	}
}

func TestArchivedPromotionsListInTheOrderTheyRan(t *testing.T) {
	a := openArchive(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range []*v1alpha1.Promotion{
		promotion("third", "u3", "prod", "100", t0),
		promotion("legacy-late", "u0b", "prod", "", t0.Add(time.Hour)),
		promotion("second", "u2", "prod", "9", t0.Add(-time.Hour)), // 9 < 100 as numbers, not as text
		promotion("legacy-early", "u0a", "prod", "", t0),
		promotion("elsewhere", "u9", "stage", "50", t0),
	} {
		r := NewRecord(p, nil, nil)
		if _, err := a.Put(&r); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := a.Environment("shop", "prod")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	if want := []string{"legacy-early", "legacy-late", "second", "third"}; !slices.Equal(names, want) {
		t.Errorf("order %v, want %v", names, want)
	}
}

func TestANameUsedAgainFindsTheNewestPromotion(t *testing.T) {
	a := openArchive(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	old, newer := promotion("p", "u-old", "prod", "10", t0), promotion("p", "u-new", "prod", "20", t0)
	newer.Spec.Release = "r-newer"
	for _, p := range []*v1alpha1.Promotion{newer, old} {
		r := NewRecord(p, nil, nil)
		if _, err := a.Put(&r); err != nil {
			t.Fatal(err)
		}
	}
	r, e, err := a.Latest("shop", "p")
	if err != nil || e.UID != "u-new" || r.Promotion.Spec.Release != "r-newer" {
		t.Errorf("Latest = %+v, %v; want the promotion u-new", e, err)
	}
}

func TestTheArchiveRefusesNamesThatAreNotKubernetesNames(t *testing.T) {
	a := openArchive(t)
	for _, tc := range []struct {
		namespace, env, name string
		want                 string
	}{
		{"../etc", "prod", "p", `namespace "../etc"`},
		{"shop", "../../x", "p", `environment name "../../x"`},
		{"shop", "prod", "a/b", `promotion name "a/b"`},
		{"", "prod", "p", `namespace ""`},
	} {
		if _, err := a.Promotion(tc.namespace, tc.name); tc.name != "p" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Promotion(%q, %q) = %v, want an error naming %s", tc.namespace, tc.name, err, tc.want)
		}
		if _, err := a.Has(tc.namespace, tc.env, tc.name, "u"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Has(%q, %q, %q) = %v, want an error naming %s", tc.namespace, tc.env, tc.name, err, tc.want)
		}
		r := NewRecord(promotion(tc.name, "u", tc.env, "1", time.Now()), nil, nil)
		r.Promotion.Namespace = tc.namespace
		if _, err := a.Put(&r); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Put = %v, want an error naming %s", err, tc.want)
		}
	}
	r := NewRecord(promotion("p", "../u", "prod", "1", time.Now()), nil, nil)
	if _, err := a.Put(&r); err == nil || !strings.Contains(err.Error(), "uid") {
		t.Errorf("Put of a uid with a path in it = %v, want a refusal naming the uid", err)
	}
}

func TestAnUnfinishedEntryWriteIsNotListed(t *testing.T) {
	a := openArchive(t)
	r := NewRecord(promotion("p1", "u1", "prod", "1", time.Now()), nil, nil)
	if _, err := a.Put(&r); err != nil {
		t.Fatal(err)
	}
	// What a crash in the middle of an atomic write leaves behind.
	if err := os.WriteFile(filepath.Join(a.byEnvironment("shop", "prod"), ".u2.json.tmp123"), []byte(`{"na`), 0o600); err != nil {
		t.Fatal(err)
	}
	if entries, err := a.Environment("shop", "prod"); err != nil || len(entries) != 1 {
		t.Errorf("Environment = %v, %v; want the one finished entry", entries, err)
	}
}

func TestARecordOfAnotherFormatIsRefused(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{`{"apiVersion":"stella-ops.org/archive/v9"}`, `apiVersion "stella-ops.org/archive/v9"`},
		{`{"apiVersion":`, "archive record"},
	} {
		if _, err := ParseRecord([]byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseRecord(%s) = %v, want an error naming %s", tc.data, err, tc.want)
		}
	}
}
