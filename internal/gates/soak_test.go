package gates

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func entry(release string, phase v1alpha1.PromotionPhase, finished string) v1alpha1.EnvironmentHistoryEntry {
	return v1alpha1.EnvironmentHistoryEntry{Release: release, Phase: phase, FinishedAt: mts(finished)}
}

func stage(current string, newestFirst ...v1alpha1.EnvironmentHistoryEntry) v1alpha1.Environment {
	return v1alpha1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: "stage"},
		Status:     v1alpha1.EnvironmentStatus{CurrentRelease: current, History: newestFirst},
	}
}

func TestSoak(t *testing.T) {
	const ours, older, newer = "shop-2.3.1", "shop-2.3.0", "shop-2.4.0"
	const t0 = "2024-06-03T10:00:00Z"
	ok := v1alpha1.PromotionSucceeded
	day := v1alpha1.SoakGate{Environment: "stage", Duration: dur("24h")}

	tests := []struct {
		name string
		gate v1alpha1.SoakGate
		env  v1alpha1.Environment
		now  string
		want want
	}{
		{
			name: "too young: pending until it has soaked", gate: day,
			env:  stage(ours, entry(ours, ok, t0), entry(older, ok, "2024-06-01T00:00:00Z")),
			now:  "2024-06-03T13:00:00Z",
			want: want{v1alpha1.GatePending, codes(ReasonSoakInsufficient), "2024-06-04T10:00:00Z"},
		},
		{
			name: "soaked exactly long enough", gate: day,
			env:  stage(ours, entry(ours, ok, t0)),
			now:  "2024-06-04T10:00:00Z",
			want: want{result: v1alpha1.GatePass},
		},
		{
			name: "a re-deploy of the same release does not restart the clock", gate: day,
			env:  stage(ours, entry(ours, ok, "2024-06-03T20:00:00Z"), entry(ours, ok, t0)),
			now:  "2024-06-03T21:00:00Z",
			want: want{v1alpha1.GatePending, codes(ReasonSoakInsufficient), "2024-06-04T10:00:00Z"},
		},
		{
			name: "never deployed there", gate: day,
			env:  stage(older, entry(older, ok, t0)),
			now:  "2024-06-05T00:00:00Z",
			want: want{result: v1alpha1.GateFail, codes: codes(ReasonSoakNotDeployed)},
		},
		{
			name: "a failed promotion is not a run", gate: day,
			env:  stage(older, entry(ours, v1alpha1.PromotionFailed, t0), entry(older, ok, "2024-06-01T00:00:00Z")),
			now:  "2024-06-05T00:00:00Z",
			want: want{result: v1alpha1.GateFail, codes: codes(ReasonSoakNotDeployed)},
		},
		{
			name: "replaced before it soaked", gate: day,
			env:  stage(newer, entry(newer, ok, "2024-06-03T12:00:00Z"), entry(ours, ok, t0)),
			now:  "2024-06-05T00:00:00Z",
			want: want{result: v1alpha1.GateFail, codes: codes(ReasonSoakInterrupted)},
		},
		{
			name: "soaked, then replaced", gate: day,
			env:  stage(newer, entry(newer, ok, "2024-06-04T10:00:00Z"), entry(ours, ok, t0)),
			now:  "2024-06-05T00:00:00Z",
			want: want{result: v1alpha1.GatePass},
		},
		{
			name: "a second, shorter run after a long one still passes", gate: day,
			env: stage(ours,
				entry(ours, ok, "2024-06-10T00:00:00Z"),
				entry(newer, ok, "2024-06-05T00:00:00Z"),
				entry(ours, ok, t0)),
			now:  "2024-06-10T01:00:00Z",
			want: want{result: v1alpha1.GatePass},
		},
		{
			name: "current, but the history does not say since when", gate: day,
			env:  stage(ours),
			now:  "2024-06-05T00:00:00Z",
			want: want{result: v1alpha1.GatePending, codes: codes(ReasonSoakInsufficient)},
		},
		{
			name: "unknown environment", gate: v1alpha1.SoakGate{Environment: "qa", Duration: dur("1h")},
			env:  stage(ours, entry(ours, ok, t0)),
			now:  "2024-06-05T00:00:00Z",
			want: want{result: v1alpha1.GateFail, codes: codes(ReasonSoakEnvironmentNotFound)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Soak: &tt.gate}}
			in := Inputs{
				Now:          ts(tt.now),
				Release:      &v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Name: ours}},
				Environments: []v1alpha1.Environment{{ObjectMeta: metav1.ObjectMeta{Name: "dev"}}, tt.env},
			}
			check(t, Evaluate(gate, in), tt.want)
		})
	}
}
