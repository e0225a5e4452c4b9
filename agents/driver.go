// Package agents holds the contract between stella-agent and the target
// drivers, and what every driver shares: the desired release, what was
// observed, and the version sticker written on the target.
//
// A driver is idempotent and bounded in time: Observe never changes
// anything; Apply converges the target to a release and may be called again
// after a crash or a failure; Rollback returns the target to a release it ran
// before. Every call takes a context whose deadline the caller sets.
package agents

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Labels the drivers put on what they run, so that what runs says which
// release, component, digest and promotion it is (v1alpha1.LabelPromotion),
// and which Target it belongs to (v1alpha1.LabelTarget). They are labels of
// the runtime (Docker, Compose, ECS, Nomad), which bound neither key nor
// value the way the Kubernetes API does: they carry full names, which is
// how Observe reads the release and promotion back.
const (
	LabelRelease   = "stella-ops.org/release"
	LabelComponent = "stella-ops.org/component"
	LabelDigest    = "stella-ops.org/digest"
	LabelNamespace = "stella-ops.org/namespace"
	// LabelConfig is a digest of everything a container was created from
	// besides its image, so that a changed template is redeployed too.
	LabelConfig = "stella-ops.org/config"
	// LabelSticker holds the version sticker, as in stella.version.json,
	// where the runtime keeps no container of its own to read it from: an
	// ECS task definition's Docker labels, a Nomad job's Meta.
	LabelSticker = "stella-ops.org/sticker"
)

// Driver deploys releases to one kind of target.
type Driver interface {
	// Observe reports what runs on the target, changing nothing.
	Observe(ctx context.Context, target *v1alpha1.Target) (Observed, error)
	// Apply makes the target run desired. It returns nil at once when the
	// target already does; on failure, what ran before keeps running.
	Apply(ctx context.Context, target *v1alpha1.Target, desired Desired) error
	// Rollback makes the target run previous again, a release it ran before.
	Rollback(ctx context.Context, target *v1alpha1.Target, previous Desired) error
}

// SecretReader returns the data of a Secret in a namespace: how drivers
// that the server runs get their credentials.
type SecretReader func(ctx context.Context, namespace, name string) (map[string][]byte, error)

// SecretKey reads one key of a Secret.
func SecretKey(ctx context.Context, read SecretReader, namespace string, ref v1alpha1.SecretKeyReference) ([]byte, error) {
	data, err := read(ctx, namespace, ref.Name)
	if err != nil {
		return nil, err
	}
	value, ok := data[ref.Key]
	if !ok {
		return nil, fmt.Errorf("the Secret %s/%s has no key %q", namespace, ref.Name, ref.Key)
	}
	return value, nil
}

// Labels are the sticker labels of what runs component c of desired on
// target.
func Labels(target *v1alpha1.Target, desired Desired, c v1alpha1.ComponentDigest) map[string]string {
	return map[string]string{
		LabelRelease: desired.Release, LabelComponent: c.Name, LabelDigest: c.Image.Digest(),
		v1alpha1.LabelPromotion: desired.Promotion, v1alpha1.LabelTarget: target.Name, LabelNamespace: target.Namespace,
	}
}

// Desired is a release to run on a target.
type Desired struct {
	Release   string
	Version   string
	Promotion string
	// Components are pinned by digest.
	Components []v1alpha1.ComponentDigest
}

// DesiredOf is what a DeployTask asks for.
func DesiredOf(task *v1alpha1.DeployTask) Desired {
	return Desired{Release: task.Spec.Release, Version: task.Spec.Version, Promotion: task.Spec.Promotion, Components: task.Spec.Components}
}

// Sticker is the version sticker of desired deployed at deployedAt.
func (d Desired) Sticker(deployedAt time.Time) v1alpha1.VersionSticker {
	return v1alpha1.VersionSticker{
		Release: d.Release, Version: d.Version, Promotion: d.Promotion,
		Components: d.Components, DeployedAt: &metav1.Time{Time: deployedAt.UTC().Truncate(time.Second)},
	}
}

// DesiredFromSticker is the release a sticker records.
func DesiredFromSticker(s *v1alpha1.VersionSticker) Desired {
	return Desired{Release: s.Release, Version: s.Version, Promotion: s.Promotion, Components: s.Components}
}

// Observed is what runs on a target.
type Observed struct {
	// Deployed is the sticker of the release Stella deployed last, nil when
	// it deployed nothing yet.
	Deployed *v1alpha1.VersionSticker
	// Components are what runs, by component, in the order of the release
	// deployed last; a component with nothing running is absent.
	Components []ObservedComponent
}

// ObservedComponent is one component as it runs.
type ObservedComponent struct {
	Name string
	// Image is the image reference pinned by the digest that runs; empty
	// when the image has no registry digest (it was built or loaded locally).
	Image v1alpha1.ImageDigestRef
	// Labels are the sticker labels on what runs.
	Release, Promotion string
	Running            bool
	Health             v1alpha1.HealthState
	// Problem says what is wrong, for people; empty when nothing is.
	Problem string
}
