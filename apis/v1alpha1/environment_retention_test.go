package v1alpha1

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRetentionFillsInWhatTheAPIServerDidNotDefault(t *testing.T) {
	keep := func(n int32) *int32 { return &n }
	age := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	for _, tc := range []struct {
		name       string
		retention  *PromotionRetention
		wantKeep   int
		wantMinAge time.Duration
	}{
		{"no retention", nil, 20, 14 * 24 * time.Hour},
		{"empty retention", &PromotionRetention{}, 20, 14 * 24 * time.Hour},
		{"keep only", &PromotionRetention{Keep: keep(3)}, 3, 14 * 24 * time.Hour},
		{"minAge only", &PromotionRetention{MinAge: age(time.Hour)}, 20, time.Hour},
		{"zeros, for benchmarks", &PromotionRetention{Keep: keep(0), MinAge: age(0)}, 0, 0},
		{"negative values count as zero", &PromotionRetention{Keep: keep(-1), MinAge: age(-time.Hour)}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := EnvironmentSpec{PromotionRetention: tc.retention}
			gotKeep, gotMinAge := spec.Retention()
			if gotKeep != tc.wantKeep || gotMinAge != tc.wantMinAge {
				t.Errorf("Retention() = %d, %s; want %d, %s", gotKeep, gotMinAge, tc.wantKeep, tc.wantMinAge)
			}
		})
	}
}
