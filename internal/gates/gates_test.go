package gates

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func TestEvaluateGuards(t *testing.T) {
	now := ts("2024-06-03T10:00:00Z")
	tests := []struct {
		name string
		gate *v1alpha1.Gate
		in   Inputs
		want want
		typ  string
	}{
		{"no gate", nil, Inputs{Now: now}, want{result: v1alpha1.GateFail, codes: codes(ReasonInputMissing)}, ""},
		{"no type", &v1alpha1.Gate{}, Inputs{Now: now}, want{result: v1alpha1.GateFail, codes: codes(ReasonUnsupported)}, ""},
		{"policy belongs to internal/policy", &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: "allow: true"}}},
			Inputs{Now: now}, want{result: v1alpha1.GateFail, codes: codes(ReasonUnsupported)}, TypePolicy},
		{"no clock", freezeGate(weekendFreeze), Inputs{}, want{result: v1alpha1.GateFail, codes: codes(ReasonInputMissing)}, TypeFreezeWindow},
		{"approval without promotion", &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{}}},
			Inputs{Now: now}, want{result: v1alpha1.GateFail, codes: codes(ReasonInputMissing)}, TypeApproval},
		{"security without release", &v1alpha1.Gate{Spec: v1alpha1.GateSpec{SecurityVerdict: &v1alpha1.SecurityVerdictGate{}}},
			Inputs{Now: now}, want{result: v1alpha1.GateFail, codes: codes(ReasonInputMissing)}, TypeSecurityVerdict},
		{"soak without release", &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Soak: &v1alpha1.SoakGate{Environment: "stage"}}},
			Inputs{Now: now}, want{result: v1alpha1.GateFail, codes: codes(ReasonInputMissing)}, TypeSoak},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(tt.gate, tt.in)
			check(t, got, tt.want)
			if got.Type != tt.typ {
				t.Errorf("type = %q, want %q", got.Type, tt.typ)
			}
		})
	}
}

func TestEvaluation(t *testing.T) {
	retry := ts("2024-06-03T10:00:00Z").Add(1500 * time.Millisecond)
	o := Outcome{
		Type:        TypeSoak,
		Result:      v1alpha1.GatePending,
		ReasonCodes: []string{ReasonSoakInsufficient},
		Message:     strings.Repeat("é", 600), // 1200 bytes
		RetryAt:     &retry,
	}
	ev := o.Evaluation("soak-24h")
	if ev.Name != "soak-24h" || ev.Type != TypeSoak || ev.Result != v1alpha1.GatePending {
		t.Errorf("evaluation = %+v", ev)
	}
	if !slices.Equal(ev.ReasonCodes, []string{ReasonSoakInsufficient}) {
		t.Errorf("reason codes = %q", ev.ReasonCodes)
	}
	// Rounded up, never down: a requeue must not come before the change.
	if ev.RetryAt == nil || !ev.RetryAt.Equal(&metav1.Time{Time: ts("2024-06-03T10:00:02Z")}) {
		t.Errorf("retryAt = %v, want 2024-06-03T10:00:02Z", ev.RetryAt)
	}
	if len(ev.Message) > maxMessageLen || !strings.HasSuffix(ev.Message, "é...") {
		t.Errorf("message of %d bytes ends %q; want at most %d bytes, cut on a rune boundary", len(ev.Message), ev.Message[len(ev.Message)-8:], maxMessageLen)
	}
	whole := Outcome{Result: v1alpha1.GatePending, RetryAt: ptr(ts("2024-06-03T10:00:00Z"))}.Evaluation("x")
	if !whole.RetryAt.Equal(&metav1.Time{Time: ts("2024-06-03T10:00:00Z")}) {
		t.Errorf("whole-second retryAt moved to %v", whole.RetryAt)
	}
}

func TestTimeBasedHelpers(t *testing.T) {
	soak := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Soak: &v1alpha1.SoakGate{Environment: "stage"}}}
	if IsTimeBased(&soak.Spec) || !IsTimeBased(&freezeGate(weekendFreeze).Spec) {
		t.Errorf("IsTimeBased is wrong for soak or freezeWindow")
	}
	closed, next, err := ClosedAt(soak, ts("2024-06-03T10:00:00Z"))
	if closed || next != nil || err != nil {
		t.Errorf("ClosedAt(soak) = %v, %v, %v; want false, nil, nil", closed, next, err)
	}
	bad := freezeGate(v1alpha1.FreezeWindowGate{TimeZone: "Nowhere/Land", Recurring: weekendFreeze.Recurring})
	if _, _, err := ClosedAt(bad, ts("2024-06-03T10:00:00Z")); err == nil || !strings.HasPrefix(err.Error(), "spec.freezeWindow.timeZone: ") {
		t.Errorf("ClosedAt(bad zone) error = %v, want one naming spec.freezeWindow.timeZone", err)
	}
}

