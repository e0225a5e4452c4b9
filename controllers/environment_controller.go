package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// EnvironmentReconciler shows what runs in an environment: the release that
// last succeeded there, its history, the promotion in flight and the state
// of its targets. All of it is derived from Promotions and Targets.
type EnvironmentReconciler struct {
	client.Client
}

// SetupWithManager registers the reconciler; promotions and targets wake
// the environments they belong to.
func (r *EnvironmentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Environment{}).
		Watches(&v1alpha1.Promotion{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.(*v1alpha1.Promotion).Spec.Environment}}}
		})).
		Watches(&v1alpha1.Target{}, handler.EnqueueRequestsFromMapFunc(r.environmentsInNamespace)).
		Complete(r)
}

// Reconcile computes the environment's status and patches it once.
func (r *EnvironmentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	env := &v1alpha1.Environment{}
	if err := r.Get(ctx, req.NamespacedName, env); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := env.DeepCopy()
	defer func() {
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, before, env))
	}()
	var promos v1alpha1.PromotionList
	if err := r.List(ctx, &promos, client.InNamespace(env.Namespace)); err != nil {
		return ctrl.Result{}, err
	}
	var targets v1alpha1.TargetList
	if err := r.List(ctx, &targets, client.InNamespace(env.Namespace)); err != nil {
		return ctrl.Result{}, err
	}
	var releases v1alpha1.ReleaseList
	if err := r.List(ctx, &releases, client.InNamespace(env.Namespace)); err != nil {
		return ctrl.Result{}, err
	}
	versions := map[string]string{}
	for _, rel := range releases.Items {
		versions[rel.Name] = rel.Spec.Version
	}
	if err := computeEnvironmentStatus(env, promos.Items, targets.Items, versions); err != nil {
		markStalled(&env.Status.Conditions, env.Generation, v1alpha1.ReasonInvalidSpec, err.Error())
	}
	return ctrl.Result{}, nil
}

// computeEnvironmentStatus derives the status. History keeps the entries it
// had, so it outlives promotions that were deleted.
func computeEnvironmentStatus(env *v1alpha1.Environment, promos []v1alpha1.Promotion, targets []v1alpha1.Target, versions map[string]string) error {
	st := &env.Status
	byPromotion := map[string]v1alpha1.EnvironmentHistoryEntry{}
	for _, h := range st.History {
		byPromotion[h.Promotion] = h
	}
	st.CurrentPromotion = ""
	for _, p := range promos {
		if p.Spec.Environment != env.Name {
			continue
		}
		switch p.Status.Phase {
		case v1alpha1.PromotionSucceeded, v1alpha1.PromotionFailed, v1alpha1.PromotionRolledBack:
			byPromotion[p.Name] = v1alpha1.EnvironmentHistoryEntry{Release: p.Spec.Release, Promotion: p.Name,
				Phase: p.Status.Phase, FinishedAt: p.Status.FinishedAt, Version: versions[p.Spec.Release]}
		case v1alpha1.PromotionDeploying, v1alpha1.PromotionVerifying, v1alpha1.PromotionApproved:
			st.CurrentPromotion = p.Name
		}
	}
	history := make([]v1alpha1.EnvironmentHistoryEntry, 0, len(byPromotion))
	for _, h := range byPromotion {
		history = append(history, h)
	}
	slices.SortFunc(history, func(a, b v1alpha1.EnvironmentHistoryEntry) int {
		if c := finishedAt(b).Compare(finishedAt(a)); c != 0 {
			return c
		}
		return strings.Compare(a.Promotion, b.Promotion)
	})
	st.CurrentRelease = ""
	for _, h := range history {
		if h.Phase == v1alpha1.PromotionSucceeded {
			st.CurrentRelease = h.Release
			break
		}
	}
	limit := int(env.Spec.HistoryLimit)
	if limit <= 0 {
		limit = 10
	}
	st.History = history[:min(len(history), limit)]

	counts, err := countTargets(env, targets)
	if err != nil {
		return err
	}
	st.Targets = counts
	message := fmt.Sprintf("no release yet; %d target(s)", counts.Total)
	if st.CurrentRelease != "" {
		message = fmt.Sprintf("%s is current; %d target(s): %d healthy, %d drifted, %d unknown",
			st.CurrentRelease, counts.Total, counts.Healthy, counts.Drifted, counts.Unknown)
	}
	markReady(&st.Conditions, env.Generation, message)
	st.ObservedGeneration = env.Generation
	return nil
}

func finishedAt(h v1alpha1.EnvironmentHistoryEntry) time.Time {
	if h.FinishedAt == nil {
		return time.Time{}
	}
	return h.FinishedAt.Time
}

func countTargets(env *v1alpha1.Environment, targets []v1alpha1.Target) (v1alpha1.TargetCounts, error) {
	var c v1alpha1.TargetCounts
	if env.Spec.TargetSelector == nil {
		return c, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(env.Spec.TargetSelector)
	if err != nil {
		return c, fmt.Errorf("spec.targetSelector: %w", err)
	}
	if sel.Empty() {
		return c, nil
	}
	for _, t := range targets {
		if !sel.Matches(labels.Set(t.Labels)) {
			continue
		}
		c.Total++
		switch {
		case t.Status.Drift == v1alpha1.DriftDrifted:
			c.Drifted++
		case t.Status.Drift == v1alpha1.DriftUnknown || t.Status.LastSeen == nil:
			c.Unknown++
		case t.Status.Health == v1alpha1.HealthHealthy:
			c.Healthy++
		}
	}
	return c, nil
}

func (r *EnvironmentReconciler) environmentsInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.EnvironmentList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, e := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&e)})
	}
	return reqs
}
