package gates

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// ts parses an RFC 3339 instant or fails the test binary.
func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func mts(s string) *metav1.Time {
	t := metav1.NewTime(ts(s))
	return &t
}

func dur(s string) metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return metav1.Duration{Duration: d}
}

func ptr[T any](v T) *T { return &v }

// want is the part of an Outcome a table row asserts on. RetryAt "" means
// "must be nil".
type want struct {
	result  v1alpha1.GateResult
	codes   []string
	retryAt string
}

// check compares an outcome with what a row expects, exactly.
func check(t *testing.T, got Outcome, w want) {
	t.Helper()
	if got.Result != w.result {
		t.Errorf("result = %s, want %s (message: %s)", got.Result, w.result, got.Message)
	}
	if !slices.Equal(got.ReasonCodes, w.codes) {
		t.Errorf("reason codes = %q, want %q (message: %s)", got.ReasonCodes, w.codes, got.Message)
	}
	switch {
	case w.retryAt == "" && got.RetryAt != nil:
		t.Errorf("retryAt = %s, want none", got.RetryAt.UTC().Format(time.RFC3339))
	case w.retryAt != "" && got.RetryAt == nil:
		t.Errorf("retryAt = none, want %s", w.retryAt)
	case w.retryAt != "" && !got.RetryAt.Equal(ts(w.retryAt)):
		t.Errorf("retryAt = %s, want %s", got.RetryAt.UTC().Format(time.RFC3339), w.retryAt)
	}
	if got.Message == "" {
		t.Errorf("message is empty")
	}
}

func codes(c ...string) []string { return c }

func timeMinutes(n int) time.Duration { return time.Duration(n) * time.Minute }
