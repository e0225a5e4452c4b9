package agent

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// targetObserver reports what really runs on each served Target.
type targetObserver struct{ *agent }

func (a *agent) setUpObserver(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(a.controllerName("target")).
		For(&v1alpha1.Target{}, builder.WithPredicates(predicate.GenerationChangedPredicate{}, predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.(*v1alpha1.Target).Spec.Agent == a.Name
		}))).
		WatchesRawSource(source.Channel(a.observeNow, &handler.TypedEnqueueRequestForObject[*v1alpha1.Target]{})).
		Complete(targetObserver{a})
}

// Reconcile observes one Target, reverts drift when its policy says so,
// and comes back after ObserveEvery.
func (r targetObserver) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	target := &v1alpha1.Target{}
	if err := r.client.Get(ctx, req.NamespacedName, target); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	driver := r.Drivers[target.Spec.Type]
	if target.Spec.Agent != r.Name || driver == nil {
		return ctrl.Result{}, nil
	}
	lock := r.lock(target)
	if !lock.TryLock() {
		// A task is changing what runs; it observes when it is done.
		return ctrl.Result{RequeueAfter: r.ObserveEvery}, nil
	}
	defer lock.Unlock()
	if _, err := r.observe(ctx, driver, target); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.ObserveEvery}, nil
}

// observe reads what runs on the target, reverts drift when the target
// says so, and reports the result in the Target's status.
func (a *agent) observe(ctx context.Context, driver agents.Driver, target *v1alpha1.Target) (agents.Assessment, error) {
	o, err := driver.Observe(ctx, target)
	if err != nil {
		return agents.Assessment{}, a.reportUnobserved(ctx, target, err)
	}
	assessed := agents.Assess(o)
	if assessed.Drift == v1alpha1.DriftDrifted && target.Spec.DriftPolicy == v1alpha1.DriftPolicyRevert && o.Deployed != nil {
		a.events.Eventf(target, "Warning", v1alpha1.ReasonDrifted, "%s; reverting to release %s", assessed.Message, o.Deployed.Release)
		if err := driver.Apply(ctx, target, agents.DesiredFromSticker(o.Deployed)); err != nil {
			a.events.Eventf(target, "Warning", v1alpha1.ReasonRevertFailed, "reverting to release %s failed: %v", o.Deployed.Release, err)
		} else if o, err = driver.Observe(ctx, target); err == nil {
			a.events.Eventf(target, "Normal", v1alpha1.ReasonReverted, "release %s runs again", o.Deployed.Release)
			assessed = agents.Assess(o)
		}
	}
	return assessed, a.reportTarget(ctx, target, assessed)
}

func (a *agent) reportTarget(ctx context.Context, target *v1alpha1.Target, assessed agents.Assessment) error {
	before := target.DeepCopy()
	st := &target.Status
	wasDrifted := st.Drift == v1alpha1.DriftDrifted
	st.Observed, st.Drift, st.Health = assessed.Running, assessed.Drift, assessed.Health
	st.LastSeen = &metav1.Time{Time: time.Now()}
	ready := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonInSync, ObservedGeneration: target.Generation}
	switch {
	case assessed.Drift == v1alpha1.DriftDrifted:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.ReasonDrifted, assessed.Message
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: v1alpha1.ConditionDrifted, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonDrifted, Message: assessed.Message, ObservedGeneration: target.Generation,
		})
		if !wasDrifted {
			a.events.Eventf(target, "Warning", v1alpha1.ReasonDrifted, "%s", assessed.Message)
		}
	case assessed.Health == v1alpha1.HealthDegraded:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.ReasonDegraded, assessed.Message
	default:
		ready.Message = runningMessage(assessed)
	}
	if assessed.Drift != v1alpha1.DriftDrifted {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionDrifted)
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	st.ObservedGeneration = target.Generation
	if err := a.client.Status().Patch(ctx, target, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("report the status of Target %s: %w", target.Name, err)
	}
	return nil
}

// reportUnobserved says the target could not be observed; what it last
// ran is no longer known.
func (a *agent) reportUnobserved(ctx context.Context, target *v1alpha1.Target, cause error) error {
	before := target.DeepCopy()
	target.Status.Drift, target.Status.Health = v1alpha1.DriftUnknown, v1alpha1.HealthUnknown
	meta.SetStatusCondition(&target.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonObserveFailed,
		Message: fmt.Sprintf("%s cannot observe the target: %v", a.who(), cause), ObservedGeneration: target.Generation,
	})
	if err := a.client.Status().Patch(ctx, target, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("report the status of Target %s: %w", target.Name, err)
	}
	return cause
}

func runningMessage(a agents.Assessment) string {
	if a.Running == nil {
		return a.Message
	}
	return fmt.Sprintf("release %s runs (%d component(s), %s)", a.Running.Release, len(a.Running.Components), a.Health)
}
