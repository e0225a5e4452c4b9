package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/gates"
)

// ApprovalReconciler shows on each Approval whether the approval gates of
// its promotion's environment count it, and why not when they do not (an
// approval bound to an earlier promotion of the same name or to other
// release images, the requester approving their own promotion, an approver
// outside the allowed users and groups, a second approval by the same
// person).
type ApprovalReconciler struct {
	client.Client
}

// SetupWithManager registers the reconciler; a promotion wakes its
// approvals, since which promotion has the name and who requested it decide
// whether they count.
func (r *ApprovalReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Approval{}).
		Watches(&v1alpha1.Promotion{}, handler.EnqueueRequestsFromMapFunc(r.approvalsOf)).
		Complete(r)
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=approvals;promotions;releases;environments;gates,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=approvals/status,verbs=patch

// Reconcile computes the approval's status and patches it once.
func (r *ApprovalReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	appr := &v1alpha1.Approval{}
	if err := r.Get(ctx, req.NamespacedName, appr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := appr.DeepCopy()
	defer func() {
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, before, appr))
	}()

	promo := &v1alpha1.Promotion{}
	err := r.Get(ctx, types.NamespacedName{Namespace: appr.Namespace, Name: appr.Spec.Promotion}, promo)
	if apierrors.IsNotFound(err) {
		appr.Status.Counted = ptr.To(false)
		appr.Status.Reason = "approval.promotion-not-found"
		markStalled(&appr.Status.Conditions, appr.Generation, v1alpha1.ReasonDependencyNotFound,
			fmt.Sprintf("spec.promotion: Promotion %s does not exist in namespace %s", appr.Spec.Promotion, appr.Namespace))
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	rel := &v1alpha1.Release{}
	err = r.Get(ctx, types.NamespacedName{Namespace: promo.Namespace, Name: promo.Spec.Release}, rel)
	if apierrors.IsNotFound(err) {
		appr.Status.Counted = ptr.To(false)
		appr.Status.Reason = "approval.release-not-found"
		markStalled(&appr.Status.Conditions, appr.Generation, v1alpha1.ReasonDependencyNotFound,
			fmt.Sprintf("Release %s of Promotion %s does not exist in namespace %s", promo.Spec.Release, promo.Name, appr.Namespace))
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	verdicts, err := r.verdicts(ctx, promo, rel)
	if err != nil {
		return ctrl.Result{}, err
	}
	computeApprovalStatus(appr, verdicts)
	return ctrl.Result{}, nil
}

// verdicts are what each approval gate of the promotion's environment says
// about the promotion's approvals.
func (r *ApprovalReconciler) verdicts(ctx context.Context, promo *v1alpha1.Promotion, rel *v1alpha1.Release) (map[string][]gates.ApprovalVerdict, error) {
	env := &v1alpha1.Environment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: promo.Namespace, Name: promo.Spec.Environment}, env); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	var approvals v1alpha1.ApprovalList
	if err := r.List(ctx, &approvals, client.InNamespace(promo.Namespace), client.MatchingFields{indexPromotion: promo.Name}); err != nil {
		return nil, err
	}
	in := gates.Inputs{Now: time.Now(), Promotion: promo, Release: rel, Approvals: approvals.Items}
	out := map[string][]gates.ApprovalVerdict{}
	for _, ref := range env.Spec.Gates {
		g := &v1alpha1.Gate{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: promo.Namespace, Name: ref.Name}, g); err != nil || g.Spec.Approval == nil {
			continue
		}
		out[ref.Name] = gates.EvaluateApproval(g.Spec.Approval, in).Approvals
	}
	return out, nil
}

// computeApprovalStatus: an approval counts when at least one approval gate
// counts it; otherwise the reasons of the gates that ignored it are shown.
func computeApprovalStatus(appr *v1alpha1.Approval, byGate map[string][]gates.ApprovalVerdict) {
	st := &appr.Status
	if len(byGate) == 0 {
		st.Counted, st.Reason = ptr.To(false), "approval.no-approval-gate"
		markReady(&st.Conditions, appr.Generation, "the promotion's environment has no approval gate")
		st.ObservedGeneration = appr.Generation
		return
	}
	var ignored []string
	for gate, verdicts := range byGate {
		for _, v := range verdicts {
			if v.Name != appr.Name {
				continue
			}
			if v.Counted {
				st.Counted, st.Reason = ptr.To(true), ""
				markReady(&st.Conditions, appr.Generation, fmt.Sprintf("counted by gate %s", gate))
				st.ObservedGeneration = appr.Generation
				return
			}
			ignored = append(ignored, v.Reason)
		}
	}
	st.Counted = ptr.To(false)
	st.Reason = strings.Join(sortedUnique(ignored), ",")
	markReady(&st.Conditions, appr.Generation, "not counted: "+st.Reason)
	st.ObservedGeneration = appr.Generation
}

func sortedUnique(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func (r *ApprovalReconciler) approvalsOf(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.ApprovalList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexPromotion: o.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, a := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&a)})
	}
	return reqs
}
