package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
)

func TestHistoryMergesTheAPIAndTheArchiveInTheOrderPromotionsRan(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	at := func(h int) *metav1.Time { x := metav1.NewTime(t0.Add(time.Duration(h) * time.Hour)); return &x }
	live := func(name, uid, env, revision, resourceVersion string, phase v1alpha1.PromotionPhase) v1alpha1.Promotion {
		return v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(uid), ResourceVersion: resourceVersion},
			Spec:   v1alpha1.PromotionSpec{Environment: env, Release: "r-" + name},
			Status: v1alpha1.PromotionStatus{Phase: phase, CreationRevision: revision}}
	}
	archived := func(name, uid, revision string, finished *metav1.Time) archive.Entry {
		return archive.Entry{Name: name, UID: types.UID(uid), Environment: "prod", Release: "r-" + name, Phase: v1alpha1.PromotionSucceeded,
			CreationRevision: revision, FinishedAt: finished, Record: "sha256:" + v1alpha1.Digest(strings.Repeat("a", 64))}
	}
	promos := []v1alpha1.Promotion{
		live("p5-queued", "u5", "prod", "", "900", ""),                              // not written yet: its resourceVersion places it
		live("p4", "u4", "prod", "400", "401", v1alpha1.PromotionSucceeded),         // newest finished, in the API
		live("p3", "u3", "prod", "300", "305", v1alpha1.PromotionSucceeded),         // archived, not deleted yet
		live("elsewhere", "u9", "stage", "350", "351", v1alpha1.PromotionSucceeded), // another environment
	}
	entries := []archive.Entry{
		archived("p0-legacy", "u0", "", at(0)),
		archived("p2", "u2", "200", at(2)),
		archived("p10", "u10", "100", at(1)), // 100 < 200 as numbers
		archived("p3", "u3", "300", at(3)),
	}
	got := mergeHistory("prod", promos, entries)
	var names []string
	for _, e := range got {
		where := "api"
		if e.Archived {
			where = "archive"
		}
		names = append(names, e.Name+"@"+where)
	}
	want := []string{"p0-legacy@archive", "p10@archive", "p2@archive", "p3@api", "p4@api", "p5-queued@api"}
	if !slices.Equal(names, want) {
		t.Errorf("history %v, want %v", names, want)
	}
	for _, e := range got {
		if e.Kind != "PromotionHistoryEntry" || e.APIVersion != stellactlGroupVersion.String() {
			t.Errorf("%s has type %s/%s", e.Name, e.APIVersion, e.Kind)
		}
	}
}

func TestSinceTakesADurationOrATime(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		since   string
		want    time.Time
		refusal string
	}{
		{"", time.Time{}, ""},
		{"72h", now.Add(-72 * time.Hour), ""},
		{"2026-12-01T00:00:00Z", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), ""},
		{"-1h", time.Time{}, "--since -1h: a duration back from now is positive"},
		{"yesterday", time.Time{}, `--since "yesterday": want a duration such as 72h or a time such as`},
		{"2026-12-01", time.Time{}, `--since "2026-12-01"`},
	} {
		got, err := parseSince(tc.since, now)
		if tc.refusal != "" {
			if err == nil || !strings.Contains(err.Error(), tc.refusal) {
				t.Errorf("parseSince(%q) = %v, %v; want a refusal naming %q", tc.since, got, err, tc.refusal)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", tc.since, got, err, tc.want)
		}
	}
}
