package main

import (
	"bytes"
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
