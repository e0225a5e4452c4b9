package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/gates"
)

// deploy rolls the release out batch by batch, as planned: it times out
// the tasks whose agents stayed silent, takes in the tasks' results, and
// creates the current batch's tasks. A failed target stops the rollout:
// the promotion fails, or the rollback step takes over. DeployTasks have
// names derived from the promotion and the target, so creating one twice
// is harmless.
func (r *PromotionReconciler) deploy(ctx context.Context, run *promotionRun) (outcome, error) {
	promo, env := run.promo, run.env
	if err := r.loadTasks(ctx, run); err != nil {
		return outcome{}, err
	}
	for i := range promo.Status.Targets {
		if t := run.deploys[promo.Status.Targets[i].Target]; t != nil {
			// A task nobody has reported on yet is as planned: Pending.
			if t.Status.Phase != "" {
				promo.Status.Targets[i].Phase = t.Status.Phase
			}
			promo.Status.Targets[i].Message = gates.Truncate(t.Status.Message, 1024)
		}
	}
	if failed := firstFailed(promo.Status.Targets); failed != nil {
		cause := fmt.Sprintf("target %s: %s %s; the rollout stopped", failed.Target, failed.Phase, failed.Message)
		if !env.Spec.RollbackOnFailure {
			return end(v1alpha1.PromotionFailed, v1alpha1.ReasonFailed, cause), nil
		}
		run.failure = cause
		return next(), nil
	}
	batch, _ := currentBatch(promo.Status.Targets)
	if batch < 0 {
		return next(), nil
	}
	var due []v1alpha1.TargetProgress
	for _, t := range promo.Status.Targets {
		if t.Batch == batch && run.deploys[t.Target] == nil {
			due = append(due, t)
		}
	}
	if err := r.createTasks(ctx, promo, run.rel, env, due); err != nil {
		return outcome{}, err
	}
	if len(due) > 0 {
		run.retry = sooner(run.retry, deployTimeout(env))
	}
	absent, err := r.absentAgents(ctx, promo, batch)
	if err != nil {
		return outcome{}, err
	}
	return rolloutProgress(promo, absent, run.retry), nil
}

// succeedWhenAllDone ends the promotion once every target runs the
// release. The deploy step hands over when all succeeded, or when a target
// failed and the rollback step takes over, which never hands over: both
// are checked again here, so that an order of steps changed by mistake
// cannot call a failed rollout a success.
func (r *PromotionReconciler) succeedWhenAllDone(_ context.Context, run *promotionRun) (outcome, error) {
	if batch, _ := currentBatch(run.promo.Status.Targets); run.failure != "" || batch >= 0 {
		return outcome{}, fmt.Errorf("the rollout is not done (batch %d open, failure %q), yet its steps handed over to succeed", batch, run.failure)
	}
	return end(v1alpha1.PromotionSucceeded, v1alpha1.ReasonSucceeded,
		fmt.Sprintf("release %s runs on all %d target(s) of %s", run.rel.Name, len(run.promo.Status.Targets), run.env.Name)), nil
}

// loadTasks reads the promotion's DeployTasks, by its UID so that a task
// of a deleted promotion of the same name is never taken for its own, and
// times out those whose deadline passed.
func (r *PromotionReconciler) loadTasks(ctx context.Context, run *promotionRun) error {
	var tasks v1alpha1.DeployTaskList
	if err := r.List(ctx, &tasks, client.InNamespace(run.promo.Namespace), client.MatchingFields{indexOwnerPromotion: string(run.promo.UID)}); err != nil {
		return err
	}
	run.deploys, run.rollbacks = map[string]*v1alpha1.DeployTask{}, map[string]*v1alpha1.DeployTask{}
	for i := range tasks.Items {
		t := &tasks.Items[i]
		if t.Spec.Action == v1alpha1.DeployActionRollback {
			run.rollbacks[t.Spec.Target] = t
		} else {
			run.deploys[t.Spec.Target] = t
		}
	}
	var err error
	run.retry, err = r.timeOutSilentTasks(ctx, tasks.Items)
	return err
}

