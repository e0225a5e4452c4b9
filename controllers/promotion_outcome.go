package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/gates"
)

// promotionRun is one reconcile of a promotion: the promotion as it is
// being changed, its status as last stored, and what the steps loaded and
// found on the way.
type promotionRun struct {
	promo *v1alpha1.Promotion
	// stored is the promotion as read, then as last written.
	stored *v1alpha1.Promotion
	// asRead makes a write hold only over the version stored was read at.
	// It holds until the decision is stored, so that a stale cache can
	// never decide twice nor overwrite a decision.
	asRead bool

	rel *v1alpha1.Release
	env *v1alpha1.Environment
	// evaluatedAt is when this run evaluated the gates, told to the
	// decision metric once the result is stored.
	evaluatedAt time.Time
	// deploys and rollbacks are the promotion's DeployTasks by target.
	deploys, rollbacks map[string]*v1alpha1.DeployTask
	// retry is how soon a task's deadline passes.
	retry time.Duration
	// failure says why the rollout stopped, once a target failed.
	failure string
}

func newPromotionRun(promo *v1alpha1.Promotion) *promotionRun {
	return &promotionRun{promo: promo, stored: promo.DeepCopy(), asRead: !decided(promo)}
}

// outcomeKind is how a step left the promotion.
type outcomeKind int

const (
	// proceed hands over to the next step.
	proceed outcomeKind = iota
	// progressing: the promotion waits for something outside, or works;
	// Reconciling says on what.
	progressing
	// stalled: the promotion cannot go on until an object is created or
	// changed; Stalled names the field.
	stalled
	// ended: the promotion reached a terminal phase.
	ended
)

func (k outcomeKind) String() string {
	return [...]string{"proceed", "progressing", "stalled", "ended"}[k]
}

// outcome is what a step tells the reconcile: how the promotion stands, in
// the words of its Ready condition, and when to look again.
type outcome struct {
	kind            outcomeKind
	reason, message string
	// phase is the terminal phase of an ended promotion.
	phase v1alpha1.PromotionPhase
	// requeueAfter is when something changes by itself (a deadline, a
	// freeze window); zero when only a watched change can.
	requeueAfter time.Duration
}

func next() outcome { return outcome{kind: proceed} }

func waiting(reason, message string, requeueAfter time.Duration) outcome {
	return outcome{kind: progressing, reason: reason, message: message, requeueAfter: requeueAfter}
}

func stall(reason, message string) outcome {
	return outcome{kind: stalled, reason: reason, message: message}
}

func end(phase v1alpha1.PromotionPhase, reason, message string) outcome {
	return outcome{kind: ended, phase: phase, reason: reason, message: message}
}

// summarize is the one place that turns a reconcile's outcome, or its
// error, into the promotion's phase and conditions: Ready always, with
// Reconciling while it waits or retries and Stalled while it cannot go on.
// A conflict changes nothing: the promotion is read again.
func summarize(promo *v1alpha1.Promotion, out outcome, err error, now time.Time) {
	conds, gen := &promo.Status.Conditions, promo.Generation
	switch {
	case err != nil:
		if !apierrors.IsConflict(err) {
			// What blocks the promotion shows in Ready, not only in the log.
			markReconciling(conds, gen, v1alpha1.ReasonRetrying, gates.Truncate(err.Error()+"; retrying", 1024))
			meta.RemoveStatusCondition(conds, v1alpha1.ConditionStalled)
		}
	case out.kind == ended:
		promo.Status.Phase = out.phase
		promo.Status.FinishedAt = &metav1.Time{Time: now}
		status := metav1.ConditionFalse
		if out.phase == v1alpha1.PromotionSucceeded {
			status = metav1.ConditionTrue
		}
		meta.RemoveStatusCondition(conds, v1alpha1.ConditionReconciling)
		meta.RemoveStatusCondition(conds, v1alpha1.ConditionStalled)
		meta.SetStatusCondition(conds, metav1.Condition{Type: v1alpha1.ConditionReady, Status: status,
			Reason: out.reason, Message: gates.Truncate(out.message, 1024), ObservedGeneration: gen})
		promo.Status.ObservedGeneration = gen
	case out.kind == stalled:
		markStalled(conds, gen, out.reason, gates.Truncate(out.message, 1024))
	case out.kind == progressing:
		markReconciling(conds, gen, out.reason, gates.Truncate(out.message, 1024))
		meta.RemoveStatusCondition(conds, v1alpha1.ConditionStalled)
	}
}

// write stores the status changes since the run's last write, then tells
// of a new phase by an event and the phase metric. A write over the
// version read (before the decision is stored, and the one that ends the
// promotion) fails with a conflict when the promotion changed since: a
// stale read never decides or ends it twice.
func (r *PromotionReconciler) write(ctx context.Context, run *promotionRun) error {
	promo, stored := run.promo, run.stored
	write := patchStatus
	if run.asRead || promo.Status.Phase.IsTerminal() {
		write = patchStatusAsRead
	}
	if err := write(ctx, r.Client, stored, promo); err != nil {
		return err
	}
	if promo.Status.Phase != stored.Status.Phase {
		promotionPhases.WithLabelValues(string(promo.Status.Phase)).Inc()
		// Events tell how a promotion ended, not every step on the way:
		// each is one more write, and the phase and conditions already
		// show where it stands.
		if promo.Status.Phase.IsTerminal() {
			r.Recorder.Eventf(promo, endingEventType(promo.Status.Phase), string(promo.Status.Phase), "%s", readyMessage(promo))
		}
	}
	if !run.evaluatedAt.IsZero() {
		r.clock.observe(promo, promo.Status.Gates, run.evaluatedAt)
		run.evaluatedAt = time.Time{}
	}
	if promo.Status.Phase.IsTerminal() {
		r.clock.firstSeen.Delete(promo.UID)
	}
	run.stored, run.asRead = promo.DeepCopy(), false
	return nil
}

// writeRefusal stores, over the status as last stored, only why the API
// refused the status the run computed: without it a refused write would
// leave the promotion showing nothing at all, the cause only in the log.
func (r *PromotionReconciler) writeRefusal(ctx context.Context, run *promotionRun, refusal error) error {
	promo := run.stored.DeepCopy()
	if promo.Status.Phase == "" {
		// Started as well, so that the write keeps the queue's order.
		promo.Status.Phase, promo.Status.StartedAt, promo.Status.CreationRevision =
			v1alpha1.PromotionPending, run.promo.Status.StartedAt, run.promo.Status.CreationRevision
	}
	summarize(promo, outcome{}, fmt.Errorf("the API refused the promotion's status: %w", refusal), r.now())
	return patchStatusAsRead(ctx, r.Client, run.stored, promo)
}

// endingEventType is Warning for an ending someone should look at.
func endingEventType(phase v1alpha1.PromotionPhase) string {
	switch phase {
	case v1alpha1.PromotionSucceeded, v1alpha1.PromotionCancelled:
		return corev1.EventTypeNormal
	}
	return corev1.EventTypeWarning
}

func readyMessage(promo *v1alpha1.Promotion) string {
	if c := meta.FindStatusCondition(promo.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Message
	}
	return string(promo.Status.Phase)
}

func joinCodes(codes []string) string {
	if len(codes) == 0 {
		return "none"
	}
	return fmt.Sprint(codes)
}
