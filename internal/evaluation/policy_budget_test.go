package evaluation

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/policy"
)

// The test binary is its own policy worker (see the policy package).

// A policy that never finishes fails its gate with the budget it exceeded,
// the gates beside it are still judged, and a replay, meeting the same
// budget, reproduces the record byte for byte.
func TestPolicyOverItsBudgetFailsItsGateAndReplays(t *testing.T) {
	in := variedInputs(0)
	in.Gates = []decision.Gate{
		{Name: "spin", Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: `
import "list"
_n: list.Range(0, 100, 1)
_sums: [for a in _n for b in _n for c in _n for d in _n if a+b+c+d < 0 {a}]
allow: len(_sums) == 0
reasons: []
`}}},
		{Name: "fine", Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: "allow: true\nreasons: []\n"}}},
	}
	in.Environment.Value.Gates = []v1alpha1.LocalObjectReference{{Name: "spin"}, {Name: "fine"}}

	decide := func(in decision.Inputs) (decision.Record, []v1alpha1.GateEvaluation) {
		t.Helper()
		sandbox := policy.NewSandbox(policy.SandboxOptions{Timeout: time.Second})
		defer sandbox.Close()
		record, evals, err := (&Evaluator{Policies: sandbox, Namespace: "team-a"}).Evaluate(in)
		if err != nil {
			t.Fatal(err)
		}
		return record, evals
	}
	record, evals := decide(in)
	if record.Result != v1alpha1.DecisionDeny || !slices.Equal(record.ReasonCodes, []string{ReasonPolicyBudget}) {
		t.Fatalf("decision %s %v, want a deny for %s", record.Result, record.ReasonCodes, ReasonPolicyBudget)
	}
	if evals[0].Result != v1alpha1.GateFail || !strings.Contains(evals[0].Message, "time budget of 1s") {
		t.Errorf("spinning gate: %+v, want a failure naming the budget", evals[0])
	}
	if evals[1].Result != v1alpha1.GatePass {
		t.Errorf("the gate beside it: %+v, want a pass", evals[1])
	}

	sealed, err := record.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	var recorded decision.Record
	if err := json.Unmarshal(sealed, &recorded); err != nil {
		t.Fatal(err)
	}
	replayed, _ := decide(recorded.Inputs)
	if again, _ := replayed.Canonical(); string(again) != string(sealed) {
		t.Fatalf("does not replay:\nsealed   %s\nreplayed %s", sealed, again)
	}
}
