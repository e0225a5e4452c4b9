package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
)

// AnnotationCancel on a Promotion asks to cancel it: it ends Cancelled, and
// no more DeployTasks are created (those already started run to their end).
const AnnotationCancel = "stella-ops.org/cancel"

// Reason codes a promotion is rejected with before any gate runs.
const (
	reasonUpstreamNotSucceeded  = "promotion.upstream-not-succeeded"
	reasonRollbackTargetUnknown = "promotion.rollback-target-unknown"
)

// Condition reasons of Promotions.
const (
	reasonQueued          = "Queued"
	reasonCancelled       = "Cancelled"
	reasonAwaitingGates   = "AwaitingGates"
	reasonRejected        = "Rejected"
	reasonDeploying       = "Deploying"
	reasonFailed          = "Failed"
	reasonRollingBack     = "RollingBack"
	reasonRolledBack      = "RolledBack"
	reasonPromotionDone   = "Succeeded"
	reasonReleaseNotFound = "ReleaseNotFound"
	reasonEnvNotFound     = "EnvironmentNotFound"
)

// PromotionReconciler drives a Promotion through its phases: queue behind
// the environment's promotion in flight, evaluate the environment's gates on
// frozen inputs, record the decision, then deploy batch by batch through
// DeployTasks until every target succeeded or one failed.
type PromotionReconciler struct {
	client.Client
	// APIReader reads past the cache before actions with side effects.
	APIReader client.Reader
	Recorder  record.EventRecorder
	// Now is the clock; time.Now when nil.
	Now      func() time.Time
	programs programCache
	clock    decisionClock
}

func (r *PromotionReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// SetupWithManager registers the reconciler and what wakes it: its
// DeployTasks, the approvals and gates it waits for, and the other
// promotions of its environment (the queue).
func (r *PromotionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Promotion{}).
		Owns(&v1alpha1.DeployTask{}).
		Watches(&v1alpha1.Approval{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.(*v1alpha1.Approval).Spec.Promotion}}}
		})).
		Watches(&v1alpha1.Promotion{}, handler.EnqueueRequestsFromMapFunc(r.sameEnvironment)).
		Watches(&v1alpha1.Gate{}, handler.EnqueueRequestsFromMapFunc(r.openPromotionsInNamespace)).
		Watches(&v1alpha1.Environment{}, handler.EnqueueRequestsFromMapFunc(r.openPromotionsInNamespace)).
		Watches(&v1alpha1.Release{}, handler.EnqueueRequestsFromMapFunc(r.openPromotionsInNamespace)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}

// Reconcile reads like the promotion's life: each phase either finishes the
// reconcile (waiting, or done) or hands over to the next.
func (r *PromotionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	promo := &v1alpha1.Promotion{}
	if err := r.Get(ctx, req.NamespacedName, promo); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if promo.Status.Phase.IsTerminal() || !promo.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	// The cache can lag behind this reconciler's own last status write; an
	// open promotion is read from the server, so that no step it completed
	// (its decision above all) is ever taken twice.
	if err := r.uncached().Get(ctx, req.NamespacedName, promo); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if promo.Status.Phase.IsTerminal() {
		return ctrl.Result{}, nil
	}
	before := promo.DeepCopy()
	defer func() {
		if promo.Status.Phase != before.Status.Phase {
			promotionPhases.WithLabelValues(string(promo.Status.Phase)).Inc()
			r.Recorder.Eventf(promo, "Normal", string(promo.Status.Phase), "%s", readyMessage(promo))
		}
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, before, promo))
	}()

	if promo.Status.Phase == "" {
		promo.Status.Phase = v1alpha1.PromotionPending
		promo.Status.StartedAt = &metav1.Time{Time: r.now()}
	}
	if promo.Status.Decision == nil || promo.Status.Decision.Result == v1alpha1.DecisionPending {
		r.clock.seen(promo, time.Now())
	}
	if _, cancel := promo.Annotations[AnnotationCancel]; cancel {
		r.finish(promo, v1alpha1.PromotionCancelled, reasonCancelled, fmt.Sprintf("cancelled on request in phase %s", before.Status.Phase))
		return ctrl.Result{}, nil
	}
	if ahead, err := r.promotionAhead(ctx, promo); err != nil || ahead != "" {
		setProgress(promo, reasonQueued, fmt.Sprintf("waiting for promotion %s to finish in environment %s", ahead, promo.Spec.Environment))
		return ctrl.Result{}, err
	}
	rel, env, err := r.references(ctx, promo)
	if err != nil || rel == nil || env == nil {
		return ctrl.Result{}, err
	}
	if promo.Status.Decision == nil || promo.Status.Decision.Result == v1alpha1.DecisionPending {
		res, done, err := r.decide(ctx, promo, rel, env)
		if done || err != nil {
			return res, err
		}
		// The decision is stored before anything is deployed, so that a crash
		// here can never lead to deciding again with tasks already out.
		return ctrl.Result{Requeue: true}, nil
	}
	return r.deploy(ctx, promo, rel, env)
}

