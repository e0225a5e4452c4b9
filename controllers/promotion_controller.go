package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/evaluation"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/gates"
	"github.com/stella-ops/stella/internal/inputs"
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
	// Evidence keeps each final decision's statement for sealing; nil
	// keeps none.
	Evidence *evidence.Sealer
	// Now is the clock; time.Now when nil.
	Now   func() time.Time
	clock decisionClock
}

func (r *PromotionReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// SetupWithManager registers the reconciler and what wakes it: its
// DeployTasks, the approvals and gates it waits for, and the other
// promotions of its environment (the queue). Its own status writes do not
// wake it: each reconcile already acted on what it wrote.
func (r *PromotionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Promotion{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&v1alpha1.DeployTask{}).
		Watches(&v1alpha1.Approval{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.(*v1alpha1.Approval).Spec.Promotion}}}
		})).
		Watches(&v1alpha1.Promotion{}, handler.EnqueueRequestsFromMapFunc(r.queuedBehind), builder.WithPredicates(leftQueue)).
		Watches(&v1alpha1.Gate{}, handler.EnqueueRequestsFromMapFunc(r.undecidedBehindGate)).
		Watches(&v1alpha1.Environment{}, handler.EnqueueRequestsFromMapFunc(r.undecidedReadingEnvironment)).
		Watches(&v1alpha1.Release{}, handler.EnqueueRequestsFromMapFunc(r.undecidedOfRelease)).
		Watches(&v1alpha1.ScanReport{}, handler.EnqueueRequestsFromMapFunc(r.undecidedOfImage)).
		Watches(&v1alpha1.Target{}, handler.EnqueueRequestsFromMapFunc(r.waitingOnTarget), builder.WithPredicates(targetPresenceChanged)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 8}).
		Complete(r)
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=promotions;releases;environments;gates;approvals;scanreports;targets;deploytasks,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=promotions/status;deploytasks/status,verbs=patch
// +kubebuilder:rbac:groups=stella-ops.org,resources=deploytasks,verbs=create
// A DeployTask's owner reference blocks the promotion's deletion, which the
// OwnerReferencesPermissionEnforcement admission plugin allows only to
// those who may update the promotion's finalizers.
// +kubebuilder:rbac:groups=stella-ops.org,resources=promotions/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile reads like the promotion's life: each phase either finishes the
// reconcile (waiting, or done) or hands over to the next.
func (r *PromotionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	promo := &v1alpha1.Promotion{}
	if err := r.Get(ctx, req.NamespacedName, promo); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if promo.Status.Phase.IsTerminal() || !promo.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	// The cache can lag behind this reconciler's own last write. Until the
	// decision is stored, each write holds only if the promotion is still
	// as read, so that a decision is never taken twice nor overwritten; a
	// conflict means reading again. Every later step is safe to repeat.
	before, fromRead := promo.DeepCopy(), !decided(promo)
	var evaluatedAt time.Time
	store := func() error {
		if err := r.persist(ctx, before, promo, fromRead); err != nil {
			evaluatedAt = time.Time{} // the evaluation is not kept
			return err
		}
		if !evaluatedAt.IsZero() {
			r.clock.observe(promo, promo.Status.Gates, evaluatedAt)
			evaluatedAt = time.Time{}
		}
		if promo.Status.Phase.IsTerminal() {
			r.clock.firstSeen.Delete(promo.UID)
		}
		return nil
	}
	defer func() {
		if retErr != nil && !apierrors.IsConflict(retErr) && !promo.Status.Phase.IsTerminal() {
			// What blocks the promotion shows in Ready, not only in the log.
			setProgress(promo, v1alpha1.ReasonRetrying, retErr.Error()+"; retrying")
		}
		retErr = errors.Join(retErr, store())
		if apierrors.IsConflict(retErr) {
			res, retErr = ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
	}()

	if promo.Status.Phase == "" {
		promo.Status.Phase = v1alpha1.PromotionPending
		promo.Status.StartedAt = &metav1.Time{Time: r.now()}
		// This first write holds only if the promotion is still as read, so
		// the recorded revision is the one the queue placed it by so far.
		promo.Status.CreationRevision = promo.ResourceVersion
	}
	if !decided(promo) {
		r.clock.seen(promo, time.Now())
	}
	if why, cancel := promo.Annotations[v1alpha1.AnnotationCancel]; cancel {
		message := fmt.Sprintf("cancelled on request in phase %s", before.Status.Phase)
		if why != "" && why != "true" {
			message += ": " + why
		}
		r.finish(promo, v1alpha1.PromotionCancelled, reasonCancelled, message)
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
	if !decided(promo) {
		waiting, done, err := r.decide(ctx, promo, rel, env)
		if err == nil {
			evaluatedAt = time.Now()
		}
		if done || err != nil {
			return waiting, err
		}
		if err := r.planRollout(ctx, promo, rel, env); err != nil || promo.Status.Phase.IsTerminal() {
			return ctrl.Result{}, err
		}
		// The decision and the rollout plan are stored before anything is
		// deployed, so that a crash here can never lead to deciding again
		// with tasks already out.
		if err := store(); err != nil {
			before = promo // nothing more to write
			return ctrl.Result{}, err
		}
		before, fromRead = promo.DeepCopy(), false
	}
	return r.deploy(ctx, promo, rel, env)
}

// conflictRetry is how soon a promotion whose write met a newer version is
// read again: the cache has then most likely caught up.
const conflictRetry = 200 * time.Millisecond

// decided says whether the promotion's decision is final.
func decided(promo *v1alpha1.Promotion) bool {
	return promo.Status.Decision != nil && promo.Status.Decision.Result != v1alpha1.DecisionPending
}

// persist writes the status changes since before, and tells of a new phase
// by an event and the phase metric once it is stored. With asRead, and for
// the write that ends the promotion, the write fails with a conflict when
// the promotion changed since it was read: a stale read never ends it twice.
func (r *PromotionReconciler) persist(ctx context.Context, before, promo *v1alpha1.Promotion, asRead bool) error {
	write := patchStatus
	if asRead || promo.Status.Phase.IsTerminal() {
		write = patchStatusAsRead
	}
	if err := write(ctx, r.Client, before, promo); err != nil {
		return err
	}
	if promo.Status.Phase != before.Status.Phase {
		promotionPhases.WithLabelValues(string(promo.Status.Phase)).Inc()
		r.Recorder.Eventf(promo, "Normal", string(promo.Status.Phase), "%s", readyMessage(promo))
	}
	return nil
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
	in, err := inputs.Gather(ctx, r.reader(), promo, rel, env, r.now())
	if err != nil {
		return ctrl.Result{}, true, err
	}
	record, evals, err := (&evaluation.Evaluator{Namespace: promo.Namespace}).Evaluate(in)
	if err != nil {
		return ctrl.Result{}, true, err
	}
	decidedAt, err := time.Parse(time.RFC3339, record.Inputs.Clock)
	if err != nil {
		return ctrl.Result{}, true, err
	}
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
		InputsDigest: inputsDigest, DeterminismHash: hash, DecidedAt: &metav1.Time{Time: decidedAt},
	}
	if record.Result != v1alpha1.DecisionPending {
		if err := r.keepStatement(promo, rel, record); err != nil {
			return ctrl.Result{}, true, err
		}
	}
	if i := slices.IndexFunc(evals, func(e v1alpha1.GateEvaluation) bool { return e.Name == evaluation.RefusalGate }); i >= 0 {
		r.finish(promo, v1alpha1.PromotionRejected, reasonRejected, evals[i].Message)
		return ctrl.Result{}, true, nil
	}
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
		return ctrl.Result{RequeueAfter: untilEarliestRetry(evals, decidedAt)}, true, nil
	}
	promo.Status.Phase = v1alpha1.PromotionApproved
	return ctrl.Result{}, false, nil
}

