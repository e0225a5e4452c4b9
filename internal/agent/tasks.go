package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/gates"
)

// pausedRecheck is how often a paused agent looks whether it may go on.
const pausedRecheck = 10 * time.Second

// taskRunner runs the DeployTasks of the agent's Targets.
type taskRunner struct{ *agent }

func (a *agent) setUpTasks(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(a.controllerName("deploytask")).
		For(&v1alpha1.DeployTask{}, builder.WithPredicates(predicate.Funcs{
			// Only new tasks and unfinished ones matter; the agent's own
			// status writes on a running task wake nothing.
			UpdateFunc: func(e event.UpdateEvent) bool { return false },
			CreateFunc: func(e event.CreateEvent) bool {
				return !e.Object.(*v1alpha1.DeployTask).Status.Phase.IsTerminal() && e.Object.GetLabels()[v1alpha1.LabelAgent] == v1alpha1.LabelValue(a.Name)
			},
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, a.Parallel)}).
		Complete(taskRunner{a})
}

// Reconcile runs one task to its end. A task found Running after a
// restart is applied again: drivers change nothing that already runs, so
// nothing is deployed twice.
func (r taskRunner) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	task := &v1alpha1.DeployTask{}
	if err := r.client.Get(ctx, req.NamespacedName, task); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if task.Status.Phase.IsTerminal() {
		return ctrl.Result{}, nil
	}
	paused, err := r.paused(ctx)
	if err != nil || paused {
		return ctrl.Result{RequeueAfter: pausedRecheck}, err
	}
	target := &v1alpha1.Target{}
	if err := r.client.Get(ctx, client.ObjectKey{Namespace: task.Namespace, Name: task.Spec.Target}, target); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.finish(ctx, task, v1alpha1.DeployTaskFailed, fmt.Sprintf("Target %s does not exist or is not served by %s", task.Spec.Target, r.who()), nil)
		}
		return ctrl.Result{}, err
	}
	if target.Spec.Agent != r.Name {
		return ctrl.Result{}, nil // another agent's, labelled by mistake
	}
	driver := r.Drivers[target.Spec.Type]
	if driver == nil {
		return ctrl.Result{}, r.finish(ctx, task, v1alpha1.DeployTaskFailed,
			fmt.Sprintf("%s cannot deploy to %s targets (it deploys to %v); point the Target at an agent that can", r.who(), target.Spec.Type, r.types()), nil)
	}
	deadline := task.CreationTimestamp.Add(timeoutOf(task))
	if !time.Now().Before(deadline) {
		return ctrl.Result{}, nil // the server times it out
	}

	lock := r.lock(target)
	lock.Lock()
	defer lock.Unlock()
	// Reporting Running goes on while the driver works, so that the round
	// trip does not delay the deployment; the result waits for it.
	running := task.DeepCopy()
	started := make(chan error, 1)
	go func() { started <- r.start(ctx, running) }()
	runCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	phase, message := r.run(runCtx, driver, target, task)
	if err := <-started; err != nil {
		var ended taskEnded
		if errors.As(err, &ended) {
			r.lateResult(running, "the result "+string(phase), ended)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err // the task is applied again, which changes nothing that runs
	}
	if ctx.Err() != nil {
		return ctrl.Result{}, ctx.Err() // stopping: the next start resumes the task
	}
	observed := r.observeAfter(ctx, driver, target)
	return ctrl.Result{}, r.finish(ctx, running, phase, message, observed)
}

// run applies the task through the driver. A deployment that fails is
// undone on the spot when the task says what ran before, so the target is
// never left half way: the task then ends RolledBack.
func (r taskRunner) run(ctx context.Context, driver agents.Driver, target *v1alpha1.Target, task *v1alpha1.DeployTask) (v1alpha1.DeployTaskPhase, string) {
	desired := agents.DesiredOf(task)
	log := r.log.WithValues("deployTask", task.Name, "target", target.Name, "release", desired.Release)
	if task.Spec.Action == v1alpha1.DeployActionRollback {
		if err := driver.Rollback(ctx, target, desired); err != nil {
			log.Error(err, "Rollback failed")
			return v1alpha1.DeployTaskFailed, "rollback failed: " + err.Error()
		}
		return v1alpha1.DeployTaskSucceeded, fmt.Sprintf("release %s runs again", desired.Release)
	}
	start := time.Now()
	err := driver.Apply(ctx, target, desired)
	if err == nil {
		log.Info("Deployed", "took", time.Since(start).Round(time.Millisecond))
		return v1alpha1.DeployTaskSucceeded, fmt.Sprintf("release %s runs", desired.Release)
	}
	log.Error(err, "Deploy failed")
	prev := task.Spec.Previous
	if prev == nil || len(prev.Components) == 0 {
		return v1alpha1.DeployTaskFailed, err.Error()
	}
	undo, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Until(deadlineOr(ctx, time.Now().Add(5*time.Minute))))
	defer cancel()
	if rbErr := driver.Rollback(undo, target, agents.DesiredFromSticker(prev)); rbErr != nil {
		return v1alpha1.DeployTaskFailed, errors.Join(err, fmt.Errorf("returning to release %s failed too: %w", prev.Release, rbErr)).Error()
	}
	return v1alpha1.DeployTaskRolledBack, fmt.Sprintf("%s; release %s runs as before", err, prev.Release)
}

// deadlineOr is ctx's deadline, or def when that has passed or is unset:
// undoing a failed deployment gets time even when the deployment used up
// its own.
func deadlineOr(ctx context.Context, def time.Time) time.Time {
	if d, ok := ctx.Deadline(); ok && time.Until(d) > time.Minute {
		return d
	}
	return def
}