// promotionAhead names the promotion of the same environment that goes
// first: the oldest one still open. One promotion is in flight per
// environment; the others wait in creation order.
func (r *PromotionReconciler) promotionAhead(ctx context.Context, promo *v1alpha1.Promotion) (string, error) {
	var list v1alpha1.PromotionList
	if err := r.List(ctx, &list, client.InNamespace(promo.Namespace)); err != nil {
		return "", err
	}
	var open []v1alpha1.Promotion
	for _, p := range list.Items {
		if p.Spec.Environment == promo.Spec.Environment && !p.Status.Phase.IsTerminal() {
			open = append(open, p)
		}
	}
	slices.SortFunc(open, func(a, b v1alpha1.Promotion) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if len(open) == 0 || open[0].Name == promo.Name {
		return "", nil
	}
	return open[0].Name, nil
}

// references loads the release and environment; a missing one leaves the
// promotion waiting with a condition that names the field, since creating
// the object lets it go on.
func (r *PromotionReconciler) references(ctx context.Context, promo *v1alpha1.Promotion) (*v1alpha1.Release, *v1alpha1.Environment, error) {
	rel := &v1alpha1.Release{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: promo.Namespace, Name: promo.Spec.Release}, rel); err != nil {
		if apierrors.IsNotFound(err) {
			setStalled(promo, reasonReleaseNotFound, fmt.Sprintf("spec.release: Release %s does not exist in namespace %s; create it or promote an existing release", promo.Spec.Release, promo.Namespace))
			return nil, nil, nil
		}
		return nil, nil, err
	}
	env := &v1alpha1.Environment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: promo.Namespace, Name: promo.Spec.Environment}, env); err != nil {
		if apierrors.IsNotFound(err) {
			setStalled(promo, reasonEnvNotFound, fmt.Sprintf("spec.environment: Environment %s does not exist in namespace %s; create it or promote to an existing environment", promo.Spec.Environment, promo.Namespace))
			return nil, nil, nil
		}
		return nil, nil, err
	}
	meta.RemoveStatusCondition(&promo.Status.Conditions, v1alpha1.ConditionStalled)
	return rel, env, nil
}

// decide evaluates the gates until the decision is final. It reports done
// when the promotion must wait (pending) or has ended (denied).
func (r *PromotionReconciler) decide(ctx context.Context, promo *v1alpha1.Promotion, rel *v1alpha1.Release, env *v1alpha1.Environment) (ctrl.Result, bool, error) {
	if promo.Spec.Rollback && !succeededIn(rel.Name, *env) {
		promo.Status.Decision = &v1alpha1.Decision{Result: v1alpha1.DecisionDeny, ReasonCodes: []string{reasonRollbackTargetUnknown},
			DecidedAt: &metav1.Time{Time: r.now()}}
		r.finish(promo, v1alpha1.PromotionRejected, reasonRejected,
			fmt.Sprintf("a rollback returns to a release that succeeded in %s before, and %s never did", env.Name, rel.Name))
		return ctrl.Result{}, true, nil
	}
	if !promo.Spec.Rollback && !r.succeededUpstream(ctx, rel.Name, env) {
		promo.Status.Decision = &v1alpha1.Decision{Result: v1alpha1.DecisionDeny, ReasonCodes: []string{reasonUpstreamNotSucceeded},
			DecidedAt: &metav1.Time{Time: r.now()}}
		r.finish(promo, v1alpha1.PromotionRejected, reasonRejected,
			fmt.Sprintf("release %s has not succeeded in any of %v, which environment %s promotes from", rel.Name, env.Spec.PromotesFrom, env.Name))
		return ctrl.Result{}, true, nil
	}
	f, err := r.freeze(ctx, promo, rel, env)
	if err != nil {
		return ctrl.Result{}, true, err
	}
	record, evals := r.evaluate(f)
	hash, err := record.Hash()
	if err != nil {
		return ctrl.Result{}, true, err
	}
	inputsDigest, err := record.InputsDigest()
	if err != nil {
		return ctrl.Result{}, true, err
	}
	promo.Status.Gates = evals
	promo.Status.Decision = &v1alpha1.Decision{
		Result: record.Result, ReasonCodes: record.ReasonCodes, PolicyDigest: record.Inputs.PolicyDigest(),
		InputsDigest: inputsDigest, DeterminismHash: hash, DecidedAt: &metav1.Time{Time: f.now},
	}
	r.clock.observe(promo, evals, time.Now())
	switch record.Result {
	case v1alpha1.DecisionDeny:
		r.finish(promo, v1alpha1.PromotionRejected, reasonRejected, "rejected by the gates: "+joinCodes(record.ReasonCodes))
		return ctrl.Result{}, true, nil
	case v1alpha1.DecisionPending:
		promo.Status.Phase = v1alpha1.PromotionEvaluating
		if onlyApprovalsPending(evals) {
			promo.Status.Phase = v1alpha1.PromotionAwaitingApproval
		}
		setProgress(promo, reasonAwaitingGates, "waiting for the gates: "+joinCodes(record.ReasonCodes))
		return ctrl.Result{RequeueAfter: untilEarliestRetry(evals, f.now)}, true, nil
	}
	promo.Status.Phase = v1alpha1.PromotionApproved
	return ctrl.Result{}, false, nil
}

