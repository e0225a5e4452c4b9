package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// defaultDeployTimeout applies when an environment sets none.
const defaultDeployTimeout = 15 * time.Minute

// planRollout fixes which target goes in which batch, once, so that a
// restart resumes the same rollout. A promotion into an environment that
// selects no targets is held until one appears (with a reason in Ready),
// and fails once the deploy timeout passed since its decision; it succeeds
// at once only when the environment sets spec.allowEmpty.
func (r *PromotionReconciler) planRollout(ctx context.Context, run *promotionRun) (outcome, error) {
	promo, env := run.promo, run.env
	if len(promo.Status.Targets) > 0 {
		return next(), nil
	}
	targets, err := selectedTargets(ctx, r.Client, env)
	if err != nil {
		return outcome{}, err
	}
	if len(targets) > v1alpha1.MaxRolloutTargets {
		return stall(v1alpha1.ReasonTooManyTargets, fmt.Sprintf(
			"spec.targetSelector: environment %s selects %d targets, more than the %d one promotion rolls out to; narrow the environment's spec.targetSelector or split it into several environments, and the promotion goes on",
			env.Name, len(targets), v1alpha1.MaxRolloutTargets)), nil
	}
	if len(targets) > 0 {
		promo.Status.Targets = plan(promo.Name, targets, env.Spec.Strategy)
		promo.Status.Phase = v1alpha1.PromotionDeploying
		return next(), nil
	}
	timeout, deadline := deployTimeout(env), noTargetsDeadline(promo, env)
	switch {
	case env.Spec.AllowEmpty:
		return end(v1alpha1.PromotionSucceeded, v1alpha1.ReasonSucceeded,
			fmt.Sprintf("release %s is current in %s, which selects no targets (spec.allowEmpty)", run.rel.Name, env.Name)), nil
	case !r.now().Before(deadline):
		return end(v1alpha1.PromotionFailed, v1alpha1.ReasonFailed, fmt.Sprintf(
			"environment %s selected no Targets within %s (spec.deployTimeout): create Targets that its spec.targetSelector selects, or set spec.allowEmpty if it is meant to be empty",
			env.Name, timeout)), nil
	}
	// A new Target wakes it; the deadline, if none comes.
	return waiting(v1alpha1.ReasonNoTargets, fmt.Sprintf(
		"waiting for a Target: environment %s selects none (spec.targetSelector %s); the promotion goes on once one exists, and fails at %s (spec.deployTimeout %s) otherwise; set spec.allowEmpty on the environment if it is meant to be empty",
		env.Name, metav1.FormatLabelSelector(env.Spec.TargetSelector), deadline.UTC().Format(time.RFC3339), timeout),
		deadline.Sub(r.now())+time.Second), nil
}

// recordDecision stores the decision and the rollout plan before anything
// is deployed, so that a crash in between can never lead to deciding again
// with tasks already out. It writes only when the plan is new.
func (r *PromotionReconciler) recordDecision(ctx context.Context, run *promotionRun) (outcome, error) {
	if len(run.stored.Status.Targets) > 0 {
		return next(), nil
	}
	// A plan is fixed once: a run working from a read older than a stored
	// plan must not replace it.
	run.asRead = true
	summarize(run.promo, rolloutProgress(run.promo, nil, 0), nil, r.now())
	if err := r.write(ctx, run); err != nil {
		return outcome{}, err
	}
	return next(), nil
}

// noTargetsDeadline is when a promotion into an environment that selects
// no targets stops waiting for one: the deploy timeout after its decision.
func noTargetsDeadline(promo *v1alpha1.Promotion, env *v1alpha1.Environment) time.Time {
	since := promo.CreationTimestamp.Time
	switch {
	case promo.Status.Decision != nil && promo.Status.Decision.DecidedAt != nil:
		since = promo.Status.Decision.DecidedAt.Time
	case promo.Status.StartedAt != nil:
		since = promo.Status.StartedAt.Time
	}
	return since.Add(deployTimeout(env))
}

// plan assigns each target, in name order, to a batch of the strategy.
func plan(promotion string, targets []v1alpha1.Target, s *v1alpha1.DeployStrategy) []v1alpha1.TargetProgress {
	batches := batchesOf(len(targets), s)
	out := make([]v1alpha1.TargetProgress, len(targets))
	for i, t := range targets {
		out[i] = v1alpha1.TargetProgress{Target: t.Name, Batch: int32(batches[i]), DeployTask: taskName(promotion, t.Name), Phase: v1alpha1.DeployTaskPending}
	}
	return out
}

// batchesOf returns the batch of each of n targets: one batch for
// AllAtOnce, batches of maxUnavailable for Rolling, and for Canary batches
// that bring the share of updated targets up to each step's percentage.
func batchesOf(n int, s *v1alpha1.DeployStrategy) []int {
	out := make([]int, n)
	if s == nil {
		return out
	}
	switch s.Type {
	case v1alpha1.StrategyRolling:
		size := 1
		if s.Rolling != nil && s.Rolling.MaxUnavailable != nil {
			v, err := intstr.GetScaledValueFromIntOrPercent(s.Rolling.MaxUnavailable, n, false)
			if err == nil {
				size = max(1, v)
			}
		}
		for i := range out {
			out[i] = i / size
		}
	case v1alpha1.StrategyCanary:
		if s.Canary == nil {
			return out
		}
		batch, covered := 0, 0
		for _, step := range s.Canary.Steps {
			upTo := min(n, int(math.Ceil(float64(n)*float64(step.Percent)/100)))
			if upTo <= covered {
				continue
			}
			for i := covered; i < upTo; i++ {
				out[i] = batch
			}
			covered, batch = upTo, batch+1
		}
		for i := covered; i < n; i++ {
			out[i] = batch
		}
	}
	return out
}

// currentBatch is the lowest batch with a target not yet succeeded (-1 when
// all have), and how many batches there are.
func currentBatch(targets []v1alpha1.TargetProgress) (int32, int32) {
	current, last := int32(-1), int32(0)
	for _, t := range targets {
		last = max(last, t.Batch)
		if t.Phase != v1alpha1.DeployTaskSucceeded && (current < 0 || t.Batch < current) {
			current = t.Batch
		}
	}
	return current, last + 1
}

// taskName is the DeployTask of promotion and target.
func taskName(promotion, target string) string {
	return boundedName(promotion+"-"+target, promotion+"/"+target)
}

// boundedName is name when it fits an object name (253 characters), or
// else its start suffixed with a hash of key, which must identify it.
func boundedName(name, key string) string {
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(key))
	return name[:240] + "-" + hex.EncodeToString(sum[:])[:12]
}

func deployTimeout(env *v1alpha1.Environment) time.Duration {
	if env.Spec.DeployTimeout.Duration > 0 {
		return env.Spec.DeployTimeout.Duration
	}
	return defaultDeployTimeout
}
