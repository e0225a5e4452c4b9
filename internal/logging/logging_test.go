package logging

import (
	"errors"
	"testing"
)

func TestIsKnownSpurious(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		msg  string
		want bool
	}{
		{"empty metrics manifest", nil, "The manifest file is empty, ignoring.", true},
		{"lease before kube-system exists", errors.New(`namespaces "kube-system" not found`), "Failed to ensure lease exists, will retry", true},
		{"lease failing for another reason", errors.New("etcdserver: request timed out"), "Failed to ensure lease exists, will retry", false},
		{"any other error", errors.New("boom"), "Failed to list *v1.Namespace", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isKnownSpurious(tc.err, tc.msg); got != tc.want {
				t.Errorf("isKnownSpurious(%v, %q) = %v, want %v", tc.err, tc.msg, got, tc.want)
			}
		})
	}
}
