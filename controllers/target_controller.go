package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
)

// TargetReconciler says on each Target served by an agent when nobody
// observes it: its agent never joined, was not seen within its heartbeat
// grace period, or is revoked. Its Ready turns Unknown with the reason, and
// its drift and health Unknown. While the agent reports, the agent owns the
// Target's status and this reconciler writes nothing; Targets the server
// deploys to itself (no spec.agent) are never touched.
type TargetReconciler struct {
	client.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SetupWithManager registers the reconciler. A Target wakes it when it is
// created or its spec changes (another agent); an Agent wakes the Targets
// it serves whenever it changes, which each heartbeat does.
func (r *TargetReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Target{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.Agent{}, handler.EnqueueRequestsFromMapFunc(r.servedBy)).
		Complete(r)
}

func (r *TargetReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// servedBy lists the Targets that name the agent.
func (r *TargetReconciler) servedBy(ctx context.Context, o client.Object) []reconcile.Request {
	var targets v1alpha1.TargetList
	if err := r.List(ctx, &targets, client.InNamespace(o.GetNamespace()), client.MatchingFields{v1alpha1.FieldTargetAgent: o.GetName()},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(targets.Items))
	for i := range targets.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&targets.Items[i])})
	}
	return reqs
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=targets;agents,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=targets/status,verbs=patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch

// Reconcile looks at the Target's agent and marks the Target Unknown when
// the agent is absent; otherwise it comes back when the agent's grace
// period would end.
func (r *TargetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	target := &v1alpha1.Target{}
	if err := r.Get(ctx, req.NamespacedName, target); err != nil || target.Spec.Agent == "" {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	agent := &v1alpha1.Agent{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: target.Namespace, Name: target.Spec.Agent}, agent); apierrors.IsNotFound(err) {
		agent = nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("read Agent %s: %w", target.Spec.Agent, err)
	}
	var last time.Time
	if agent != nil {
		var err error
		if last, err = lastHeartbeat(ctx, r.Client, agent); err != nil {
			return ctrl.Result{}, err
		}
	}
	absence := agentAbsence(target.Spec.Agent, agent, last, r.now())
	if absence.reason == "" {
		return ctrl.Result{RequeueAfter: absence.recheck}, nil
	}
	before := target.DeepCopy()
	defer func() {
		// The agent may have reported since the read: its report stands,
		// and the agent's absence is judged again.
		err := patchStatusAsRead(ctx, r.Client, before, target)
		if apierrors.IsConflict(err) {
			res, err = ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
		retErr = errors.Join(retErr, err)
	}()
	target.Status.Drift, target.Status.Health = v1alpha1.DriftUnknown, v1alpha1.HealthUnknown
	meta.SetStatusCondition(&target.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionUnknown, Reason: absence.reason, Message: absence.message, ObservedGeneration: target.Generation,
	})
	return ctrl.Result{}, nil
}

// absence says why nobody observes a Target: a reason and message for its
// Ready condition, or no reason while its agent reports, with how soon the
// agent's grace period would end.
type absence struct {
	reason, message string
	recheck         time.Duration
}

// agentAbsence judges the agent named name (nil when no such Agent exists),
// which last reported at last (zero: never), at now.
func agentAbsence(name string, agent *v1alpha1.Agent, last, now time.Time) absence {
	switch {
	case agent == nil:
		return absence{reason: v1alpha1.ReasonAgentNotJoined, message: fmt.Sprintf(
			"agent %s has not joined: no Agent %s exists; create it and join its host (stellactl agent join-token %s)", name, name, name)}
	case agent.Spec.Revoked:
		return absence{reason: v1alpha1.ReasonAgentRevoked, message: fmt.Sprintf("agent %s is revoked: what runs here is unknown", name)}
	case last.IsZero():
		return absence{reason: v1alpha1.ReasonAgentNotJoined, message: fmt.Sprintf(
			"agent %s has not joined: start stella-agent on its host with a join token (stellactl agent join-token %s)", name, name)}
	}
	grace := heartbeatGrace(agent)
	if left := last.Add(grace).Sub(now); left > 0 {
		return absence{recheck: left + time.Second}
	}
	return absence{reason: v1alpha1.ReasonAgentNotSeen, message: fmt.Sprintf(
		"agent %s has not been seen since %s (grace period %s): what runs here is unknown", name, last.UTC().Format(time.RFC3339), grace)}
}

// heartbeatGrace is how long the agent may stay silent.
func heartbeatGrace(agent *v1alpha1.Agent) time.Duration {
	if grace := agent.Spec.HeartbeatGracePeriod.Duration; grace > 0 {
		return grace
	}
	return defaultHeartbeatGrace
}

// lastHeartbeat is when the agent last renewed its Lease, or reported a
// heartbeat in its status when it has no Lease; zero when it never did.
func lastHeartbeat(ctx context.Context, c client.Reader, agent *v1alpha1.Agent) (time.Time, error) {
	lease := &coordinationv1.Lease{}
	err := c.Get(ctx, client.ObjectKey{Namespace: agent.Namespace, Name: agentid.LeaseName(agent.Name)}, lease)
	switch {
	case err == nil && lease.Spec.RenewTime != nil:
		return lease.Spec.RenewTime.Time, nil
	case err != nil && !apierrors.IsNotFound(err):
		return time.Time{}, fmt.Errorf("read the Lease of Agent %s: %w", agent.Name, err)
	case agent.Status.LastHeartbeat != nil:
		return agent.Status.LastHeartbeat.Time, nil
	}
	return time.Time{}, nil
}
