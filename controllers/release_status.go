package controllers

import (
	"fmt"
	"strings"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// computeReleaseStatus reports a valid release Ready. The API server has
// already enforced the spec's invariants (digest pins, semver, a primary
// component), so every stored Release is runnable.
func computeReleaseStatus(rel *v1alpha1.Release) {
	names := make([]string, 0, len(rel.Spec.Components))
	for _, c := range rel.Spec.Components {
		names = append(names, c.Name)
	}
	markReady(&rel.Status.Conditions, rel.Generation, fmt.Sprintf("%s pins %d image(s) by digest: %s",
		rel.Spec.Version, len(names), strings.Join(names, ", ")))
	rel.Status.ObservedGeneration = rel.Generation
}
