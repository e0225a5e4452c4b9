package controllers

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// defaultHeartbeatGrace applies when an Agent sets no grace period.
const defaultHeartbeatGrace = 2 * time.Minute

// AgentReconciler notices agents that went silent: once an agent's Lease
// was not renewed within its grace period, the Agent is not Ready. A
// revoked Agent is not Ready at once. The TargetReconciler says the same on
// the agent's Targets, since nobody observes them any more.
type AgentReconciler struct {
	client.Client
	Recorder record.EventRecorder
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SetupWithManager registers the reconciler. Every heartbeat updates the
// Agent's status and so brings it here, which moves its deadline on.
func (r *AgentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.Agent{}).Complete(r)
}

func (r *AgentReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=agents,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=agents/status,verbs=patch
// An agent heartbeats with a Lease in its own namespace.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile checks the agent's last heartbeat and comes back when its grace
// period ends.
func (r *AgentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	agent := &v1alpha1.Agent{}
	if err := r.Get(ctx, req.NamespacedName, agent); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if agent.Spec.Revoked {
		message := "revoked: the server refuses its certificate; delete the Agent and join its host again with a new token (stellactl agent join-token)"
		return ctrl.Result{}, r.markNotReady(ctx, agent, v1alpha1.ReasonAgentRevoked, message)
	}
	last, err := lastHeartbeat(ctx, r.Client, agent)
	if err != nil || last.IsZero() {
		return ctrl.Result{}, err // never started: nothing to go stale
	}
	grace := heartbeatGrace(agent)
	if left := last.Add(grace).Sub(r.now()); left > 0 {
		return ctrl.Result{RequeueAfter: left + time.Second}, nil
	}
	message := fmt.Sprintf("no heartbeat since %s (grace period %s): what runs on its targets is unknown", last.UTC().Format(time.RFC3339), grace)
	return ctrl.Result{}, r.markNotReady(ctx, agent, v1alpha1.ReasonAgentSilent, message)
}

// markNotReady says why the agent is not Ready. Silence does not replace
// what the agent said itself when it stopped; a revocation replaces
// anything.
func (r *AgentReconciler) markNotReady(ctx context.Context, agent *v1alpha1.Agent, reason, message string) error {
	ready := meta.FindStatusCondition(agent.Status.Conditions, v1alpha1.ConditionReady)
	if reason == v1alpha1.ReasonAgentSilent && ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason != v1alpha1.ReasonAgentSilent {
		return nil // it said it stopped, which says more than silence
	}
	before := agent.DeepCopy()
	meta.SetStatusCondition(&agent.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: message, ObservedGeneration: agent.Generation,
	})
	// The agent may have said something since the read (that it stopped):
	// what it said stands, and the change that made the conflict brings
	// the Agent here again.
	err := patchStatusAsRead(ctx, r.Client, before, agent)
	if apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ready == nil || ready.Reason != reason {
		r.Recorder.Eventf(agent, "Warning", reason, "%s", message)
	}
	return nil
}