// The same inputs in another order give the same outcome, field for field.
func TestDeterministicUnderReordering(t *testing.T) {
	promo := promo1("alice")
	promo.Status.StartedAt = mts("2024-06-03T10:00:00Z")
	release := shop()
	// Equal creation times: the name breaks the tie.
	sameTime := func(name, who string) v1alpha1.Approval {
		a := approval(0, who, approve)
		a.Name = name
		return a
	}
	in := Inputs{
		Now:       ts("2024-06-03T10:10:00Z"),
		Promotion: promo,
		Release:   release,
		Approvals: []v1alpha1.Approval{sameTime("x", "bob"), sameTime("y", "bob"), approval(1, "alice", approve), approval(2, "eve", approve)},
		ScanReports: []v1alpha1.ScanReport{
			report("api-a", "reg.example/shop/api@"+apiDigest, "2024-06-03T09:00:00Z"),
			report("api-b", "reg.example/shop/api@"+apiDigest, "2024-06-03T09:00:00Z", finding(v1alpha1.SeverityCritical, "CVE-1", "", "")),
		},
		Environments: []v1alpha1.Environment{stage("shop-2.3.1", entry("shop-2.3.1", v1alpha1.PromotionSucceeded, "2024-06-03T09:00:00Z")), apiEnv("x", metav1.ConditionTrue, 0, 0)},
	}
	gates := []*v1alpha1.Gate{
		{Spec: v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{Count: 3}}},
		{Spec: v1alpha1.GateSpec{SecurityVerdict: &v1alpha1.SecurityVerdictGate{}}},
		{Spec: v1alpha1.GateSpec{Soak: &v1alpha1.SoakGate{Environment: "stage", Duration: dur("2h")}}},
		{Spec: v1alpha1.GateSpec{Dependency: &v1alpha1.DependencyGate{Environment: "api-prod"}}},
		freezeGate(weekendFreeze),
	}
	reversed := in
	reversed.Approvals = slices.Clone(in.Approvals)
	slices.Reverse(reversed.Approvals)
	reversed.ScanReports = slices.Clone(in.ScanReports)
	slices.Reverse(reversed.ScanReports)
	reversed.Environments = slices.Clone(in.Environments)
	slices.Reverse(reversed.Environments)
	for _, g := range gates {
		a, b := Evaluate(g, in), Evaluate(g, reversed)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: outcome depends on input order:\n%+v\n%+v", a.Type, a, b)
		}
	}
	// And the tie-breaks are the documented ones: the older approval, then
	// the lower name, counts; of equally fresh reports the lower name counts.
	if got := Evaluate(gates[0], reversed).Approvals; got[0].Name != "x" || !got[0].Counted || got[1].Reason != ReasonApprovalDuplicate {
		t.Errorf("approval tie-break: %+v", got)
	}
	if got := Evaluate(gates[1], reversed); got.Result != v1alpha1.GatePending {
		// api-a (clean) wins the tie over api-b; worker has no report.
		t.Errorf("report tie-break: %+v", got)
	}
}

// Every reason code constant is documented in doc.go, and doc.go documents
// no code that does not exist.
func TestReasonCodesDocumented(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "reasons.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []string
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			v, _ := strconv.Unquote(lit.Value)
			consts = append(consts, v)
		}
		return true
	})
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, line := range strings.Split(string(doc), "\n") {
		if fields := strings.Fields(strings.TrimPrefix(line, "//")); strings.HasPrefix(line, "//\t") && len(fields) > 1 && strings.Contains(fields[0], ".") {
			documented = append(documented, fields[0])
		}
	}
	slices.Sort(consts)
	slices.Sort(documented)
	if len(consts) < 25 || !slices.Equal(consts, documented) {
		t.Errorf("reasons.go defines %q\ndoc.go documents %q", consts, documented)
	}
	for _, c := range consts {
		if c != strings.ToLower(c) || strings.Count(c, ".") != 1 {
			t.Errorf("reason code %q is not lower-case and dotted", c)
		}
	}
}
