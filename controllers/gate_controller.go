package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/gates"
	"github.com/stella-ops/stella/internal/policy"
)

// timeGateResync bounds how long a time-based gate's closed/open display may
// lag: the gate's own next opening is known, its next closing is not.
const timeGateResync = time.Minute

// GateReconciler checks that a Gate's configuration can be evaluated (RRULEs
// parse, time zones exist, CUE compiles) and shows whether a time-based gate
// is closed now and when it opens next.
type GateReconciler struct {
	client.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// SetupWithManager registers the reconciler. Gates are reconciled several
// at a time: checking a policy can take up to its time budget, and gates of
// other namespaces must not wait behind it.
func (r *GateReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.Gate{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=gates,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=gates/status,verbs=patch

// Reconcile validates the gate and computes its status.
func (r *GateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	gate := &v1alpha1.Gate{}
	if err := r.Get(ctx, req.NamespacedName, gate); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := gate.DeepCopy()
	defer func() {
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, before, gate))
	}()
	var policyErr error
	if gate.Spec.Policy != nil {
		// The sandbox remembers a policy over its budget, so checking it
		// again costs no worker.
		policyErr = policy.Default().Check(ctx, gate.Namespace, gate.Spec.Policy.Source)
		if policyErr != nil && !policy.IsPolicyFault(policyErr) {
			return ctrl.Result{}, fmt.Errorf("check the policy of gate %s: %w", req, policyErr)
		}
	}
	return computeGateStatus(gate, r.now(), policyErr), nil
}

func (r *GateReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// computeGateStatus fills the gate's status and says when to look again;
// policyErr is what the policy sandbox found wrong with its policy.
func computeGateStatus(gate *v1alpha1.Gate, now time.Time, policyErr error) ctrl.Result {
	st := &gate.Status
	typ, err := gates.TypeOf(&gate.Spec)
	st.Type = typ
	st.PolicyDigest, st.Closed, st.NextOpenAt = "", nil, nil
	if err == nil {
		err = gates.Validate(gate)
	}
	reason := v1alpha1.ReasonInvalidSpec
	if err == nil && gate.Spec.Policy != nil {
		st.PolicyDigest = v1alpha1.Digest(policy.Digest(gate.Spec.Policy.Source))
		if policyErr != nil {
			err = fmt.Errorf("spec.policy.source: %w", policyErr)
		}
		if _, ok := errors.AsType[*policy.BudgetError](policyErr); ok {
			reason = v1alpha1.ReasonPolicyBudgetExceeded
		}
	}
	if err != nil {
		markStalled(&st.Conditions, gate.Generation, reason, gates.Truncate(err.Error(), 32768))
		return ctrl.Result{}
	}
	var result ctrl.Result
	message := typ + " gate is valid"
	if gates.IsTimeBased(&gate.Spec) {
		closed, nextOpen, err := gates.ClosedAt(gate, now)
		if err != nil {
			markStalled(&st.Conditions, gate.Generation, v1alpha1.ReasonInvalidSpec, gates.Truncate(err.Error(), 32768))
			return ctrl.Result{}
		}
		st.Closed = ptr.To(closed)
		result.RequeueAfter = timeGateResync
		if closed && nextOpen != nil {
			st.NextOpenAt = &metav1.Time{Time: nextOpen.UTC().Truncate(time.Second)}
			result.RequeueAfter = min(timeGateResync, max(time.Second, nextOpen.Sub(now)))
			message = fmt.Sprintf("%s gate is closed until %s", typ, nextOpen.UTC().Format(time.RFC3339))
		} else if !closed {
			message = typ + " gate is open"
		}
	}
	markReady(&st.Conditions, gate.Generation, message)
	st.ObservedGeneration = gate.Generation
	return result
}
