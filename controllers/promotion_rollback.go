package controllers

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// rollBack returns the targets the failed rollout changed to what they ran
// before, and ends the promotion RolledBack once every rollback succeeded
// (Failed when one did not). It runs only after a target failed in an
// environment that sets spec.rollbackOnFailure.
func (r *PromotionReconciler) rollBack(ctx context.Context, run *promotionRun) (outcome, error) {
	if run.failure == "" {
		return next(), nil
	}
	promo, env := run.promo, run.env
	var waitingOn, failed, untouched, done int
	for _, t := range promo.Status.Targets {
		deploy := run.deploys[t.Target]
		if deploy == nil || deploy.Spec.Previous == nil || len(deploy.Spec.Previous.Components) == 0 {
			untouched++ // never changed, or nothing known to go back to
			continue
		}
		rb := run.rollbacks[t.Target]
		switch {
		case rb == nil:
			if err := r.createRollback(ctx, promo, env, deploy); err != nil {
				return outcome{}, err
			}
			run.retry = sooner(run.retry, deployTimeout(env))
			waitingOn++
		case !rb.Status.Phase.IsTerminal():
			waitingOn++
		case rb.Status.Phase == v1alpha1.DeployTaskSucceeded:
			done++
		default:
			failed++
		}
	}
	switch {
	case waitingOn > 0:
		return waiting(v1alpha1.ReasonRollingBack,
			fmt.Sprintf("%s; rolling back: %d of %d target(s) done", run.failure, done, done+waitingOn+failed), run.retry), nil
	case failed > 0:
		return end(v1alpha1.PromotionFailed, v1alpha1.ReasonFailed, fmt.Sprintf("%s; the rollback failed on %d target(s)", run.failure, failed)), nil
	}
	return end(v1alpha1.PromotionRolledBack, v1alpha1.ReasonRolledBack,
		fmt.Sprintf("%s; rolled back %d target(s) to what they ran before, %d had nothing to roll back to", run.failure, done, untouched)), nil
}

func (r *PromotionReconciler) createRollback(ctx context.Context, promo *v1alpha1.Promotion, env *v1alpha1.Environment, deploy *v1alpha1.DeployTask) error {
	prev := deploy.Spec.Previous
	task := &v1alpha1.DeployTask{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: promo.Namespace, Name: boundedName(deploy.Name+"-rollback", deploy.Name+"/rollback"),
			Labels: map[string]string{
				v1alpha1.LabelPromotion: v1alpha1.LabelValue(promo.Name), v1alpha1.LabelTarget: v1alpha1.LabelValue(deploy.Spec.Target),
				v1alpha1.LabelEnvironment: v1alpha1.LabelValue(env.Name),
			},
		},
		Spec: v1alpha1.DeployTaskSpec{
			Promotion: promo.Name, Target: deploy.Spec.Target, Release: prev.Release, Version: prev.Version,
			Components: prev.Components, Action: v1alpha1.DeployActionRollback, Batch: deploy.Spec.Batch,
			Timeout: &metav1.Duration{Duration: deployTimeout(env)},
		},
	}
	if agent, ok := deploy.Labels[v1alpha1.LabelAgent]; ok {
		task.Labels[v1alpha1.LabelAgent] = agent
	}
	return r.createOwnedTask(ctx, promo, task)
}
