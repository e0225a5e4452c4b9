package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// roles are the --role values of create-user, in the order of the power they
// grant; each maps to a ClusterRole that `stella serve` installs
// (config/rbac/roles.yaml).
var roles = []string{"viewer", "auditor", "releaser", "approver", "security", "admin", "agent"}

// minCertTTL is the shortest lifetime the CertificateSigningRequest API
// accepts (spec.expirationSeconds >= 600).
const minCertTTL = 10 * time.Minute

func clusterRoleFor(role string) (string, error) {
	if !slices.Contains(roles, role) {
		return "", fmt.Errorf("unknown role %q: --role must be one of %s", role, strings.Join(roles, ", "))
	}
	return "stella-" + role, nil
}

// bindingName is the same for every run with the same user and role, which
// is what makes create-user safe to repeat.
func bindingName(role, user string) string {
	return "stella-" + role + "-" + user
}

// validateUserName keeps user names usable inside object names (the binding,
// the CertificateSigningRequest), and out of the system: prefix, which
// Kubernetes reserves for its own identities.
func validateUserName(user string) error {
	if user == "" {
		return fmt.Errorf("a user name is required: stellactl auth create-user NAME --role ROLE")
	}
	if len(validation.IsDNS1123Subdomain(user)) > 0 {
		return fmt.Errorf("invalid user name %q: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", user)
	}
	// The longest object name made from it must fit as well.
	if n := len(bindingName(longestRole(), user)); n > validation.DNS1123SubdomainMaxLength {
		return fmt.Errorf("user name %q is too long: at most %d characters", user, len(user)-(n-validation.DNS1123SubdomainMaxLength))
	}
	return nil
}

func longestRole() string {
	longest := ""
	for _, r := range roles {
		if len(r) > len(longest) {
			longest = r
		}
	}
	return longest
}

func validateTTL(ttl time.Duration) error {
	switch {
	case ttl < minCertTTL:
		return fmt.Errorf("--ttl %s is too short: the certificate API needs at least %s", ttl, minCertTTL)
	case ttl.Seconds() > math.MaxInt32:
		return fmt.Errorf("--ttl %s is too long: at most %s", ttl, time.Duration(math.MaxInt32)*time.Second)
	}
	return nil
}

// normalizeGroups drops empty and repeated groups, keeping the given order.
func normalizeGroups(groups []string) ([]string, error) {
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		g = strings.TrimSpace(g)
		if g == "" || slices.Contains(out, g) {
			continue
		}
		if strings.HasPrefix(g, "system:") {
			return nil, fmt.Errorf("group %q: groups starting with system: are reserved for the server's own identities", g)
		}
		out = append(out, g)
	}
	return out, nil
}
