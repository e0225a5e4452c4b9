package evaluation

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/gates"
)

const image = "127.0.0.1:5000/shop/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// variedInputs is the i-th of a family of decisions that covers every gate
// type: passing, failing and pending, by clock, approvals, reports and
// policies.
func variedInputs(i int) decision.Inputs {
	clock := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 37 * time.Minute)
	at := func(d time.Duration) string { return decision.Clock(clock.Add(-d)) }
	gateSpecs := map[string]v1alpha1.GateSpec{
		"two-approvers": {Approval: &v1alpha1.ApprovalGate{Count: int32(1 + i%3)}},
		"weekend-freeze": {FreezeWindow: &v1alpha1.FreezeWindowGate{TimeZone: "Europe/Berlin", Recurring: []v1alpha1.RecurringWindow{{
			RRule: "FREQ=WEEKLY;BYDAY=SA;BYHOUR=0;BYMINUTE=0;BYSECOND=0", Duration: metav1.Duration{Duration: 48 * time.Hour}}}}},
		"soak-in-stage": {Soak: &v1alpha1.SoakGate{Environment: "stage", Duration: metav1.Duration{Duration: time.Duration(i%5) * time.Hour}}},
		"no-highs":      {SecurityVerdict: &v1alpha1.SecurityVerdictGate{MaxSeverity: v1alpha1.SeverityMedium}},
		"policy": {Policy: &v1alpha1.PolicyGate{Source: fmt.Sprintf(
			"allow: len(input.approvals) >= %d\nreasons: [if !allow {\"too few approvals\"}]\n", i%4)}},
		"office-hours": {Schedule: &v1alpha1.ScheduleGate{TimeZone: "America/New_York", Allowed: []v1alpha1.RecurringWindow{{
			RRule: "FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0", Duration: metav1.Duration{Duration: 8 * time.Hour}}}}},
	}
	env := v1alpha1.EnvironmentSpec{Order: 3}
	in := decision.Inputs{
		Clock:     decision.Clock(clock),
		Promotion: decision.Promotion{Name: fmt.Sprintf("p-%d", i), UID: types.UID(fmt.Sprintf("uid-p-%d", i)), Spec: v1alpha1.PromotionSpec{Release: "shop", Environment: "prod", RequestedBy: "alice"}, StartedAt: at(time.Duration(i%7) * time.Hour)},
		Release: decision.Named[v1alpha1.ReleaseSpec]{Name: "shop", Value: v1alpha1.ReleaseSpec{Version: "1.2.3",
			Components: []v1alpha1.ReleaseComponent{{Name: "api", Image: image}}}},
		Upstream: []decision.Named[v1alpha1.EnvironmentStatus]{{Name: "stage", Value: v1alpha1.EnvironmentStatus{CurrentRelease: "shop",
			History: []v1alpha1.EnvironmentHistoryEntry{{Release: "shop", Promotion: "to-stage", Phase: v1alpha1.PromotionSucceeded,
				FinishedAt: &metav1.Time{Time: clock.Add(-time.Duration(i%6) * time.Hour)}}}}}},
	}
	for k, name := range slices.Sorted(maps.Keys(gateSpecs)) {
		if (i>>k)&1 == 1 { // each decision faces its own subset of the gates
			env.Gates = append(env.Gates, v1alpha1.LocalObjectReference{Name: name})
			in.Gates = append(in.Gates, decision.Gate{Name: name, Spec: gateSpecs[name]})
		}
	}
	if i%10 == 9 {
		env.Gates = append(env.Gates, v1alpha1.LocalObjectReference{Name: "deleted"}) // named but missing
	}
	if i%8 == 5 { // a release that has, or has not, succeeded upstream
		env.PromotesFrom = []string{"stage"}
		if i%16 == 5 {
			in.SucceededIn = []string{"stage"}
		}
	}
	if i%25 == 7 { // a rollback, to a release that ran here or not
		in.Promotion.Spec.Rollback = true
		env.RollbackSkipGateTypes = []string{"soak"}
		if i%50 == 7 {
			in.SucceededIn = []string{"prod"}
		}
	}
	in.Environment = decision.Named[v1alpha1.EnvironmentSpec]{Name: "prod", Value: env}
	for j, who := range []string{"alice", "bob", "carol", "bob"}[:i%5%4+1] {
		bound := in.Promotion.UID
		if i%7 == 3 && j == 1 { // made for an earlier promotion of this name
			bound = "uid-of-a-deleted-promotion"
		}
		in.Approvals = append(in.Approvals, decision.Approval{Name: fmt.Sprintf("a-%d", j), UID: types.UID(fmt.Sprintf("uid-a-%d-%d", i, j)),
			CreatedAt: at(time.Duration(j) * time.Minute),
			Spec: v1alpha1.ApprovalSpec{Promotion: in.Promotion.Name, Approver: who, Decision: v1alpha1.ApprovalApprove,
				PromotionUID: bound, Release: "shop", Components: []v1alpha1.ComponentDigest{{Name: "api", Image: image}}}})
	}
	if i%3 != 0 { // every third decision has no report yet: pending, then deny
		severity := []v1alpha1.Severity{v1alpha1.SeverityLow, v1alpha1.SeverityHigh}[i%2]
		scanned := metav1.NewTime(clock.Add(-time.Duration(i%50) * time.Hour))
		in.ScanReports = []decision.ScanReport{{Name: "api-report", Spec: v1alpha1.ScanReportSpec{Image: image},
			Status: v1alpha1.ScanReportStatus{ScannedAt: &scanned, MaxSeverity: severity,
				Findings: []v1alpha1.Finding{{Package: "openssl", Version: "3.0.1", Advisory: "CVE-2026-0001", Severity: severity}}}}}
	}
	return in
}