// keepStatement stores the in-toto statement of a final decision in the
// evidence store, before the decision itself is stored, and names the
// EvidencePacket that will seal it.
func (r *PromotionReconciler) keepStatement(promo *v1alpha1.Promotion, rel *v1alpha1.Release, record decision.Record) error {
	if r.Evidence == nil {
		return nil
	}
	statement, err := evidence.DecisionStatement(promo.Namespace, promo.Name, rel.Spec, record)
	if err != nil {
		return err
	}
	digest, err := r.Evidence.Store.Put(statement)
	if err != nil {
		return err
	}
	promo.Status.Decision.StatementDigest = digest
	promo.Status.EvidencePacket = decisionPacketName(promo)
	return nil
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
	promo.Status.Phase = phase
	promo.Status.FinishedAt = &metav1.Time{Time: r.now()}
	meta.RemoveStatusCondition(&promo.Status.Conditions, v1alpha1.ConditionReconciling)
	meta.RemoveStatusCondition(&promo.Status.Conditions, v1alpha1.ConditionStalled)
	status := metav1.ConditionFalse
	if phase == v1alpha1.PromotionSucceeded {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&promo.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: status,
		Reason: reason, Message: gates.Truncate(message, 1024), ObservedGeneration: promo.Generation})
	promo.Status.ObservedGeneration = promo.Generation
}

// setProgress says the promotion is on its way, waiting or working.
func setProgress(promo *v1alpha1.Promotion, reason, message string) {
	markReconciling(&promo.Status.Conditions, promo.Generation, reason, gates.Truncate(message, 1024))
}

// setStalled says the promotion cannot go on until something is created or
// changed; the message names the field.
func setStalled(promo *v1alpha1.Promotion, reason, message string) {
	markStalled(&promo.Status.Conditions, promo.Generation, reason, message)
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

// undecidedReadingEnvironment wakes the undecided promotions whose decision
// reads the changed environment: those into it, into environments that
// promote from it, and into environments whose soak or dependency gates
// name it.
func (r *PromotionReconciler) undecidedReadingEnvironment(ctx context.Context, o client.Object) []reconcile.Request {
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
	return r.undecidedInto(ctx, ns, envs)
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
