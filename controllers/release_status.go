package controllers

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// computeReleaseStatus records the release's creation revision, reports a
// valid release Ready and lists the environments it currently runs in and
// the scan report of each component's image (reports by image digest). The
// API server has already enforced the spec's invariants (digest pins,
// semver, a primary component), so every stored Release is runnable.
func computeReleaseStatus(rel *v1alpha1.Release, envs []v1alpha1.Environment, reports map[string]*v1alpha1.ScanReport) {
	if rel.Status.ObservedGeneration == 0 && rel.Status.CreationRevision == "" {
		rel.Status.CreationRevision = rel.ResourceVersion // the first write records it (releaseOrder)
	}
	rel.Status.Deployments = nil
	for _, env := range envs {
		if env.Status.CurrentRelease != rel.Name {
			continue
		}
		d := v1alpha1.ReleaseDeployment{Environment: env.Name}
		for _, h := range env.Status.History {
			if h.Release == rel.Name && h.Phase == v1alpha1.PromotionSucceeded {
				d.Promotion, d.Since = h.Promotion, h.FinishedAt
				break
			}
		}
		rel.Status.Deployments = append(rel.Status.Deployments, d)
	}
	slices.SortFunc(rel.Status.Deployments, func(a, b v1alpha1.ReleaseDeployment) int { return strings.Compare(a.Environment, b.Environment) })

	rel.Status.Components = nil
	names := make([]string, 0, len(rel.Spec.Components))
	for _, c := range rel.Spec.Components {
		names = append(names, c.Name)
		if report := reports[c.Image.Digest()]; report != nil {
			rel.Status.Components = append(rel.Status.Components, v1alpha1.ReleaseComponentStatus{
				Name: c.Name, ScanReport: report.Name, MaxSeverity: report.Status.MaxSeverity})
		}
	}
	message := fmt.Sprintf("%s pins %d image(s) by digest: %s", rel.Spec.Version, len(names), strings.Join(names, ", "))
	if len(rel.Status.Deployments) > 0 {
		where := make([]string, 0, len(rel.Status.Deployments))
		for _, d := range rel.Status.Deployments {
			where = append(where, d.Environment)
		}
		message += "; runs in " + strings.Join(where, ", ")
	}
	markReady(&rel.Status.Conditions, rel.Generation, message)
	rel.Status.ObservedGeneration = rel.Generation
}