// TestReplayReproducesEveryDecision evaluates 100 varied decisions, sends
// each record through JSON as a sealed statement carries it, evaluates the
// recorded inputs again, and wants the same bytes and hash every time.
func TestReplayReproducesEveryDecision(t *testing.T) {
	e := &Evaluator{}
	results := map[v1alpha1.DecisionResult]int{}
	refusals := 0
	for i := range 100 {
		record, _, err := e.Evaluate(variedInputs(i))
		if err != nil {
			t.Fatal(err)
		}
		results[record.Result]++
		for _, code := range record.ReasonCodes {
			if code == ReasonUpstreamNotSucceeded || code == ReasonRollbackTargetUnknown {
				refusals++
			}
		}
		sealed, err := record.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		var recorded decision.Record
		if err := json.Unmarshal(sealed, &recorded); err != nil {
			t.Fatal(err)
		}
		replayed, _, err := (&Evaluator{}).Evaluate(recorded.Inputs)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := replayed.Canonical()
		if string(again) != string(sealed) {
			t.Fatalf("decision %d does not replay:\nsealed   %s\nreplayed %s", i, sealed, again)
		}
	}
	t.Logf("results: %v, refusals %d", results, refusals)
	if len(results) < 3 || refusals < 2 {
		t.Errorf("the family covers only %v and %d refusals; want allow, deny, pending and refusals", results, refusals)
	}
}

func TestEvaluateRefusesBrokenInputs(t *testing.T) {
	in := variedInputs(1)
	in.Clock = "yesterday"
	if _, _, err := (&Evaluator{}).Evaluate(in); err == nil {
		t.Error("a clock that is not RFC 3339 was accepted")
	}
	in = variedInputs(1)
	in.Approvals[0].CreatedAt = ""
	if _, _, err := (&Evaluator{}).Evaluate(in); err == nil {
		t.Error("an approval without a creation time was accepted")
	}
}

// An approval bound to an earlier promotion of the same name is neither
// counted by an approval gate nor shown to a policy, and the record names
// the approvals that did count by their UIDs and the promotion UID.
func TestOnlyBoundApprovalsCount(t *testing.T) {
	in := variedInputs(0)
	in.Gates = []decision.Gate{
		{Name: "one-approver", Spec: v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{Count: 1}}},
		{Name: "policy", Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: "allow: len(input.approvals) >= 1\nreasons: [if !allow {\"no approval\"}]\n"}}},
	}
	in.Environment.Value.Gates = []v1alpha1.LocalObjectReference{{Name: "one-approver"}, {Name: "policy"}}
	bob := decision.Approval{Name: "a-bob", UID: "uid-a-bob", CreatedAt: in.Clock, Spec: v1alpha1.ApprovalSpec{
		Promotion: in.Promotion.Name, Approver: "bob", Decision: v1alpha1.ApprovalApprove,
		PromotionUID: "uid-of-the-deleted-promotion", Release: "shop", Components: []v1alpha1.ComponentDigest{{Name: "api", Image: image}}}}
	in.Approvals = []decision.Approval{bob}

	record, _, err := (&Evaluator{}).Evaluate(in)
	if err != nil {
		t.Fatal(err)
	}
	// The approval gate waits, and the policy, shown no approval, denies.
	wantCodes := []string{gates.ReasonApprovalInsufficient, gates.ReasonApprovalPromotionReplaced, ReasonPolicyDenied}
	if !slices.Equal(record.ReasonCodes, wantCodes) || len(record.CountedApprovals) != 0 {
		t.Fatalf("an approval of a deleted promotion: %s %v, counted %+v; want %v with none counted", record.Result, record.ReasonCodes, record.CountedApprovals, wantCodes)
	}
	if got := PolicyInput(in, time.Time{}).Approvals; len(got) != 0 {
		t.Errorf("the policy was shown %+v", got)
	}

	in.Approvals[0].Spec.PromotionUID = in.Promotion.UID
	record, _, err = (&Evaluator{}).Evaluate(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []decision.CountedApproval{{Gate: "one-approver", Name: "a-bob", UID: "uid-a-bob", Approver: "bob", Decision: v1alpha1.ApprovalApprove, PromotionUID: in.Promotion.UID}}
	if record.Result != v1alpha1.DecisionAllow || !slices.Equal(record.CountedApprovals, want) {
		t.Errorf("a bound approval: %s %v, counted %+v; want allow counting %+v", record.Result, record.ReasonCodes, record.CountedApprovals, want)
	}
}
