package main

import (
	"errors"
	"testing"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// A CI step gates on stellactl's exit status, so every verdict that is not
// a clean pass must end with its own non-zero code.
func TestVerdictsEndWithTheirExitCodes(t *testing.T) {
	critical, err := failOnSeverity("HIGH")
	if err != nil || critical != v1alpha1.SeverityHigh {
		t.Fatalf("--fail-on HIGH read as %q, %v", critical, err)
	}
	if _, err := failOnSeverity("severe"); err == nil {
		t.Fatal("--fail-on severe was accepted")
	}
	for _, tc := range []struct {
		name string
		err  error
		code int // 0: no error
	}{
		{"gates allow", gatesVerdictExit(v1alpha1.DecisionAllow, "r", "e"), 0},
		{"gates deny", gatesVerdictExit(v1alpha1.DecisionDeny, "r", "e"), exitGatesDeny},
		{"gates pending", gatesVerdictExit(v1alpha1.DecisionPending, "r", "e"), exitGatesPending},
		{"gates unknown result fails closed", gatesVerdictExit("maybe", "r", "e"), exitGatesDeny},
		{"no --fail-on", findingsExit(v1alpha1.SeverityCritical, ""), 0},
		{"below the threshold", findingsExit(v1alpha1.SeverityMedium, v1alpha1.SeverityHigh), 0},
		{"no findings", findingsExit(v1alpha1.SeverityNone, v1alpha1.SeverityLow), 0},
		{"at the threshold", findingsExit(v1alpha1.SeverityHigh, v1alpha1.SeverityHigh), exitScanFindings},
		{"above the threshold", findingsExit(v1alpha1.SeverityCritical, v1alpha1.SeverityHigh), exitScanFindings},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var exit *exitError
			switch {
			case tc.code == 0 && tc.err != nil:
				t.Fatalf("got %v, want success", tc.err)
			case tc.code != 0 && (!errors.As(tc.err, &exit) || exit.code != tc.code):
				t.Fatalf("got %v, want exit %d", tc.err, tc.code)
			}
		})
	}
}