// start records that the task runs, and how often it was started.
func (r taskRunner) start(ctx context.Context, task *v1alpha1.DeployTask) error {
	err := r.report(ctx, task, func(task *v1alpha1.DeployTask) {
		task.Status.Phase = v1alpha1.DeployTaskRunning
		task.Status.Attempts++
		if task.Status.StartedAt == nil {
			task.Status.StartedAt = &metav1.Time{Time: time.Now()}
		}
		task.Status.Message = fmt.Sprintf("%s on %s is deploying (attempt %d)", r.who(), r.hostname, task.Status.Attempts)
		task.Status.ObservedGeneration = task.Generation
	})
	if err != nil {
		return fmt.Errorf("report DeployTask %s running: %w", task.Name, err)
	}
	return nil
}

// finish records the task's result. The promotion reconciler reads it. A
// result that comes after the task ended (the server timed it out first) is
// not recorded, and not retried: the first result stands.
func (r taskRunner) finish(ctx context.Context, task *v1alpha1.DeployTask, phase v1alpha1.DeployTaskPhase, message string, observed []v1alpha1.ComponentDigest) error {
	err := r.report(ctx, task, func(task *v1alpha1.DeployTask) {
		task.Status.Phase = phase
		task.Status.Message = gates.Truncate(message, 1024)
		task.Status.Observed = observed
		task.Status.FinishedAt = &metav1.Time{Time: time.Now()}
		task.Status.ObservedGeneration = task.Generation
	})
	var ended taskEnded
	if errors.As(err, &ended) {
		r.lateResult(task, "the result "+string(phase), ended)
		return nil
	}
	if err != nil {
		return fmt.Errorf("report DeployTask %s %s: %w", task.Name, phase, err)
	}
	r.events.Eventf(task, eventType(phase), string(phase), "%s", task.Status.Message)
	return nil
}

// report applies change to the task's status and writes it over the version
// the task was read at: the server may time the task out at the same
// moment. When the task changed since, it is read again: one that ended
// meanwhile keeps its result and report returns taskEnded; otherwise the
// change is made again on the task as stored.
func (r taskRunner) report(ctx context.Context, task *v1alpha1.DeployTask, change func(*v1alpha1.DeployTask)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if task.Status.Phase.IsTerminal() {
			return taskEnded{task: task.Name, phase: task.Status.Phase, message: task.Status.Message}
		}
		before := task.DeepCopy()
		change(task)
		err := r.client.Status().Patch(ctx, task, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
		if apierrors.IsConflict(err) {
			if readErr := r.reread(ctx, task); readErr != nil {
				return fmt.Errorf("read DeployTask %s again: %w", task.Name, readErr)
			}
		}
		return err
	})
}

// reread reads the task from the API server, past the cache. An agent may
// read its tasks only by listing them with its label, so it reads the task
// that way; the server reads it by name.
func (r taskRunner) reread(ctx context.Context, task *v1alpha1.DeployTask) error {
	if r.server() {
		return r.reader.Get(ctx, client.ObjectKeyFromObject(task), task)
	}
	var list v1alpha1.DeployTaskList
	if err := r.reader.List(ctx, &list, client.InNamespace(task.Namespace), client.MatchingLabels{v1alpha1.LabelAgent: v1alpha1.LabelValue(r.Name)},
		client.MatchingFields{"metadata.name": task.Name}); err != nil {
		return err
	}
	if len(list.Items) != 1 {
		return apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("deploytasks").GroupResource(), task.Name)
	}
	list.Items[0].DeepCopyInto(task)
	return nil
}

// taskEnded says the task reached a terminal phase before a report on it
// could be stored.
type taskEnded struct {
	task    string
	phase   v1alpha1.DeployTaskPhase
	message string
}

func (e taskEnded) Error() string {
	return fmt.Sprintf("DeployTask %s had already ended %s (%s)", e.task, e.phase, e.message)
}

// lateResult tells, on the task and in the log, of what came after the task
// ended: the stored result stands, and this one is dropped for good.
func (r taskRunner) lateResult(task *v1alpha1.DeployTask, what string, ended taskEnded) {
	r.log.Info("A task ended before its result came; the result is not recorded", "deployTask", task.Name, "ended", ended.phase, "late", what)
	r.events.Eventf(task, "Warning", v1alpha1.ReasonResultNotRecorded, "%s of %s on %s came too late: %v, which stands; it is not recorded",
		what, r.who(), r.hostname, ended)
}

// observeAfter reports the target's state right after a task, so the next
// promotion knows what runs there; it returns the digests seen running.
func (r taskRunner) observeAfter(ctx context.Context, driver agents.Driver, target *v1alpha1.Target) []v1alpha1.ComponentDigest {
	a, err := r.observe(ctx, driver, target)
	if err != nil {
		r.log.Error(err, "Observe after the task failed", "target", target.Name)
		return nil
	}
	if a.Running == nil {
		return nil
	}
	return a.Running.Components
}

// paused says whether the Agent is paused; the server has no Agent to pause.
func (r taskRunner) paused(ctx context.Context) (bool, error) {
	if r.server() {
		return false, nil
	}
	self := &v1alpha1.Agent{}
	if err := r.client.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: r.Name}, self); err != nil {
		return false, err
	}
	return self.Spec.Paused, nil
}

func (r taskRunner) types() []v1alpha1.TargetType {
	return slices.Sorted(maps.Keys(r.Drivers))
}

func timeoutOf(task *v1alpha1.DeployTask) time.Duration {
	if task.Spec.Timeout != nil && task.Spec.Timeout.Duration > 0 {
		return task.Spec.Timeout.Duration
	}
	return 15 * time.Minute
}

func eventType(phase v1alpha1.DeployTaskPhase) string {
	if phase == v1alpha1.DeployTaskSucceeded {
		return "Normal"
	}
	return "Warning"
}
