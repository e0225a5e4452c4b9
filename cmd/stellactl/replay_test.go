package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/evaluation"
	"github.com/stella-ops/stella/internal/evidence"
)

// sealedStatement is the statement of the decision the evaluators make on a
// small input, after change (a forger's) was applied to the record.
func sealedStatement(t *testing.T, change func(*decision.Record)) *evidence.Statement {
	t.Helper()
	in := decision.Inputs{Clock: "2026-11-28T10:00:00Z",
		Promotion: decision.Promotion{Name: "p", Spec: v1alpha1.PromotionSpec{Release: "shop", Environment: "prod", RequestedBy: "alice"}},
		Release: decision.Named[v1alpha1.ReleaseSpec]{Name: "shop", Value: v1alpha1.ReleaseSpec{Version: "1.0.0",
			Components: []v1alpha1.ReleaseComponent{{Name: "api", Image: v1alpha1.ImageDigestRef("r/api@sha256:" + strings.Repeat("a", 64))}}}},
		Environment: decision.Named[v1alpha1.EnvironmentSpec]{Name: "prod", Value: v1alpha1.EnvironmentSpec{Gates: []v1alpha1.LocalObjectReference{{Name: "cue"}}}},
		Gates:       []decision.Gate{{Name: "cue", Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: "allow: input.release.version == \"1.0.0\"\nreasons: []\n"}}}},
	}
	return sealInputs(t, in, change)
}

// sealInputs is the statement of the decision the evaluators make on in,
// after change was applied to the record.
func sealInputs(t *testing.T, in decision.Inputs, change func(*decision.Record)) *evidence.Statement {
	t.Helper()
	record, _, err := (&evaluation.Evaluator{}).Evaluate(in)
	if err != nil {
		t.Fatal(err)
	}
	change(&record)
	data, err := evidence.DecisionStatement("ns", "p", in.Release.Value, record)
	if err != nil {
		t.Fatal(err)
	}
	st, err := evidence.ParseStatement(data)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestReplayTellsIdenticalFromDifferent(t *testing.T) {
	var out bytes.Buffer
	if err := replay(&out, sealedStatement(t, func(*decision.Record) {})); err != nil || !strings.Contains(out.String(), "identical, allow") {
		t.Fatalf("an honest record: %v\n%s", err, out.String())
	}

	out.Reset()
	err := replay(&out, sealedStatement(t, func(r *decision.Record) {
		r.Result, r.ReasonCodes = v1alpha1.DecisionDeny, []string{"policy.denied"}
	}))
	var exit *exitError
	if !errors.As(err, &exit) || exit.code != exitReplayMismatch {
		t.Fatalf("a record that says deny where its inputs allow: %v, want exit %d", err, exitReplayMismatch)
	}
	if !strings.Contains(out.String(), `-   "result": "deny"`) || !strings.Contains(out.String(), `+   "result": "allow"`) {
		t.Errorf("the diff does not show the result:\n%s", out.String())
	}
}

// A decision counted an approval bound to the promotion: replay names it by
// UID. A record that claims an approval of an earlier promotion of that name
// allowed it does not replay.
func TestReplayNamesTheBoundApprovals(t *testing.T) {
	image := v1alpha1.ImageDigestRef("r/api@sha256:" + strings.Repeat("a", 64))
	in := decision.Inputs{Clock: "2026-11-28T10:00:00Z",
		Promotion: decision.Promotion{Name: "p", UID: "uid-p2", Spec: v1alpha1.PromotionSpec{Release: "shop", Environment: "prod", RequestedBy: "alice"}},
		Release: decision.Named[v1alpha1.ReleaseSpec]{Name: "shop", Value: v1alpha1.ReleaseSpec{Version: "1.0.0",
			Components: []v1alpha1.ReleaseComponent{{Name: "api", Image: image}}}},
		Environment: decision.Named[v1alpha1.EnvironmentSpec]{Name: "prod", Value: v1alpha1.EnvironmentSpec{Gates: []v1alpha1.LocalObjectReference{{Name: "one"}}}},
		Gates:       []decision.Gate{{Name: "one", Spec: v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{Count: 1}}}},
		Approvals: []decision.Approval{{Name: "lgtm", UID: "uid-a", CreatedAt: "2026-11-28T09:00:00Z", Spec: v1alpha1.ApprovalSpec{
			Promotion: "p", Decision: v1alpha1.ApprovalApprove, Approver: "bob",
			PromotionUID: "uid-p2", Release: "shop", Components: []v1alpha1.ComponentDigest{{Name: "api", Image: image}}}}},
	}
	seal := func(in decision.Inputs, change func(*decision.Record)) *evidence.Statement {
		return sealInputs(t, in, change)
	}

	var out bytes.Buffer
	if err := replay(&out, seal(in, func(*decision.Record) {})); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if want := "gate one counted approval lgtm (uid uid-a): approve by bob, bound to promotion uid uid-p2"; !strings.Contains(out.String(), want) {
		t.Errorf("replay does not name the counted approval:\n%s\nwant a line %q", out.String(), want)
	}

	stale := in
	stale.Approvals = []decision.Approval{in.Approvals[0]}
	stale.Approvals[0].Spec.PromotionUID = "uid-p1"
	out.Reset()
	err := replay(&out, seal(stale, func(r *decision.Record) {
		honest := seal(in, func(*decision.Record) {})
		var pred evidence.DecisionPredicate
		if err := json.Unmarshal(honest.Predicate, &pred); err != nil {
			t.Fatal(err)
		}
		r.Gates, r.Result, r.ReasonCodes = pred.Record.Gates, pred.Record.Result, pred.Record.ReasonCodes
		r.CountedApprovals = pred.Record.CountedApprovals
		r.CountedApprovals[0].PromotionUID = "uid-p1"
	}))
	var exit *exitError
	if !errors.As(err, &exit) || exit.code != exitReplayMismatch {
		t.Fatalf("a record counting an approval of an earlier promotion: %v, want exit %d\n%s", err, exitReplayMismatch, out.String())
	}
	if !strings.Contains(out.String(), `-   "result": "allow"`) || !strings.Contains(out.String(), `+   "result": "pending"`) {
		t.Errorf("the diff does not show the result:\n%s", out.String())
	}
}
