package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func TestBatchesOf(t *testing.T) {
	rolling := func(v intstr.IntOrString) *v1alpha1.DeployStrategy {
		return &v1alpha1.DeployStrategy{Type: v1alpha1.StrategyRolling, Rolling: &v1alpha1.RollingStrategy{MaxUnavailable: &v}}
	}
	canary := func(percents ...int32) *v1alpha1.DeployStrategy {
		s := &v1alpha1.DeployStrategy{Type: v1alpha1.StrategyCanary, Canary: &v1alpha1.CanaryStrategy{}}
		for _, p := range percents {
			s.Canary.Steps = append(s.Canary.Steps, v1alpha1.CanaryStep{Percent: p})
		}
		return s
	}
	for _, tc := range []struct {
		name     string
		n        int
		strategy *v1alpha1.DeployStrategy
		want     string
	}{
		{"no strategy is all at once", 3, nil, "[0 0 0]"},
		{"all at once", 3, &v1alpha1.DeployStrategy{Type: v1alpha1.StrategyAllAtOnce}, "[0 0 0]"},
		{"rolling one by one by default", 3, &v1alpha1.DeployStrategy{Type: v1alpha1.StrategyRolling}, "[0 1 2]"},
		{"rolling two at a time", 5, rolling(intstr.FromInt32(2)), "[0 0 1 1 2]"},
		{"rolling by percentage rounds down but moves", 5, rolling(intstr.FromString("25%")), "[0 1 2 3 4]"},
		{"rolling 50%", 4, rolling(intstr.FromString("50%")), "[0 0 1 1]"},
		{"canary 10 50 100", 10, canary(10, 50, 100), "[0 1 1 1 1 2 2 2 2 2]"},
		{"canary rounds each step up", 3, canary(10, 100), "[0 1 1]"},
		{"canary that stops short finishes in a last batch", 4, canary(25, 50), "[0 1 2 2]"},
		{"canary steps that add nothing are skipped", 2, canary(10, 20, 100), "[0 1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fmt.Sprint(batchesOf(tc.n, tc.strategy)); got != tc.want {
				t.Errorf("batchesOf(%d) = %s, want %s", tc.n, got, tc.want)
			}
		})
	}
}

func TestCurrentBatchAndFailure(t *testing.T) {
	targets := []v1alpha1.TargetProgress{
		{Target: "a", Batch: 0, Phase: v1alpha1.DeployTaskSucceeded},
		{Target: "b", Batch: 1, Phase: v1alpha1.DeployTaskRunning},
		{Target: "c", Batch: 2, Phase: v1alpha1.DeployTaskPending},
	}
	if cur, n := currentBatch(targets); cur != 1 || n != 3 {
		t.Errorf("currentBatch = %d of %d, want 1 of 3", cur, n)
	}
	if f := firstFailed(targets); f != nil {
		t.Errorf("firstFailed = %v, want none", f.Target)
	}
	targets[1].Phase = v1alpha1.DeployTaskTimedOut
	if f := firstFailed(targets); f == nil || f.Target != "b" {
		t.Errorf("firstFailed = %v, want b", f)
	}
	for i := range targets {
		targets[i].Phase = v1alpha1.DeployTaskSucceeded
	}
	if cur, _ := currentBatch(targets); cur != -1 {
		t.Errorf("currentBatch = %d, want -1 when all succeeded", cur)
	}
}

func TestTaskNameIsBoundedAndStable(t *testing.T) {
	if got := taskName("shop-2-to-prod", "web-1"); got != "shop-2-to-prod-web-1" {
		t.Errorf("taskName = %s", got)
	}
	long := taskName(strings.Repeat("p", 200), strings.Repeat("t", 200))
	if len(long) > 253 || long != taskName(strings.Repeat("p", 200), strings.Repeat("t", 200)) {
		t.Errorf("long task name %q is %d characters or unstable", long, len(long))
	}
	if long == taskName(strings.Repeat("p", 200), strings.Repeat("t", 199)+"u") {
		t.Error("different targets must give different task names")
	}
}

