package controllers

import (
	"context"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// approvedPromotion wakes the promotion an Approval names.
func approvedPromotion(_ context.Context, o client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.(*v1alpha1.Approval).Spec.Promotion}}}
}

// leftQueue passes a promotion's changes that may let the next one of its
// environment start: it ended, it is gone, or it moved back in the queue (a
// change before its first reconcile gives it a later revision). A new
// promotion queues behind the others.
var leftQueue = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		before, after := e.ObjectOld.(*v1alpha1.Promotion), e.ObjectNew.(*v1alpha1.Promotion)
		return (after.Status.Phase.IsTerminal() && !before.Status.Phase.IsTerminal()) ||
			promotionOrder(after).compare(promotionOrder(before)) != 0
	},
}

// queuedBehind wakes the open promotions of the changed one's environment.
func (r *PromotionReconciler) queuedBehind(ctx context.Context, o client.Object) []reconcile.Request {
	changed := o.(*v1alpha1.Promotion)
	return r.openPromotionsOf(ctx, changed.Namespace, changed.Spec.Environment, func(p *v1alpha1.Promotion) bool { return p.Name != changed.Name })
}

// undecidedBehindGate wakes the undecided promotions into environments
// that name the changed gate.
func (r *PromotionReconciler) undecidedBehindGate(ctx context.Context, o client.Object) []reconcile.Request {
	return r.undecidedInto(ctx, o.GetNamespace(), environmentsNaming(ctx, r.Client, o.GetNamespace(), o.GetName()))
}

// waitingOnEnvironment wakes the undecided promotions whose decision reads
// the changed environment (those into it, into environments that promote
// from it, and into environments whose soak or dependency gates name it),
// and the decided promotions into it that have no rollout plan yet: a
// changed target selector or spec.allowEmpty may let them go on.
func (r *PromotionReconciler) waitingOnEnvironment(ctx context.Context, o client.Object) []reconcile.Request {
	ns := o.GetNamespace()
	envs := []string{o.GetName()}
	var downstream v1alpha1.EnvironmentList
	if err := r.List(ctx, &downstream, client.InNamespace(ns), client.MatchingFields{indexUpstreams: o.GetName()}, client.UnsafeDisableDeepCopy); err == nil {
		for _, e := range downstream.Items {
			envs = append(envs, e.Name)
		}
	}
	var readers v1alpha1.GateList
	if err := r.List(ctx, &readers, client.InNamespace(ns), client.MatchingFields{indexEnvironment: o.GetName()}, client.UnsafeDisableDeepCopy); err == nil {
		for _, g := range readers.Items {
			envs = append(envs, environmentsNaming(ctx, r.Client, ns, g.Name)...)
		}
	}
	unplanned := func(p *v1alpha1.Promotion) bool { return decided(p) && len(p.Status.Targets) == 0 }
	return append(r.undecidedInto(ctx, ns, envs), r.openPromotionsOf(ctx, ns, o.GetName(), unplanned)...)
}

// undecidedOfRelease wakes the undecided promotions of the changed release.
func (r *PromotionReconciler) undecidedOfRelease(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.PromotionList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexRelease: o.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	return openRequests(list.Items, func(*v1alpha1.Promotion) bool { return true })
}

// undecidedOfImage wakes the undecided promotions of the releases that pin
// the image a scan report is about.
func (r *PromotionReconciler) undecidedOfImage(ctx context.Context, o client.Object) []reconcile.Request {
	var releases v1alpha1.ReleaseList
	if err := r.List(ctx, &releases, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexDigest: o.(*v1alpha1.ScanReport).Spec.Image.Digest()},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range releases.Items {
		reqs = append(reqs, r.undecidedOfRelease(ctx, &releases.Items[i])...)
	}
	return reqs
}

// environmentsNaming are the environments whose spec.gates name gate.
func environmentsNaming(ctx context.Context, c client.Reader, ns, gate string) []string {
	var list v1alpha1.EnvironmentList
	if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{indexGates: gate}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	names := make([]string, 0, len(list.Items))
	for _, e := range list.Items {
		names = append(names, e.Name)
	}
	return names
}

func (r *PromotionReconciler) undecidedInto(ctx context.Context, ns string, envs []string) []reconcile.Request {
	var reqs []reconcile.Request
	for _, env := range slices.Compact(slices.Sorted(slices.Values(envs))) {
		reqs = append(reqs, r.openPromotionsOf(ctx, ns, env, func(p *v1alpha1.Promotion) bool { return !decided(p) })...)
	}
	return reqs
}

func (r *PromotionReconciler) openPromotionsOf(ctx context.Context, ns, env string, match func(*v1alpha1.Promotion) bool) []reconcile.Request {
	var list v1alpha1.PromotionList
	if err := r.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{indexEnvironment: env}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	return openRequests(list.Items, match)
}

// openRequests are the requests of the open promotions that match.
func openRequests(promos []v1alpha1.Promotion, match func(*v1alpha1.Promotion) bool) []reconcile.Request {
	var reqs []reconcile.Request
	for i := range promos {
		p := &promos[i]
		if !p.Status.Phase.IsTerminal() && match(p) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(p)})
		}
	}
	return reqs
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
// new or deleted Target (a promotion held over too many targets may then
// go on), new labels, or another Ready reason or message (its agent
// joined, or went silent).
var targetPresenceChanged = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return true },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		was, is := e.ObjectOld.(*v1alpha1.Target), e.ObjectNew.(*v1alpha1.Target)
		before, after := meta.FindStatusCondition(was.Status.Conditions, v1alpha1.ConditionReady), meta.FindStatusCondition(is.Status.Conditions, v1alpha1.ConditionReady)
		return !maps.Equal(was.Labels, is.Labels) || (before == nil) != (after == nil) ||
			(before != nil && (before.Reason != after.Reason || before.Message != after.Message))
	},
}
