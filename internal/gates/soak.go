package gates

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// A soak gate wants the release to have run successfully in an upstream
// environment for a while before it goes further. The evidence is that
// environment's status: history entries with phase Succeeded and finishedAt
// say when a release started to run there, and the next Succeeded entry of
// another release says when it stopped. status.currentRelease says whether it
// still runs.
//
// A run counts from the finishedAt of the Succeeded promotion that put the
// release there (a later re-deploy of the same release does not restart the
// clock) to the finishedAt of the Succeeded promotion that replaced it, or to
// Now while it is the current release. Like Kargo's soak time, a release that
// once ran long enough has soaked, even if a newer release replaced it since.
//
//   - soaked long enough, now or in an earlier run: Pass;
//   - the current release there, but not for long enough: Pending with
//     soak.insufficient and RetryAt at the instant it will have soaked;
//   - ran there, but every run was cut short: Fail with soak.interrupted (it
//     cannot soak any more unless it is deployed there again);
//   - never succeeded there: Fail with soak.not-deployed. A promotion should
//     not be created before its release succeeded upstream, and waiting on an
//     upstream promotion nobody asked for would wait forever.
//
// Failed, rolled back and cancelled promotions neither start nor end a run.

// EvaluateSoak checks that the release soaked in g.Environment. The promotion
// reconciler can also evaluate an Environment's spec.requiredSoak with it, by
// passing a SoakGate for each spec.promotesFrom environment.
func EvaluateSoak(g *v1alpha1.SoakGate, in Inputs) Outcome {
	if errs := validateSoak(g, field.NewPath("spec", TypeSoak)); len(errs) > 0 {
		return invalid(TypeSoak, errs)
	}
	rel := releaseName(in)
	if rel == "" {
		return fail(TypeSoak, "no release given", ReasonInputMissing)
	}
	env := findEnvironment(in.Environments, g.Environment)
	if env == nil {
		return fail(TypeSoak, fmt.Sprintf("environment %s does not exist", g.Environment), ReasonSoakEnvironmentNotFound)
	}
	need := g.Duration.Duration

	runStart, longest, everRan := soakRuns(env.Status.History, rel)
	current := env.Status.CurrentRelease == rel

	switch {
	case longest >= need && everRan:
		return pass(TypeSoak, fmt.Sprintf("%s ran in %s for %s (%s required)", rel, g.Environment, longest, need))
	case current && runStart != nil:
		ran := in.Now.Sub(*runStart)
		if ran >= need {
			return pass(TypeSoak, fmt.Sprintf("%s has run in %s for %s (%s required)", rel, g.Environment, ran.Truncate(time.Second), need))
		}
		done := runStart.Add(need)
		return pending(TypeSoak,
			fmt.Sprintf("%s has run in %s for %s of %s; it will have soaked at %s", rel, g.Environment, max(ran, 0).Truncate(time.Second), need, formatTime(done, time.UTC)),
			timePtr(done), ReasonSoakInsufficient)
	case current:
		if need == 0 {
			return pass(TypeSoak, fmt.Sprintf("%s runs in %s", rel, g.Environment))
		}
		// The environment says it runs there, but no dated Succeeded entry
		// says since when: wait for the environment's history to catch up.
		return pending(TypeSoak,
			fmt.Sprintf("%s runs in %s, but its history does not say since when", rel, g.Environment),
			nil, ReasonSoakInsufficient)
	case everRan:
		return fail(TypeSoak,
			fmt.Sprintf("%s ran in %s for at most %s before it was replaced; %s is required", rel, g.Environment, longest, need),
			ReasonSoakInterrupted)
	}
	return fail(TypeSoak, fmt.Sprintf("%s never succeeded in %s", rel, g.Environment), ReasonSoakNotDeployed)
}

// soakRuns walks an environment's history in time order. It returns the start
// of the run of rel that is still open at the end of the history (nil if
// none), the longest finished run, and whether rel ever succeeded there.
func soakRuns(history []v1alpha1.EnvironmentHistoryEntry, rel string) (openRun *time.Time, longest time.Duration, everRan bool) {
	type event struct {
		at    time.Time
		order int // history is newest first: a higher index is older
		ours  bool
	}
	var events []event
	for i, h := range history {
		if h.Phase != v1alpha1.PromotionSucceeded || h.FinishedAt == nil {
			continue
		}
		events = append(events, event{at: h.FinishedAt.Time, order: -i, ours: h.Release == rel})
	}
	slices.SortStableFunc(events, func(a, b event) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.order, b.order))
	})
	for _, e := range events {
		switch {
		case e.ours:
			everRan = true
			if openRun == nil {
				openRun = timePtr(e.at)
			}
		case openRun != nil:
			longest = max(longest, e.at.Sub(*openRun))
			openRun = nil
		}
	}
	return openRun, longest, everRan
}

func validateSoak(g *v1alpha1.SoakGate, path *field.Path) field.ErrorList {
	if g == nil {
		return field.ErrorList{field.Required(path, "set the soak gate")}
	}
	var errs field.ErrorList
	if g.Environment == "" {
		errs = append(errs, field.Required(path.Child("environment"), "name the upstream environment the release must have run in"))
	}
	if g.Duration.Duration < 0 {
		errs = append(errs, field.Invalid(path.Child("duration"), g.Duration.Duration.String(), "must not be negative, such as 24h"))
	}
	return errs
}
