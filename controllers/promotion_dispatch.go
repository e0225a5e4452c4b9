package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/gates"
)

// defaultDeployTimeout applies when an environment sets none.
const defaultDeployTimeout = 15 * time.Minute

// planRollout fixes which target goes in which batch, once, so that a
// restart resumes the same rollout. A promotion into an environment that
// selects no targets is held until one appears (with a reason in Ready),
// and fails once the deploy timeout passed since its decision; it succeeds
// at once only when the environment sets spec.allowEmpty.
func (r *PromotionReconciler) planRollout(ctx context.Context, promo *v1alpha1.Promotion, rel *v1alpha1.Release, env *v1alpha1.Environment) error {
	targets, err := selectedTargets(ctx, r.Client, env)
	if err != nil {
		return err
	}
	if len(targets) > 0 {
		promo.Status.Targets = plan(promo.Name, targets, env.Spec.Strategy)
		promo.Status.Phase = v1alpha1.PromotionDeploying
		showRollout(promo, nil)
		return nil
	}
	timeout := deployTimeout(env)
	switch {
	case env.Spec.AllowEmpty:
		r.finish(promo, v1alpha1.PromotionSucceeded, reasonPromotionDone,
			fmt.Sprintf("release %s is current in %s, which selects no targets (spec.allowEmpty)", rel.Name, env.Name))
	case !r.now().Before(noTargetsDeadline(promo, env)):
		r.finish(promo, v1alpha1.PromotionFailed, reasonFailed, fmt.Sprintf(
			"environment %s selected no Targets within %s (spec.deployTimeout): create Targets that its spec.targetSelector selects, or set spec.allowEmpty if it is meant to be empty",
			env.Name, timeout))
	default:
		setProgress(promo, v1alpha1.ReasonNoTargets, fmt.Sprintf(
			"waiting for a Target: environment %s selects none (spec.targetSelector %s); the promotion goes on once one exists, and fails at %s (spec.deployTimeout %s) otherwise; set spec.allowEmpty on the environment if it is meant to be empty",
			env.Name, metav1.FormatLabelSelector(env.Spec.TargetSelector), noTargetsDeadline(promo, env).UTC().Format(time.RFC3339), timeout))
	}
	return nil
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

// showRollout says which batch is rolling out and how far it got, and
// which agents it waits for that are not connected.
func showRollout(promo *v1alpha1.Promotion, absentAgents []string) {
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
	setProgress(promo, reasonDeploying, message)
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

// deploy rolls the release out batch by batch, as planned. DeployTasks
// have names derived from the promotion and the target, so creating one
// twice is harmless.
func (r *PromotionReconciler) deploy(ctx context.Context, promo *v1alpha1.Promotion, rel *v1alpha1.Release, env *v1alpha1.Environment) (ctrl.Result, error) {
	if len(promo.Status.Targets) == 0 {
		if err := r.planRollout(ctx, promo, rel, env); err != nil || promo.Status.Phase.IsTerminal() {
			return ctrl.Result{}, err
		}
		if len(promo.Status.Targets) == 0 {
			// A new Target wakes it; the deadline, if none comes.
			return ctrl.Result{RequeueAfter: noTargetsDeadline(promo, env).Sub(r.now()) + time.Second}, nil
		}
	}
	var tasks v1alpha1.DeployTaskList
	if err := r.List(ctx, &tasks, client.InNamespace(promo.Namespace), client.MatchingFields{indexOwnerPromotion: string(promo.UID)}); err != nil {
		return ctrl.Result{}, err
	}
	byTarget, rollbacks := map[string]*v1alpha1.DeployTask{}, map[string]*v1alpha1.DeployTask{}
	for i := range tasks.Items {
		t := &tasks.Items[i]
		if t.Spec.Action == v1alpha1.DeployActionRollback {
			rollbacks[t.Spec.Target] = t
		} else {
			byTarget[t.Spec.Target] = t
		}
	}
	retry, err := r.timeOutSilentTasks(ctx, tasks.Items)
	if err != nil {
		return ctrl.Result{}, err
	}
	for i := range promo.Status.Targets {
		if t := byTarget[promo.Status.Targets[i].Target]; t != nil {
			// A task nobody has reported on yet is as planned: Pending.
			if t.Status.Phase != "" {
				promo.Status.Targets[i].Phase = t.Status.Phase
			}
			promo.Status.Targets[i].Message = gates.Truncate(t.Status.Message, 1024)
		}
	}

	batch, _ := currentBatch(promo.Status.Targets)
	if failed := firstFailed(promo.Status.Targets); failed != nil {
		cause := fmt.Sprintf("target %s: %s %s; the rollout stopped", failed.Target, failed.Phase, failed.Message)
		if !env.Spec.RollbackOnFailure {
			r.finish(promo, v1alpha1.PromotionFailed, reasonFailed, cause)
			return ctrl.Result{}, nil
		}
		return r.rollBack(ctx, promo, env, byTarget, rollbacks, cause, retry)
	}
	if batch < 0 {
		r.finish(promo, v1alpha1.PromotionSucceeded, reasonPromotionDone,
			fmt.Sprintf("release %s runs on all %d target(s) of %s", rel.Name, len(promo.Status.Targets), env.Name))
		return ctrl.Result{}, nil
	}
	for _, t := range promo.Status.Targets {
		if t.Batch == batch && byTarget[t.Target] == nil {
			if err := r.createTask(ctx, promo, rel, env, t); err != nil {
				return ctrl.Result{}, err
			}
			retry = sooner(retry, deployTimeout(env))
		}
	}
	absent, err := r.absentAgents(ctx, promo, batch)
	if err != nil {
		return ctrl.Result{}, err
	}
	showRollout(promo, absent)
	return ctrl.Result{RequeueAfter: retry}, nil
}

// sooner is the earlier of two waits, where zero means no wait at all.
func sooner(a, b time.Duration) time.Duration {
	if a == 0 || b == 0 {
		return max(a, b)
	}
	return min(a, b)
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

func firstFailed(targets []v1alpha1.TargetProgress) *v1alpha1.TargetProgress {
	for i, t := range targets {
		if t.Phase.IsTerminal() && t.Phase != v1alpha1.DeployTaskSucceeded {
			return &targets[i]
		}
	}
	return nil
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

// rollBack returns the targets the failed rollout changed to what they ran
// before, and ends the promotion RolledBack once every rollback succeeded
// (Failed when one did not).
func (r *PromotionReconciler) rollBack(ctx context.Context, promo *v1alpha1.Promotion, env *v1alpha1.Environment,
	deploys, rollbacks map[string]*v1alpha1.DeployTask, cause string, retry time.Duration) (ctrl.Result, error) {
	var waiting, failed, untouched, done int
	for _, t := range promo.Status.Targets {
		deploy := deploys[t.Target]
		if deploy == nil || deploy.Spec.Previous == nil || len(deploy.Spec.Previous.Components) == 0 {
			untouched++ // never changed, or nothing known to go back to
			continue
		}
		rb := rollbacks[t.Target]
		switch {
		case rb == nil:
			if err := r.createRollback(ctx, promo, env, deploy); err != nil {
				return ctrl.Result{}, err
			}
			retry = sooner(retry, deployTimeout(env))
			waiting++
		case !rb.Status.Phase.IsTerminal():
			waiting++
		case rb.Status.Phase == v1alpha1.DeployTaskSucceeded:
			done++
		default:
			failed++
		}
	}
	switch {
	case waiting > 0:
		setProgress(promo, reasonRollingBack, fmt.Sprintf("%s; rolling back: %d of %d target(s) done", cause, done, done+waiting+failed))
		return ctrl.Result{RequeueAfter: retry}, nil
	case failed > 0:
		r.finish(promo, v1alpha1.PromotionFailed, reasonFailed, fmt.Sprintf("%s; the rollback failed on %d target(s)", cause, failed))
	default:
		r.finish(promo, v1alpha1.PromotionRolledBack, reasonRolledBack,
			fmt.Sprintf("%s; rolled back %d target(s) to what they ran before, %d had nothing to roll back to", cause, done, untouched))
	}
	return ctrl.Result{}, nil
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
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(task), stored); err != nil {
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
	var next time.Duration
	for i := range tasks {
		t := &tasks[i]
		if t.Status.Phase.IsTerminal() || t.Spec.Timeout == nil {
			continue
		}
		deadline := t.CreationTimestamp.Add(t.Spec.Timeout.Duration)
		if left := deadline.Sub(now); left > 0 {
			next = sooner(next, left+time.Second)
			continue
		}
		if err := r.timeOut(ctx, t, now); err != nil {
			return 0, fmt.Errorf("time out DeployTask %s: %w", t.Name, err)
		}
	}
	return next, nil
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

// waitingOnTarget wakes the decided, open promotions into the environments
// that select the changed Target: one that waits for a first target goes
// on, and one deploying says again which agents it waits for.
func (r *PromotionReconciler) waitingOnTarget(ctx context.Context, o client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	for _, env := range environmentsSelecting(ctx, r.Client, o.GetNamespace(), o.GetLabels()) {
		reqs = append(reqs, r.openPromotionsOf(ctx, o.GetNamespace(), env.Name, decided)...)
	}
	return reqs
}

// targetPresenceChanged passes the Target changes a promotion follows: a
// new Target, new labels, or another Ready reason or message (its agent
// joined, or went silent).
var targetPresenceChanged = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return true },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		was, is := e.ObjectOld.(*v1alpha1.Target), e.ObjectNew.(*v1alpha1.Target)
		before, after := meta.FindStatusCondition(was.Status.Conditions, v1alpha1.ConditionReady), meta.FindStatusCondition(is.Status.Conditions, v1alpha1.ConditionReady)
		return !maps.Equal(was.Labels, is.Labels) || (before == nil) != (after == nil) ||
			(before != nil && (before.Reason != after.Reason || before.Message != after.Message))
	},
}
