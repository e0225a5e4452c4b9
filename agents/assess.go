package agents

import (
	"fmt"
	"strings"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Assessment is what Target status says about an observation.
type Assessment struct {
	Drift  v1alpha1.DriftState
	Health v1alpha1.HealthState
	// Running is the sticker of what really runs: the deployed release's
	// names with the digests seen running.
	Running *v1alpha1.VersionSticker
	// Message explains drift and poor health, for people.
	Message string
}

// Assess compares what runs with what was deployed. A target runs what was
// deployed when every deployed component runs its digest, whatever its
// health; health is judged only on what runs.
func Assess(o Observed) Assessment {
	if o.Deployed == nil {
		if len(o.Components) == 0 {
			return Assessment{Drift: v1alpha1.DriftInSync, Health: v1alpha1.HealthUnknown, Message: "nothing deployed yet"}
		}
		return Assessment{Drift: v1alpha1.DriftDrifted, Health: health(o.Components, nil),
			Message: "containers of this target run, but Stella has no record of deploying them (no version sticker)"}
	}
	running := *o.Deployed.DeepCopy()
	running.Components = nil
	byName := map[string]ObservedComponent{}
	for _, c := range o.Components {
		byName[c.Name] = c
	}
	var drift []string
	for _, want := range o.Deployed.Components {
		got, ok := byName[want.Name]
		switch {
		case !ok:
			drift = append(drift, fmt.Sprintf("component %s does not run", want.Name))
			continue
		case got.Image == "":
			drift = append(drift, fmt.Sprintf("component %s runs an image with no registry digest, not %s", want.Name, want.Image.Digest()))
		case got.Image.Digest() != want.Image.Digest():
			drift = append(drift, fmt.Sprintf("component %s runs %s, not %s", want.Name, got.Image.Digest(), want.Image.Digest()))
		}
		if got.Image != "" {
			running.Components = append(running.Components, v1alpha1.ComponentDigest{Name: want.Name, Image: got.Image})
		}
	}
	a := Assessment{Drift: v1alpha1.DriftInSync, Health: health(o.Components, o.Deployed), Running: &running}
	var problems []string
	if len(drift) > 0 {
		a.Drift = v1alpha1.DriftDrifted
		problems = append(problems, drift...)
	}
	for _, c := range o.Components {
		if c.Problem != "" {
			problems = append(problems, fmt.Sprintf("component %s: %s", c.Name, c.Problem))
		}
	}
	a.Message = strings.Join(problems, "; ")
	return a
}

// health is Healthy when every deployed component runs healthy, Degraded
// when one does not, and Unknown while a health check has not answered.
func health(components []ObservedComponent, deployed *v1alpha1.VersionSticker) v1alpha1.HealthState {
	if deployed != nil && len(components) < len(deployed.Components) {
		return v1alpha1.HealthDegraded
	}
	result := v1alpha1.HealthHealthy
	for _, c := range components {
		switch {
		case !c.Running || c.Health == v1alpha1.HealthDegraded:
			return v1alpha1.HealthDegraded
		case c.Health == v1alpha1.HealthUnknown:
			result = v1alpha1.HealthUnknown
		}
	}
	return result
}
