package decision

import (
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func eval(name string, result v1alpha1.GateResult, codes ...string) v1alpha1.GateEvaluation {
	return v1alpha1.GateEvaluation{Name: name, Result: result, ReasonCodes: codes}
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name      string
		gates     []v1alpha1.GateEvaluation
		want      v1alpha1.DecisionResult
		wantCodes []string
	}{
		{"no gates", nil, v1alpha1.DecisionAllow, nil},
		{"all pass", []v1alpha1.GateEvaluation{eval("a", v1alpha1.GatePass), eval("b", v1alpha1.GatePass)}, v1alpha1.DecisionAllow, nil},
		{"one pending", []v1alpha1.GateEvaluation{eval("a", v1alpha1.GatePass), eval("b", v1alpha1.GatePending, "approval.insufficient")},
			v1alpha1.DecisionPending, []string{"approval.insufficient"}},
		{"a failing gate denies whatever the approvals say", []v1alpha1.GateEvaluation{
			eval("approvals", v1alpha1.GatePass), eval("policy", v1alpha1.GateFail, "policy.deny"), eval("freeze", v1alpha1.GatePending, "freeze.active")},
			v1alpha1.DecisionDeny, []string{"freeze.active", "policy.deny"}},
		{"codes sorted without duplicates", []v1alpha1.GateEvaluation{
			eval("b", v1alpha1.GateFail, "z.code", "a.code"), eval("a", v1alpha1.GateFail, "a.code")},
			v1alpha1.DecisionDeny, []string{"a.code", "z.code"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Decide(Inputs{}, tc.gates, nil)
			if r.Result != tc.want || strings.Join(r.ReasonCodes, ",") != strings.Join(tc.wantCodes, ",") {
				t.Errorf("Decide = %s %v, want %s %v", r.Result, r.ReasonCodes, tc.want, tc.wantCodes)
			}
		})
	}
}

func inputs() Inputs {
	return Inputs{
		Clock:     Clock(time.Date(2026, 11, 28, 18, 0, 0, 0, time.FixedZone("CET", 3600))),
		Promotion: Promotion{Name: "p", Spec: v1alpha1.PromotionSpec{Release: "r", Environment: "prod", RequestedBy: "alice"}},
		Gates: []Gate{
			{Name: "two", Spec: v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{Count: 2}}},
			{Name: "cue", Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: "allow: true"}}},
		},
		Approvals: []Approval{
			{Name: "b", Spec: v1alpha1.ApprovalSpec{Approver: "bob"}},
			{Name: "c", Spec: v1alpha1.ApprovalSpec{Approver: "carol"}},
		},
		Policies: []Named[v1alpha1.Digest]{{Name: "cue", Value: v1alpha1.Digest("sha256:" + strings.Repeat("a", 64))}},
	}
}

func TestHashIgnoresListingOrderButNotContent(t *testing.T) {
	gates := []v1alpha1.GateEvaluation{eval("two", v1alpha1.GatePass), eval("cue", v1alpha1.GatePass)}
	base, err := Decide(inputs(), gates, nil).Hash()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(base), "sha256:") || len(base) != 71 {
		t.Fatalf("hash %q is not a sha256 digest", base)
	}

	shuffled := inputs()
	shuffled.Gates[0], shuffled.Gates[1] = shuffled.Gates[1], shuffled.Gates[0]
	shuffled.Approvals[0], shuffled.Approvals[1] = shuffled.Approvals[1], shuffled.Approvals[0]
	if got, _ := Decide(shuffled, []v1alpha1.GateEvaluation{gates[1], gates[0]}, nil).Hash(); got != base {
		t.Errorf("the order of the inputs changed the hash: %s != %s", got, base)
	}

	inputsOnly, _ := Decide(inputs(), gates, nil).InputsDigest()
	otherOutputs, _ := Decide(inputs(), []v1alpha1.GateEvaluation{eval("two", v1alpha1.GateFail, "x")}, nil).InputsDigest()
	if inputsOnly != otherOutputs || inputsOnly == base {
		t.Errorf("the inputs digest must depend on the inputs only: %s, %s (record %s)", inputsOnly, otherOutputs, base)
	}

	later := inputs()
	later.Clock = Clock(time.Date(2026, 11, 28, 17, 0, 1, 0, time.UTC))
	if got, _ := Decide(later, gates, nil).Hash(); got == base {
		t.Error("a different clock must change the hash")
	}
	forged := inputs()
	forged.Approvals[0].Spec.Approver = "mallory"
	if got, _ := Decide(forged, gates, nil).Hash(); got == base {
		t.Error("a different approver must change the hash")
	}
}

func TestClockIsUTC(t *testing.T) {
	if got := inputs().Clock; got != "2026-11-28T17:00:00Z" {
		t.Errorf("Clock = %s, want UTC RFC 3339", got)
	}
}

func TestCanonicalSortsKeys(t *testing.T) {
	raw, err := Decide(inputs(), nil, nil).Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), `{"gates":null,"inputs":{"approvals":[{"createdAt":"","name":"b"`) {
		t.Errorf("canonical JSON does not start with sorted keys: %.80s", raw)
	}
}

func TestPolicyDigest(t *testing.T) {
	if d := (Inputs{}).PolicyDigest(); d != "" {
		t.Errorf("no policies: PolicyDigest = %q, want empty", d)
	}
	a, b := inputs(), inputs()
	b.Policies[0].Value = v1alpha1.Digest("sha256:" + strings.Repeat("b", 64))
	if a.PolicyDigest() == b.PolicyDigest() {
		t.Error("a different policy must change the policy digest")
	}
}

// The approvals counted, named by UID, are part of the record: listing them
// in another order changes nothing, counting another one changes the hash.
func TestCountedApprovalsAreRecorded(t *testing.T) {
	gates := []v1alpha1.GateEvaluation{eval("two", v1alpha1.GatePass)}
	bob := CountedApproval{Gate: "two", Name: "b", UID: "uid-b", Approver: "bob", Decision: v1alpha1.ApprovalApprove, PromotionUID: "uid-p"}
	carol := CountedApproval{Gate: "two", Name: "c", UID: "uid-c", Approver: "carol", Decision: v1alpha1.ApprovalApprove, PromotionUID: "uid-p"}
	r := Decide(inputs(), gates, []CountedApproval{carol, bob})
	if len(r.CountedApprovals) != 2 || r.CountedApprovals[0].Name != "b" {
		t.Fatalf("counted approvals %+v, want b then c", r.CountedApprovals)
	}
	base, _ := r.Hash()
	if got, _ := Decide(inputs(), gates, []CountedApproval{bob, carol}).Hash(); got != base {
		t.Errorf("the order of the counted approvals changed the hash")
	}
	stale := carol
	stale.PromotionUID = "uid-of-a-deleted-promotion"
	if got, _ := Decide(inputs(), gates, []CountedApproval{bob, stale}).Hash(); got == base {
		t.Errorf("another bound promotion UID must change the hash")
	}
	raw, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"countedApprovals":[{"approver":"bob","decision":"approve","gate":"two","name":"b","promotionUID":"uid-p","uid":"uid-b"}`) {
		t.Errorf("the canonical record does not name the counted approvals: %s", raw)
	}
}
