package main

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// A pipeline that runs promote --wait branches on its exit status: each way
// a promotion ends has its own code, and none is taken by another command.
func TestPromotionEndsWithItsExitCode(t *testing.T) {
	for _, tc := range []struct {
		phase v1alpha1.PromotionPhase
		code  int // 0: no error
	}{
		{v1alpha1.PromotionSucceeded, 0},
		{v1alpha1.PromotionFailed, 11},
		{v1alpha1.PromotionRejected, 12},
		{v1alpha1.PromotionRolledBack, 13},
		{v1alpha1.PromotionCancelled, 14},
		{"Exploded", 1}, // a phase from a newer server
	} {
		t.Run(string(tc.phase), func(t *testing.T) {
			promo := &v1alpha1.Promotion{Status: v1alpha1.PromotionStatus{Phase: tc.phase}}
			promo.Name = "shop-1-to-prod-x"
			err := promotionExit(promo)
			var exit *exitError
			switch {
			case tc.code == 0 && err != nil:
				t.Fatalf("got %v, want success", err)
			case tc.code == 1 && (err == nil || errors.As(err, &exit)):
				t.Fatalf("got %v, want a plain error (exit 1)", err)
			case tc.code > 1 && (!errors.As(err, &exit) || exit.code != tc.code):
				t.Fatalf("got %v, want exit %d", err, tc.code)
			}
			if tc.code != 0 && !strings.Contains(err.Error(), string(tc.phase)) {
				t.Errorf("%q does not say how the promotion ended", err)
			}
		})
	}
}

func TestEveryTerminalPhaseHasItsOwnExitCode(t *testing.T) {
	phases := []v1alpha1.PromotionPhase{
		v1alpha1.PromotionPending, v1alpha1.PromotionEvaluating, v1alpha1.PromotionAwaitingApproval, v1alpha1.PromotionApproved,
		v1alpha1.PromotionDeploying, v1alpha1.PromotionVerifying, v1alpha1.PromotionSucceeded, v1alpha1.PromotionRejected,
		v1alpha1.PromotionFailed, v1alpha1.PromotionRolledBack, v1alpha1.PromotionCancelled,
	}
	mapped := map[v1alpha1.PromotionPhase]bool{}
	for _, end := range promotionEnds {
		mapped[end.phase] = true
		if !end.phase.IsTerminal() {
			t.Errorf("%s has an exit code but is not terminal", end.phase)
		}
	}
	for _, p := range phases {
		if p.IsTerminal() && !mapped[p] {
			t.Errorf("terminal phase %s has no exit code", p)
		}
	}
	// The codes of every other command: evidence verify, replay, gates
	// check, scan.
	used := map[int]string{
		exitMalformed: "malformed", exitBadSignature: "bad signature", exitDigestMismatch: "digest mismatch",
		exitBadProof: "bad proof", exitUnknownKey: "unknown key", exitReplayMismatch: "replay mismatch",
		exitGatesDeny: "gates deny", exitGatesPending: "gates pending", exitScanFindings: "scan findings",
	}
	codes := []int{exitPromotionTimeout}
	for _, end := range promotionEnds {
		if end.code != 0 {
			codes = append(codes, end.code)
		}
	}
	for _, code := range codes {
		if code <= 1 {
			t.Errorf("exit %d is success or the generic error", code)
		}
		if other, taken := used[code]; taken {
			t.Errorf("exit %d is used twice: %s and a promotion's end", code, other)
		}
		used[code] = "promotion"
	}
	help := promoteExitCodesHelp()
	for _, code := range codes {
		if !strings.Contains(help, " "+strconv.Itoa(code)+"  ") {
			t.Errorf("the help does not document exit %d:\n%s", code, help)
		}
	}
}