func TestUntilEarliestRetry(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(d)); return &t }
	evals := []v1alpha1.GateEvaluation{
		{Name: "freeze", Result: v1alpha1.GatePending, RetryAt: at(2 * time.Hour)},
		{Name: "soak", Result: v1alpha1.GatePending, RetryAt: at(30 * time.Minute)},
		{Name: "done", Result: v1alpha1.GatePass, RetryAt: at(time.Minute)},
	}
	if got := untilEarliestRetry(evals, now); got != 30*time.Minute {
		t.Errorf("untilEarliestRetry = %s, want 30m", got)
	}
	if got := untilEarliestRetry(evals[2:], now); got != 0 {
		t.Errorf("untilEarliestRetry without pending gates = %s, want 0", got)
	}
}

func TestEnvironmentStatusFromPromotions(t *testing.T) {
	at := func(h int) *metav1.Time {
		t := metav1.NewTime(time.Date(2026, 11, 28, h, 0, 0, 0, time.UTC))
		return &t
	}
	env := &v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Name: "prod"}, Spec: v1alpha1.EnvironmentSpec{HistoryLimit: 2,
		TargetSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}}
	env.Status.History = []v1alpha1.EnvironmentHistoryEntry{{Release: "r0", Promotion: "deleted", Phase: v1alpha1.PromotionSucceeded, FinishedAt: at(1)}}
	promo := func(name, rel string, phase v1alpha1.PromotionPhase, finished *metav1.Time) v1alpha1.Promotion {
		return v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.PromotionSpec{Release: rel, Environment: "prod"},
			Status: v1alpha1.PromotionStatus{Phase: phase, FinishedAt: finished}}
	}
	promos := []v1alpha1.Promotion{
		promo("p1", "r1", v1alpha1.PromotionSucceeded, at(2)),
		promo("p2", "r2", v1alpha1.PromotionFailed, at(3)),
		promo("p3", "r3", v1alpha1.PromotionRejected, at(4)),
		promo("p4", "r4", v1alpha1.PromotionDeploying, nil),
		{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: v1alpha1.PromotionSpec{Release: "rx", Environment: "dev"}, Status: v1alpha1.PromotionStatus{Phase: v1alpha1.PromotionSucceeded, FinishedAt: at(5)}},
	}
	target := func(name string, drift v1alpha1.DriftState, health v1alpha1.HealthState) v1alpha1.Target {
		seen := metav1.Now()
		return v1alpha1.Target{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"env": "prod"}},
			Status: v1alpha1.TargetStatus{Drift: drift, Health: health, LastSeen: &seen}}
	}
	targets := []v1alpha1.Target{
		target("a", v1alpha1.DriftInSync, v1alpha1.HealthHealthy),
		target("b", v1alpha1.DriftDrifted, v1alpha1.HealthHealthy),
		{ObjectMeta: metav1.ObjectMeta{Name: "c", Labels: map[string]string{"env": "prod"}}},
	}
	computeEnvironmentStatus(env, promos, targets, map[string]string{"r1": "1.0.0"})
	st := env.Status
	if st.CurrentRelease != "r1" || st.CurrentPromotion != "p4" {
		t.Errorf("current = %s via %s, want r1 and p4 in flight", st.CurrentRelease, st.CurrentPromotion)
	}
	if len(st.History) != 2 || st.History[0].Promotion != "p2" || st.History[1].Promotion != "p1" || st.History[1].Version != "1.0.0" {
		t.Errorf("history = %+v, want p2 then p1 (1.0.0), cut at the limit", st.History)
	}
	if st.Targets != (v1alpha1.TargetCounts{Total: 3, Healthy: 1, Drifted: 1, Unknown: 1}) {
		t.Errorf("targets = %+v", st.Targets)
	}
}
