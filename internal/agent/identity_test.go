package agent

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestRenewalDeadlineIsJitteredInsideTheWindow(t *testing.T) {
	notBefore := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		life time.Duration
	}{
		{"ten minutes", 10 * time.Minute},
		{"a day", 24 * time.Hour},
		{"a year", 365 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := &x509.Certificate{NotBefore: notBefore, NotAfter: notBefore.Add(tc.life)}
			earliest, latest := notBefore.Add(tc.life*7/10), notBefore.Add(tc.life*9/10)
			seen := map[time.Time]bool{}
			for range 50 {
				at := renewalDeadline(leaf)
				if at.Before(earliest) || at.After(latest) {
					t.Fatalf("renewal at %s, want between %s (70%%) and %s (90%%)", at, earliest, latest)
				}
				seen[at] = true
			}
			if len(seen) == 1 {
				t.Errorf("50 renewal deadlines were all the same (%v): want them spread over the window", seen)
			}
		})
	}
}
