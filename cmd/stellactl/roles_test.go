package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestClusterRoleFor(t *testing.T) {
	tests := []struct {
		role    string
		want    string
		wantErr bool
	}{
		{role: "viewer", want: "stella-viewer"},
		{role: "releaser", want: "stella-releaser"},
		{role: "approver", want: "stella-approver"},
		{role: "admin", want: "stella-admin"},
		{role: "agent", want: "stella-agent"},
		{role: "", wantErr: true},
		{role: "Releaser", wantErr: true},
		{role: "stella-admin", wantErr: true},
		{role: "cluster-admin", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			got, err := clusterRoleFor(tt.role)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("clusterRoleFor(%q) = %q, want an error", tt.role, got)
				}
				// The message must tell the user what to type instead.
				for _, r := range roles {
					if !strings.Contains(err.Error(), r) {
						t.Errorf("error %q does not list role %q", err, r)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("clusterRoleFor(%q) = (%q, %v), want %q", tt.role, got, err, tt.want)
			}
		})
	}
}

func TestValidateUserName(t *testing.T) {
	tests := []struct {
		user    string
		wantErr bool
	}{
		{user: "alice"},
		{user: "ci-bot.shop"},
		{user: "a1"},
		{user: "", wantErr: true},
		{user: "Alice", wantErr: true},
		{user: "system:admin", wantErr: true},
		{user: "alice@example.com", wantErr: true},
		{user: "-alice", wantErr: true},
		{user: strings.Repeat("a", 250), wantErr: true}, // the binding name would exceed 253
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			err := validateUserName(tt.user)
			if (err != nil) != tt.wantErr {
				t.Errorf("validateUserName(%q) = %v, wantErr %v", tt.user, err, tt.wantErr)
			}
		})
	}
}

func TestValidateTTL(t *testing.T) {
	tests := []struct {
		ttl     time.Duration
		wantErr bool
	}{
		{ttl: 8760 * time.Hour},
		{ttl: 10 * time.Minute},
		{ttl: 24 * time.Hour},
		{ttl: 9 * time.Minute, wantErr: true},
		{ttl: 0, wantErr: true},
		{ttl: -time.Hour, wantErr: true},
		{ttl: 100 * 8760 * time.Hour, wantErr: true}, // does not fit expirationSeconds (int32)
	}
	for _, tt := range tests {
		t.Run(tt.ttl.String(), func(t *testing.T) {
			err := validateTTL(tt.ttl)
			if (err != nil) != tt.wantErr {
				t.Errorf("validateTTL(%s) = %v, wantErr %v", tt.ttl, err, tt.wantErr)
			}
		})
	}
}

func TestNormalizeGroups(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr bool
	}{
		{name: "none", in: nil, want: []string{}},
		{name: "kept in order", in: []string{"qa", "dev"}, want: []string{"qa", "dev"}},
		{name: "blanks and repeats dropped", in: []string{" qa", "", "dev", "qa "}, want: []string{"qa", "dev"}},
		{name: "system groups refused", in: []string{"qa", "system:masters"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := normalizeGroups(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("normalizeGroups(%q) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("normalizeGroups(%q) = (%q, %v), want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestBindingDescribe(t *testing.T) {
	tests := []struct {
		b    binding
		want string
	}{
		{b: binding{User: "alice", Role: "releaser", Namespace: "shop"}, want: "RoleBinding stella-releaser-alice in namespace shop"},
		{b: binding{User: "bob", Role: "approver"}, want: "ClusterRoleBinding stella-approver-bob"},
	}
	for _, tt := range tests {
		if got := tt.b.describe(); got != tt.want {
			t.Errorf("describe() = %q, want %q", got, tt.want)
		}
	}
}
