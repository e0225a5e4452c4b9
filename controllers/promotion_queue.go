package controllers

import (
	"context"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// start marks a new promotion Pending, with the revision the queue orders
// it by. That first write holds only if the promotion is still as read, so
// the recorded revision is the one the queue placed it by so far.
func (r *PromotionReconciler) start(_ context.Context, run *promotionRun) (outcome, error) {
	promo := run.promo
	if promo.Status.Phase == "" {
		promo.Status.Phase = v1alpha1.PromotionPending
		promo.Status.StartedAt = &metav1.Time{Time: r.now()}
		promo.Status.CreationRevision = promo.ResourceVersion
	}
	if !decided(promo) {
		r.clock.seen(promo, r.now())
	}
	return next(), nil
}

// cancelOnRequest ends the promotion when the cancel annotation asks for
// it, whoever set it: a person (stellactl promote cancel) or the
// auto-promotion that superseded it. Its value, when not "true", says why.
func (r *PromotionReconciler) cancelOnRequest(_ context.Context, run *promotionRun) (outcome, error) {
	why, cancel := run.promo.Annotations[v1alpha1.AnnotationCancel]
	if !cancel {
		return next(), nil
	}
	message := fmt.Sprintf("cancelled on request in phase %s", run.promo.Status.Phase)
	if why != "" && why != "true" {
		message += ": " + why
	}
	return end(v1alpha1.PromotionCancelled, v1alpha1.ReasonCancelled, message), nil
}

// waitForTurn holds the promotion while another of its environment goes
// first.
func (r *PromotionReconciler) waitForTurn(ctx context.Context, run *promotionRun) (outcome, error) {
	ahead, err := r.promotionAhead(ctx, run.promo)
	if err != nil {
		return outcome{}, err
	}
	if ahead != "" {
		return waiting(v1alpha1.ReasonQueued, fmt.Sprintf("waiting for promotion %s to finish in environment %s", ahead, run.promo.Spec.Environment), 0), nil
	}
	return next(), nil
}

// promotionAhead names the promotion of the same environment that goes
// first: the one in flight (past its start), else the oldest one still open.
// One promotion is in flight per environment; the others wait in the order
// the storage created them (promotionOrder).
func (r *PromotionReconciler) promotionAhead(ctx context.Context, promo *v1alpha1.Promotion) (string, error) {
	var list v1alpha1.PromotionList
	if err := r.List(ctx, &list, client.InNamespace(promo.Namespace), client.MatchingFields{indexEnvironment: promo.Spec.Environment},
		client.UnsafeDisableDeepCopy); err != nil {
		return "", err
	}
	var open []*v1alpha1.Promotion
	for i := range list.Items {
		if p := &list.Items[i]; !p.Status.Phase.IsTerminal() {
			open = append(open, p)
		}
	}
	slices.SortFunc(open, queueOrder)
	if len(open) == 0 || open[0].Name == promo.Name {
		return "", nil
	}
	return open[0].Name, nil
}

// queueOrder puts a started promotion first, then the older one.
func queueOrder(a, b *v1alpha1.Promotion) int {
	if sa, sb := started(a), started(b); sa != sb {
		if sa {
			return -1
		}
		return 1
	}
	return promotionOrder(a).compare(promotionOrder(b))
}

// started says whether a promotion left the queue: its gates ran.
func started(p *v1alpha1.Promotion) bool {
	return p.Status.Decision != nil || (p.Status.Phase != "" && p.Status.Phase != v1alpha1.PromotionPending)
}
