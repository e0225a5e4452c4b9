package controllers

import (
	"context"
	"errors"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
	"github.com/stella-ops/stella/internal/evidence"
)

// PromotionReconciler drives a Promotion through its phases: queue behind
// the environment's promotion in flight, evaluate the environment's gates on
// frozen inputs, record the decision, then deploy batch by batch through
// DeployTasks until every target succeeded or one failed, rolling back when
// the environment asks for it.
type PromotionReconciler struct {
	client.Client
	// APIReader reads past the cache before actions with side effects.
	APIReader client.Reader
	Recorder  record.EventRecorder
	// Evidence keeps each final decision's statement for sealing; nil
	// keeps none.
	Evidence *evidence.Sealer
	// Archive holds the promotions that left the API, which promotesFrom
	// still counts; nil reads none.
	Archive *archive.Archive
	// Now is the clock, the only one the reconciler reads; time.Now when
	// nil.
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
// promotions of its environment (the queue); promotion_watches.go maps
// each. Its own status writes do not wake it: each reconcile already acted
// on what it wrote.
func (r *PromotionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Promotion{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&v1alpha1.DeployTask{}).
		Watches(&v1alpha1.Approval{}, handler.EnqueueRequestsFromMapFunc(approvedPromotion)).
		Watches(&v1alpha1.Promotion{}, handler.EnqueueRequestsFromMapFunc(r.queuedBehind), builder.WithPredicates(leftQueue)).
		Watches(&v1alpha1.Gate{}, handler.EnqueueRequestsFromMapFunc(r.undecidedBehindGate)).
		Watches(&v1alpha1.Environment{}, handler.EnqueueRequestsFromMapFunc(r.waitingOnEnvironment)).
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

// Reconcile runs the promotion's steps in order until one of them says the
// promotion waits, stalls or ended, turns that outcome into its conditions,
// and writes the status once.
func (r *PromotionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	promo := &v1alpha1.Promotion{}
	if err := r.Get(ctx, req.NamespacedName, promo); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if promo.Status.Phase.IsTerminal() || !promo.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	run := newPromotionRun(promo)
	out, err := r.runSteps(ctx, run)
	summarize(run.promo, out, err, r.now())
	writeErr := r.write(ctx, run)
	if apierrors.IsInvalid(writeErr) {
		writeErr = errors.Join(writeErr, r.writeRefusal(ctx, run, writeErr))
	}
	err = errors.Join(err, writeErr)
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return ctrl.Result{RequeueAfter: out.requeueAfter}, err
}

// promotionStep is one step of a promotion's reconcile. It either hands
// over to the next step (proceed) or ends the reconcile with an outcome.
type promotionStep struct {
	name string
	run  func(context.Context, *promotionRun) (outcome, error)
}

// steps are the promotion's life in order; each skips itself when the
// promotion is past it, so that a reconcile after a restart resumes where
// the stored status left off.
func (r *PromotionReconciler) steps() []promotionStep {
	return []promotionStep{
		{"start", r.start},                // promotion_queue.go
		{"cancel", r.cancelOnRequest},     // promotion_queue.go
		{"queue", r.waitForTurn},          // promotion_queue.go
		{"references", r.loadReferences},  // promotion_decide.go
		{"decide", r.decide},              // promotion_decide.go
		{"plan", r.planRollout},           // promotion_plan.go
		{"record", r.recordDecision},      // promotion_plan.go
		{"deploy", r.deploy},              // promotion_deploy.go
		{"rollback", r.rollBack},          // promotion_rollback.go
		{"succeed", r.succeedWhenAllDone}, // promotion_deploy.go
	}
}

// runSteps runs the steps until one ends the reconcile.
func (r *PromotionReconciler) runSteps(ctx context.Context, run *promotionRun) (outcome, error) {
	for _, step := range r.steps() {
		out, err := step.run(ctx, run)
		if err != nil || out.kind != proceed {
			log.FromContext(ctx).V(1).Info("promotion step ended the reconcile", "step", step.name, "outcome", out.kind, "error", err)
			return out, err
		}
	}
	return outcome{}, errors.New("every step of the promotion proceeded, and none said where it stands")
}

// conflictRetry is how soon a promotion whose write met a newer version is
// read again: the cache has then most likely caught up.
const conflictRetry = 200 * time.Millisecond

// decided says whether the promotion's decision is final.
func decided(promo *v1alpha1.Promotion) bool {
	return promo.Status.Decision != nil && promo.Status.Decision.Result != v1alpha1.DecisionPending
}