// rolloutProgress says which batch is rolling out and how far it got, and
// which agents it waits for that are not connected.
func rolloutProgress(promo *v1alpha1.Promotion, absentAgents []string, requeueAfter time.Duration) outcome {
	batch, batches := currentBatch(promo.Status.Targets)
	done := 0
	for _, t := range promo.Status.Targets {
		if t.Phase == v1alpha1.DeployTaskSucceeded {
			done++
		}
	}
	message := fmt.Sprintf("batch %d of %d: %d of %d target(s) done", batch+1, batches, done, len(promo.Status.Targets))
	if len(absentAgents) > 0 {
		message += "; waiting for " + strings.Join(absentAgents, "; ")
	}
	return waiting(v1alpha1.ReasonDeploying, message, requeueAfter)
}

// absentAgents says, for the unfinished targets of batch, which of their
// agents have not joined or have not been seen lately, as the Targets'
// Ready conditions say: "agent host-1 has not joined (target web)".
func (r *PromotionReconciler) absentAgents(ctx context.Context, promo *v1alpha1.Promotion, batch int32) ([]string, error) {
	byMessage := map[string][]string{}
	for _, t := range promo.Status.Targets {
		if t.Batch != batch || t.Phase.IsTerminal() {
			continue
		}
		target := &v1alpha1.Target{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: promo.Namespace, Name: t.Target}, target); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("read Target %s: %w", t.Target, err)
		}
		if c := meta.FindStatusCondition(target.Status.Conditions, v1alpha1.ConditionReady); c != nil &&
			(c.Reason == v1alpha1.ReasonAgentNotJoined || c.Reason == v1alpha1.ReasonAgentNotSeen) {
			byMessage[c.Message] = append(byMessage[c.Message], t.Target)
		}
	}
	out := make([]string, 0, len(byMessage))
	for _, message := range slices.Sorted(maps.Keys(byMessage)) {
		out = append(out, fmt.Sprintf("%s (target %s)", message, strings.Join(byMessage[message], ", ")))
	}
	return out, nil
}

// sooner is the earlier of two waits, where zero means no wait at all.
func sooner(a, b time.Duration) time.Duration {
	if a == 0 || b == 0 {
		return max(a, b)
	}
	return min(a, b)
}

func firstFailed(targets []v1alpha1.TargetProgress) *v1alpha1.TargetProgress {
	for i, t := range targets {
		if t.Phase.IsTerminal() && t.Phase != v1alpha1.DeployTaskSucceeded {
			return &targets[i]
		}
	}
	return nil
}

// taskCreators is how many DeployTasks of one batch are created at once: a
// batch of hundreds of targets created one by one kept the last agent
// waiting for the whole batch (hack/bench agents: 250 targets per
// environment took over 20 s at the median).
const taskCreators = 16

// createTasks creates the DeployTasks of targets, several at a time.
func (r *PromotionReconciler) createTasks(ctx context.Context, promo *v1alpha1.Promotion, rel *v1alpha1.Release, env *v1alpha1.Environment, targets []v1alpha1.TargetProgress) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(taskCreators)
	for _, t := range targets {
		g.Go(func() error { return r.createTask(ctx, promo, rel, env, t) })
	}
	return g.Wait()
}