// Explanation is what the gates would decide about a promotion now.
type Explanation struct {
	// UpstreamOK says whether the release succeeded in an environment the
	// target environment promotes from (or it promotes from none).
	UpstreamOK bool
	// Decision is the combined decision, with its frozen inputs.
	Decision decision.Record
	// Gates are the verdicts, in the environment's order.
	Gates []v1alpha1.GateEvaluation
}

// Explain evaluates the gates promo would face now, with the current inputs,
// and changes nothing: `stellactl gates check` is built on it.
func (r *PromotionReconciler) Explain(ctx context.Context, promo *v1alpha1.Promotion) (Explanation, error) {
	rel := &v1alpha1.Release{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: promo.Namespace, Name: promo.Spec.Release}, rel); err != nil {
		return Explanation{}, fmt.Errorf("release %s: %w", promo.Spec.Release, err)
	}
	env := &v1alpha1.Environment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: promo.Namespace, Name: promo.Spec.Environment}, env); err != nil {
		return Explanation{}, fmt.Errorf("environment %s: %w", promo.Spec.Environment, err)
	}
	f, err := r.freeze(ctx, promo, rel, env)
	if err != nil {
		return Explanation{}, err
	}
	record, evals := r.evaluate(f)
	return Explanation{UpstreamOK: r.succeededUpstream(ctx, rel.Name, env), Decision: record, Gates: evals}, nil
}

// succeededUpstream says whether release succeeded in an environment env
// promotes from: by a Succeeded promotion there (the environment's status
// may not show it yet), or by that environment's history (the promotion may
// have been deleted since).
func (r *PromotionReconciler) succeededUpstream(ctx context.Context, release string, env *v1alpha1.Environment) bool {
	if len(env.Spec.PromotesFrom) == 0 {
		return true
	}
	var promos v1alpha1.PromotionList
	if err := r.List(ctx, &promos, client.InNamespace(env.Namespace)); err == nil {
		for _, p := range promos.Items {
			if p.Spec.Release == release && p.Status.Phase == v1alpha1.PromotionSucceeded && slices.Contains(env.Spec.PromotesFrom, p.Spec.Environment) {
				return true
			}
		}
	}
	var envs v1alpha1.EnvironmentList
	if err := r.List(ctx, &envs, client.InNamespace(env.Namespace)); err != nil {
		return false
	}
	return succeededUpstream(release, env, envs.Items)
}

// succeededUpstream says whether release has succeeded in one of the
// environments env promotes from (always, when it names none).
func succeededUpstream(release string, env *v1alpha1.Environment, all []v1alpha1.Environment) bool {
	if len(env.Spec.PromotesFrom) == 0 {
		return true
	}
	for _, up := range all {
		if slices.Contains(env.Spec.PromotesFrom, up.Name) && succeededIn(release, up) {
			return true
		}
	}
	return false
}

// succeededIn says whether release runs in env or succeeded there before.
func succeededIn(release string, env v1alpha1.Environment) bool {
	if env.Status.CurrentRelease == release {
		return true
	}
	for _, h := range env.Status.History {
		if h.Release == release && h.Phase == v1alpha1.PromotionSucceeded {
			return true
		}
	}
	return false
}

