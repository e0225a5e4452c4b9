package main

import (
	"strings"
	"testing"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func TestRollbackTarget(t *testing.T) {
	env := &v1alpha1.Environment{}
	env.Name = "prod"
	env.Status.CurrentRelease = "r3"
	env.Status.History = []v1alpha1.EnvironmentHistoryEntry{
		{Release: "r3", Phase: v1alpha1.PromotionSucceeded},
		{Release: "r2", Phase: v1alpha1.PromotionFailed},
		{Release: "r1", Phase: v1alpha1.PromotionSucceeded},
		{Release: "r0", Phase: v1alpha1.PromotionSucceeded},
	}
	for _, tc := range []struct{ to, want, wantErr string }{
		{to: "", want: "r1"},
		{to: "r0", want: "r0"},
		{to: "r2", wantErr: "never succeeded"},
		{to: "r9", wantErr: "never succeeded"},
	} {
		got, err := rollbackTarget(env, tc.to)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("rollbackTarget(%q) = %q, %v; want an error containing %q", tc.to, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("rollbackTarget(%q) = %q, %v; want %q", tc.to, got, err, tc.want)
		}
	}
	env.Status.History = env.Status.History[:1]
	if _, err := rollbackTarget(env, ""); err == nil || !strings.Contains(err.Error(), "no earlier successful release") {
		t.Errorf("want an error when nothing came before, got %v", err)
	}
}