func (r *PromotionReconciler) createTask(ctx context.Context, promo *v1alpha1.Promotion, rel *v1alpha1.Release, env *v1alpha1.Environment, t v1alpha1.TargetProgress) error {
	task := &v1alpha1.DeployTask{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: promo.Namespace, Name: t.DeployTask,
			Labels: map[string]string{
				v1alpha1.LabelPromotion: v1alpha1.LabelValue(promo.Name), v1alpha1.LabelTarget: v1alpha1.LabelValue(t.Target),
				v1alpha1.LabelEnvironment: v1alpha1.LabelValue(env.Name),
			},
		},
		Spec: v1alpha1.DeployTaskSpec{
			Promotion: promo.Name, Target: t.Target, Release: rel.Name, Version: rel.Spec.Version,
			Action: v1alpha1.DeployActionDeploy, Batch: t.Batch, Timeout: &metav1.Duration{Duration: deployTimeout(env)},
		},
	}
	for _, c := range rel.Spec.Components {
		task.Spec.Components = append(task.Spec.Components, v1alpha1.ComponentDigest{Name: c.Name, Image: c.Image})
	}
	target := &v1alpha1.Target{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: promo.Namespace, Name: t.Target}, target); err == nil {
		if target.Spec.Agent != "" {
			task.Labels[v1alpha1.LabelAgent] = v1alpha1.LabelValue(target.Spec.Agent)
		}
		if target.Status.Observed != nil {
			task.Spec.Previous = target.Status.Observed.DeepCopy()
		}
	}
	return r.createOwnedTask(ctx, promo, task)
}

// createOwnedTask creates a DeployTask of promo. One that exists already is
// promo's from an earlier pass, or a task of a deleted promotion of the same
// name that the garbage collector has not removed yet: promo waits for that
// one to go rather than take its result.
func (r *PromotionReconciler) createOwnedTask(ctx context.Context, promo *v1alpha1.Promotion, task *v1alpha1.DeployTask) error {
	if err := controllerutil.SetControllerReference(promo, task, r.Scheme()); err != nil {
		return err
	}
	err := r.Create(ctx, task)
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("create DeployTask %s: %w", task.Name, err)
		}
		return nil
	}
	stored := &v1alpha1.DeployTask{}
	if err := r.uncached().Get(ctx, client.ObjectKeyFromObject(task), stored); err != nil {
		return fmt.Errorf("read DeployTask %s: %w", task.Name, err)
	}
	if owner := metav1.GetControllerOf(stored); owner == nil || owner.UID != promo.UID {
		return fmt.Errorf("DeployTask %s still belongs to an earlier promotion named %s; waiting for the garbage collector to delete it", task.Name, promo.Name)
	}
	return nil
}

// timeOutSilentTasks ends the tasks whose deadline passed without a result,
// and returns how long until the next deadline. Each task ends up as stored:
// one whose result the agent stored first keeps it.
func (r *PromotionReconciler) timeOutSilentTasks(ctx context.Context, tasks []v1alpha1.DeployTask) (time.Duration, error) {
	now := r.now()
	var soonest time.Duration
	for i := range tasks {
		t := &tasks[i]
		if t.Status.Phase.IsTerminal() || t.Spec.Timeout == nil {
			continue
		}
		deadline := t.CreationTimestamp.Add(t.Spec.Timeout.Duration)
		if left := deadline.Sub(now); left > 0 {
			soonest = sooner(soonest, left+time.Second)
			continue
		}
		if err := r.timeOut(ctx, t, now); err != nil {
			return 0, fmt.Errorf("time out DeployTask %s: %w", t.Name, err)
		}
	}
	return soonest, nil
}

// timeOut stores TimedOut on the task, over the version read only: the
// agent may store its result at the same moment. When the task changed
// since, it is read again past the cache, and a result stored first stands.
func (r *PromotionReconciler) timeOut(ctx context.Context, task *v1alpha1.DeployTask, now time.Time) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if task.Status.Phase.IsTerminal() {
			return nil
		}
		before := task.DeepCopy()
		task.Status.Phase = v1alpha1.DeployTaskTimedOut
		task.Status.Message = fmt.Sprintf("no result within %s", task.Spec.Timeout.Duration)
		task.Status.FinishedAt = &metav1.Time{Time: now}
		err := r.Status().Patch(ctx, task, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}), fieldOwner)
		if apierrors.IsConflict(err) {
			if readErr := r.uncached().Get(ctx, client.ObjectKeyFromObject(task), task); readErr != nil {
				return fmt.Errorf("read it again: %w", readErr)
			}
		}
		return err
	})
}
