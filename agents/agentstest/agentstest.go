// Package agentstest holds what the drivers' tests share: the releases of
// the test app they deploy and a check of what runs.
package agentstest

import (
	"context"
	"strings"
	"testing"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Release is the release shop-<version> of the test app's image refs[version],
// as component api.
func Release(refs map[string]string, version string) agents.Desired {
	return agents.Desired{
		Release: "shop-" + version, Version: version, Promotion: "shop-" + version + "-to-prod",
		Components: []v1alpha1.ComponentDigest{{Name: "api", Image: v1alpha1.ImageDigestRef(refs[version])}},
	}
}

// Assess observes the target through the driver and assesses what runs.
func Assess(t *testing.T, d agents.Driver, target *v1alpha1.Target) agents.Assessment {
	t.Helper()
	o, err := d.Observe(context.Background(), target)
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	return agents.Assess(o)
}

// DigestOf is the digest of an image reference pinned by digest.
func DigestOf(ref string) string { return ref[strings.LastIndexByte(ref, '@')+1:] }
