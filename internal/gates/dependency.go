package gates

import (
	"fmt"
	"strings"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// A dependency gate waits for another environment to be healthy on a release:
// "promote the frontend to prod only once the API environment runs this
// release and is healthy". The required release is spec.dependency.release, or
// the release being promoted when that is empty.
//
// Deployed. Without a component, the environment's status.currentRelease must
// be the required release. With a component, only that component matters: the
// environment must run a release whose component of that name has the same
// image digest as the required release's (currentRelease being the required
// release is the common case; another release that ships the same digest also
// satisfies it). Looking at another release needs it in Inputs.Releases.
//
// Healthy. The environment's Ready condition is True and none of its targets
// is drifted or unknown (status.targets).
//
// Not deployed or not healthy yet is Pending without RetryAt: the other
// environment's status changes through the caller's watch. Configuration that
// can never be satisfied (the environment, the named release or the component
// does not exist) fails.

// EvaluateDependency checks that g.Environment is healthy on the required
// release.
func EvaluateDependency(g *v1alpha1.DependencyGate, in Inputs) Outcome {
	if errs := validateDependency(g, field.NewPath("spec", TypeDependency)); len(errs) > 0 {
		return invalid(TypeDependency, errs)
	}
	want := g.Release
	if want == "" {
		want = releaseName(in)
	}
	if want == "" {
		return fail(TypeDependency, "no release given", ReasonInputMissing)
	}
	env := findEnvironment(in.Environments, g.Environment)
	if env == nil {
		return fail(TypeDependency, fmt.Sprintf("environment %s does not exist", g.Environment), ReasonDependencyEnvironmentNotFound)
	}
	current := env.Status.CurrentRelease

	var codes, problems []string
	if g.Component == "" {
		if current != want {
			codes = append(codes, ReasonDependencyNotDeployed)
			problems = append(problems, fmt.Sprintf("%s runs %s, not %s", g.Environment, displayRelease(current), want))
		}
	} else {
		wantRel := findRelease(in, want)
		if wantRel == nil {
			return fail(TypeDependency, fmt.Sprintf("release %s is not known", want), ReasonDependencyReleaseNotFound)
		}
		wantImage, ok := componentImage(wantRel, g.Component)
		if !ok {
			return fail(TypeDependency, fmt.Sprintf("release %s has no component %s", want, g.Component), ReasonDependencyComponentNotFound)
		}
		if current != want {
			var curImage v1alpha1.ImageDigestRef
			var found bool
			if curRel := findRelease(in, current); curRel != nil {
				curImage, found = componentImage(curRel, g.Component)
			}
			if !found || curImage.Digest() != wantImage.Digest() {
				codes = append(codes, ReasonDependencyNotDeployed)
				problems = append(problems, fmt.Sprintf("%s runs %s, whose component %s is not %s", g.Environment, displayRelease(current), g.Component, wantImage.Digest()))
			}
		}
	}
	if !apimeta.IsStatusConditionTrue(env.Status.Conditions, v1alpha1.ConditionReady) {
		codes = append(codes, ReasonDependencyNotHealthy)
		msg := g.Environment + " is not Ready"
		if c := apimeta.FindStatusCondition(env.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Message != "" {
			msg += ": " + Truncate(c.Message, 200)
		}
		problems = append(problems, msg)
	}
	if n := env.Status.Targets.Drifted; n > 0 {
		codes = append(codes, ReasonDependencyDrifted)
		problems = append(problems, fmt.Sprintf("%d target(s) of %s drifted", n, g.Environment))
	}
	if n := env.Status.Targets.Unknown; n > 0 {
		codes = append(codes, ReasonDependencyTargetsUnknown)
		problems = append(problems, fmt.Sprintf("%d target(s) of %s are unknown", n, g.Environment))
	}
	if len(codes) > 0 {
		return pending(TypeDependency, strings.Join(problems, "; "), nil, codes...)
	}
	what := want
	if g.Component != "" {
		what = fmt.Sprintf("component %s of %s", g.Component, want)
	}
	return pass(TypeDependency, fmt.Sprintf("%s is healthy on %s", g.Environment, what))
}

func validateDependency(g *v1alpha1.DependencyGate, path *field.Path) field.ErrorList {
	if g == nil {
		return field.ErrorList{field.Required(path, "set the dependency gate")}
	}
	if g.Environment == "" {
		return field.ErrorList{field.Required(path.Child("environment"), "name the environment that must be healthy")}
	}
	return nil
}

func componentImage(r *v1alpha1.Release, name string) (v1alpha1.ImageDigestRef, bool) {
	for _, c := range r.Spec.Components {
		if c.Name == name {
			return c.Image, true
		}
	}
	return "", false
}

func displayRelease(name string) string {
	if name == "" {
		return "no release"
	}
	return name
}