func onlyApprovalsPending(evals []v1alpha1.GateEvaluation) bool {
	pending := false
	for _, e := range evals {
		if e.Result == v1alpha1.GatePending {
			if e.Type != "approval" {
				return false
			}
			pending = true
		}
	}
	return pending
}

// untilEarliestRetry is how long until the first pending gate changes by
// itself (a freeze window opening); zero when only events can change them.
func untilEarliestRetry(evals []v1alpha1.GateEvaluation, now time.Time) time.Duration {
	var earliest time.Time
	for _, e := range evals {
		if e.Result == v1alpha1.GatePending && e.RetryAt != nil && (earliest.IsZero() || e.RetryAt.Before(&metav1.Time{Time: earliest})) {
			earliest = e.RetryAt.Time
		}
	}
	if earliest.IsZero() {
		return 0
	}
	return max(time.Second, earliest.Sub(now))
}

// finish ends the promotion in a terminal phase.
func (r *PromotionReconciler) finish(promo *v1alpha1.Promotion, phase v1alpha1.PromotionPhase, reason, message string) {
	r.clock.firstSeen.Delete(promo.UID)
	promo.Status.Phase = phase
	promo.Status.FinishedAt = &metav1.Time{Time: r.now()}
	meta.RemoveStatusCondition(&promo.Status.Conditions, v1alpha1.ConditionReconciling)
	meta.RemoveStatusCondition(&promo.Status.Conditions, v1alpha1.ConditionStalled)
	status := metav1.ConditionFalse
	if phase == v1alpha1.PromotionSucceeded {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&promo.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: status,
		Reason: reason, Message: truncate(message, 1024), ObservedGeneration: promo.Generation})
	promo.Status.ObservedGeneration = promo.Generation
}

// setProgress says the promotion is on its way, waiting or working.
func setProgress(promo *v1alpha1.Promotion, reason, message string) {
	message = truncate(message, 1024)
	for _, t := range []string{v1alpha1.ConditionReconciling, v1alpha1.ConditionReady} {
		status := metav1.ConditionTrue
		if t == v1alpha1.ConditionReady {
			status = metav1.ConditionFalse
		}
		meta.SetStatusCondition(&promo.Status.Conditions, metav1.Condition{Type: t, Status: status, Reason: reason, Message: message, ObservedGeneration: promo.Generation})
	}
}

// setStalled says the promotion cannot go on until something is created or
// changed; the message names the field.
func setStalled(promo *v1alpha1.Promotion, reason, message string) {
	for _, t := range []string{v1alpha1.ConditionStalled, v1alpha1.ConditionReady} {
		status := metav1.ConditionTrue
		if t == v1alpha1.ConditionReady {
			status = metav1.ConditionFalse
		}
		meta.SetStatusCondition(&promo.Status.Conditions, metav1.Condition{Type: t, Status: status, Reason: reason, Message: message, ObservedGeneration: promo.Generation})
	}
	meta.RemoveStatusCondition(&promo.Status.Conditions, v1alpha1.ConditionReconciling)
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

// sameEnvironment wakes the open promotions of an environment when one of
// them changes, so the next in the queue starts when the one ahead ends.
func (r *PromotionReconciler) sameEnvironment(ctx context.Context, o client.Object) []reconcile.Request {
	changed := o.(*v1alpha1.Promotion)
	return r.openPromotions(ctx, changed.Namespace, func(p *v1alpha1.Promotion) bool {
		return p.Spec.Environment == changed.Spec.Environment && p.Name != changed.Name
	})
}

// openPromotionsInNamespace wakes the promotions of the object's namespace
// that still wait for a decision: a gate, release or environment they may
// wait for changed. Promotions already deploying do not look at these.
func (r *PromotionReconciler) openPromotionsInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	return r.openPromotions(ctx, o.GetNamespace(), func(p *v1alpha1.Promotion) bool {
		return p.Status.Decision == nil || p.Status.Decision.Result == v1alpha1.DecisionPending
	})
}

func (r *PromotionReconciler) openPromotions(ctx context.Context, ns string, match func(*v1alpha1.Promotion) bool) []reconcile.Request {
	var list v1alpha1.PromotionList
	if err := r.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		p := &list.Items[i]
		if !p.Status.Phase.IsTerminal() && match(p) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(p)})
		}
	}
	return reqs
}
