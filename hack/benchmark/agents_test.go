package main

import (
	"strings"
	"testing"
)

// TestEnvironmentOfSplitsEvenly checks that the agents' Targets are split
// into contiguous shares that differ by at most one Target, and that every
// Environment gets some.
func TestEnvironmentOfSplitsEvenly(t *testing.T) {
	for _, tc := range []struct{ agents, environments int }{
		{1000, 4}, {50, 4}, {7, 3}, {5, 5}, {1, 1},
	} {
		b := &agentsBench{aopts: agentOptions{agents: tc.agents, environments: tc.environments}}
		shares := make([]int, tc.environments)
		last := 0
		for i := range tc.agents {
			e := b.environmentOf(i)
			if e < last || e >= tc.environments {
				t.Fatalf("%d agents, %d environments: agent %d in environment %d after %d", tc.agents, tc.environments, i, e, last)
			}
			last = e
			shares[e]++
		}
		lo, hi := tc.agents, 0
		for _, s := range shares {
			lo, hi = min(lo, s), max(hi, s)
		}
		if lo == 0 || hi-lo > 1 {
			t.Errorf("%d agents, %d environments: shares %v, want all within one of each other and none empty", tc.agents, tc.environments, shares)
		}
	}
}

// TestJoinTokenIsABootstrapToken checks the token's form: <6>.<16> of
// [a-z0-9], as the API server's bootstrap token authenticator reads it, in
// the Secret it looks it up by.
func TestJoinTokenIsABootstrapToken(t *testing.T) {
	token, secret := joinToken("agent-00001")
	id, rest, ok := strings.Cut(token, ".")
	if !ok || len(id) != 6 || len(rest) != 16 {
		t.Fatalf("token %q: want 6 characters, a dot and 16", token)
	}
	for _, r := range id + rest {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			t.Fatalf("token %q: %q is not of [a-z0-9]", token, r)
		}
	}
	if secret.Name != "bootstrap-token-"+id || secret.StringData["token-id"] != id || secret.StringData["token-secret"] != rest {
		t.Errorf("secret %s with token-id %q, token-secret %q does not hold token %q", secret.Name, secret.StringData["token-id"], secret.StringData["token-secret"], token)
	}
}
