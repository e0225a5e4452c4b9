package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"

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

// TestReplayOutput: -o json and yaml print the replay as a Replay that
// reads back whole, identical or not; -o name names the promotion.
func TestReplayOutput(t *testing.T) {
	for _, tc := range []struct {
		name      string
		change    func(*decision.Record)
		identical bool
		sealed    v1alpha1.DecisionResult
	}{
		{"honest", func(*decision.Record) {}, true, v1alpha1.DecisionAllow},
		{"forged deny", func(r *decision.Record) { r.Result, r.ReasonCodes = v1alpha1.DecisionDeny, []string{"policy.denied"} }, false, v1alpha1.DecisionDeny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			result, err := replayStatement(sealedStatement(t, tc.change))
			if err != nil {
				t.Fatal(err)
			}
			if result.Status.Identical != tc.identical {
				t.Fatalf("identical = %v, want %v", result.Status.Identical, tc.identical)
			}
			print := func(p printers.ResourcePrinter, out io.Writer) error {
				obj, err := printable(result)
				if err != nil {
					return err
				}
				return p.PrintObj(obj, out)
			}
			for _, format := range []string{"json", "yaml"} {
				text, err := objectOutput(t, format, print)
				if err != nil {
					t.Fatalf("-o %s: %v", format, err)
				}
				var got Replay
				if err := yaml.UnmarshalStrict([]byte(text), &got); err != nil {
					t.Fatalf("-o %s: %v\n%s", format, err, text)
				}
				if !reflect.DeepEqual(&got, result) {
					t.Errorf("-o %s read back as\n%+v\nwant\n%+v", format, got, *result)
				}
				if got.Kind != "Replay" || got.APIVersion != "stellactl.stella-ops.org/v1" || got.Namespace != "ns" || got.Name != "p" ||
					got.Status.Sealed.Result != tc.sealed || got.Status.Replayed.Result != v1alpha1.DecisionAllow {
					t.Errorf("-o %s = %+v", format, got)
				}
				if tc.identical != (len(got.Status.Differences) == 0) {
					t.Errorf("-o %s: identical %v with differences %q", format, tc.identical, got.Status.Differences)
				}
			}
			name, err := objectOutput(t, "name", print)
			if want := "replay.stellactl.stella-ops.org/p\n"; err != nil || name != want {
				t.Errorf("-o name = %q, %v; want %q", name, err, want)
			}
			var exit *exitError
			if err := result.mismatch(); tc.identical != (err == nil) || !tc.identical && (!errors.As(err, &exit) || exit.code != exitReplayMismatch) {
				t.Errorf("exit = %v, want exit %d only when different", err, exitReplayMismatch)
			}
		})
	}
}

func TestCompareToday(t *testing.T) {
	gate := func(name string, result v1alpha1.GateResult, reasons ...string) v1alpha1.GateEvaluation {
		return v1alpha1.GateEvaluation{Name: name, Result: result, ReasonCodes: reasons}
	}
	sealed := decision.Record{Result: v1alpha1.DecisionAllow,
		Gates: []v1alpha1.GateEvaluation{gate("approvals", v1alpha1.GatePass), gate("freeze", v1alpha1.GatePass)}}
	for _, tc := range []struct {
		name    string
		today   decision.Record
		changed bool
		want    []WhatIfGate
		table   string
	}{
		{
			name:  "the same",
			today: decision.Record{Result: v1alpha1.DecisionAllow, Gates: sealed.Gates},
			want:  []WhatIfGate{{Name: "approvals", Then: v1alpha1.GatePass, Now: v1alpha1.GatePass}, {Name: "freeze", Then: v1alpha1.GatePass, Now: v1alpha1.GatePass}},
			table: "" +
				"GATE        THEN   NOW    REASONS NOW\n" +
				"approvals   Pass   Pass   \n" +
				"freeze      Pass   Pass   \n" +
				"decision: allow [] then, allow [] now (unchanged)\n",
		},
		{
			name: "a gate gone, a gate added, one failing",
			today: decision.Record{Result: v1alpha1.DecisionDeny, ReasonCodes: []string{"scan.critical"},
				Gates: []v1alpha1.GateEvaluation{gate("approvals", v1alpha1.GatePass), gate("scan", v1alpha1.GateFail, "scan.critical")}},
			changed: true,
			want: []WhatIfGate{{Name: "approvals", Then: v1alpha1.GatePass, Now: v1alpha1.GatePass},
				{Name: "scan", Now: v1alpha1.GateFail, ReasonCodes: []string{"scan.critical"}}, {Name: "freeze", Then: v1alpha1.GatePass}},
			table: "" +
				"GATE        THEN   NOW    REASONS NOW\n" +
				"approvals   Pass   Pass   \n" +
				"scan        -      Fail   scan.critical\n" +
				"freeze      Pass   -      (no longer applies)\n" +
				"decision: allow [] then, deny [scan.critical] now (would change)\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := compareToday(sealed, tc.today)
			if w.Changed != tc.changed || !reflect.DeepEqual(w.Gates, tc.want) {
				t.Errorf("compareToday = changed %v, %+v; want changed %v, %+v", w.Changed, w.Gates, tc.changed, tc.want)
			}
			var out strings.Builder
			if err := printWhatIf(&out, w, ReplayDecision{Result: sealed.Result, ReasonCodes: sealed.ReasonCodes}); err != nil {
				t.Fatal(err)
			}
			if got := strings.SplitN(out.String(), ":\n", 2); len(got) != 2 || got[1] != tc.table {
				t.Errorf("printed\n%s\nwant after the heading\n%s", out.String(), tc.table)
			}
		})
	}
}
