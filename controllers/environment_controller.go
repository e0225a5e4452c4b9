package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/gates"
)

// EnvironmentReconciler shows what runs in an environment: the release that
// last succeeded there, its history, the promotion in flight and the state
// of its targets. All of it is derived from Promotions and Targets. It also
// judges the current release by the environment's securityVerdict gates
// again whenever a scan report of its images changes, so that an advisory
// published after the promotion shows on the environment.
type EnvironmentReconciler struct {
	client.Client
	Recorder record.EventRecorder
}

// SetupWithManager registers the reconciler; promotions and targets wake
// the environments they belong to, and a target whose labels change wakes
// the environments that selected it before as well.
func (r *EnvironmentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		// Only this reconciler writes an environment's status: its own
		// writes need no second look.
		For(&v1alpha1.Environment{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.Promotion{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.(*v1alpha1.Promotion).Spec.Environment}}}
		}), builder.WithPredicates(promotionPhaseChanged)).
		Watches(&v1alpha1.Target{}, handler.Funcs{
			CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.wakeSelecting(ctx, e.Object, q)
			},
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.wakeSelecting(ctx, e.ObjectNew, q)
				if !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) {
					r.wakeSelecting(ctx, e.ObjectOld, q)
				}
			},
			DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.wakeSelecting(ctx, e.Object, q)
			},
		}).
		Watches(&v1alpha1.ScanReport{}, handler.EnqueueRequestsFromMapFunc(r.runningImage)).
		Watches(&v1alpha1.Gate{}, handler.EnqueueRequestsFromMapFunc(r.guardedBy)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}

// promotionPhaseChanged passes the promotion changes an environment's
// status can follow: only a promotion's phase counts there (current
// promotion, history), and a new promotion has none yet.
var promotionPhaseChanged = predicate.Funcs{
	CreateFunc:  func(e event.CreateEvent) bool { return e.Object.(*v1alpha1.Promotion).Status.Phase != "" },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectNew.(*v1alpha1.Promotion).Status.Phase != e.ObjectOld.(*v1alpha1.Promotion).Status.Phase
	},
}

// runningImage lists the environments that run, or ran, a release that pins
// the report's image.
func (r *EnvironmentReconciler) runningImage(ctx context.Context, o client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	for _, rel := range releasesPinning(ctx, r.Client, o) {
		var envs v1alpha1.EnvironmentList
		if err := r.List(ctx, &envs, client.InNamespace(rel.Namespace), client.MatchingFields{indexReleasesRun: rel.Name}); err != nil {
			return nil
		}
		for _, env := range envs.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&env)})
		}
	}
	return reqs
}

// guardedBy lists the environments whose spec.gates name the gate.
func (r *EnvironmentReconciler) guardedBy(ctx context.Context, o client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	for _, name := range environmentsNaming(ctx, r.Client, o.GetNamespace(), o.GetName()) {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}})
	}
	return reqs
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=environments;promotions;releases;targets;gates;scanreports,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=environments/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

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
	if err := r.List(ctx, &promos, client.InNamespace(env.Namespace), client.MatchingFields{indexEnvironment: env.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	versions := map[string]string{}
	for _, p := range promos.Items {
		if _, known := versions[p.Spec.Release]; known || !p.Status.Phase.IsTerminal() {
			continue
		}
		rel := &v1alpha1.Release{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: env.Namespace, Name: p.Spec.Release}, rel); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, err
		}
		versions[p.Spec.Release] = rel.Spec.Version
	}
	if _, err := metav1.LabelSelectorAsSelector(env.Spec.TargetSelector); err != nil {
		markStalled(&env.Status.Conditions, env.Generation, v1alpha1.ReasonInvalidSpec, "spec.targetSelector: "+err.Error())
		return ctrl.Result{}, nil
	}
	targets, err := selectedTargets(ctx, r.Client, env)
	if err != nil {
		return ctrl.Result{}, err
	}
	computeEnvironmentStatus(env, promos.Items, targets, versions)
	return r.judgeCurrentRelease(ctx, env, before)
}

// judgeCurrentRelease evaluates the environment's securityVerdict gates on
// the release it runs, with the scan reports of now, and says the verdict
// in the SecurityVerdict condition; a release that stops passing gets a
// warning Event. Pending verdicts (a report not there yet, or stale) are
// looked at again when the gate says they change.
func (r *EnvironmentReconciler) judgeCurrentRelease(ctx context.Context, env, before *v1alpha1.Environment) (ctrl.Result, error) {
	var verdicts []securityVerdict
	if env.Status.CurrentRelease != "" {
		rel := &v1alpha1.Release{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: env.Namespace, Name: env.Status.CurrentRelease}, rel); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, err
		} else if err == nil {
			reports, err := scanReportsOf(ctx, r.Client, rel)
			if err != nil {
				return ctrl.Result{}, err
			}
			for _, ref := range env.Spec.Gates {
				gate := &v1alpha1.Gate{}
				if err := r.Get(ctx, types.NamespacedName{Namespace: env.Namespace, Name: ref.Name}, gate); client.IgnoreNotFound(err) != nil {
					return ctrl.Result{}, err
				} else if err != nil || gate.Spec.SecurityVerdict == nil {
					continue
				}
				outcome := gates.EvaluateSecurityVerdict(gate.Spec.SecurityVerdict, gates.Inputs{Now: time.Now(), Release: rel, ScanReports: reports})
				verdicts = append(verdicts, securityVerdict{gate: gate.Name, outcome: outcome})
			}
		}
	}
	setSecurityCondition(env, verdicts)
	was := meta.FindStatusCondition(before.Status.Conditions, v1alpha1.ConditionSecurityVerdict)
	if now := meta.FindStatusCondition(env.Status.Conditions, v1alpha1.ConditionSecurityVerdict); now != nil && now.Status == metav1.ConditionFalse &&
		(was == nil || was.Status != metav1.ConditionFalse || was.Message != now.Message) {
		r.Recorder.Event(env, corev1.EventTypeWarning, "SecurityVerdictFailed", now.Message)
	}
	var retry ctrl.Result
	for _, v := range verdicts {
		if v.outcome.RetryAt != nil {
			if after := time.Until(*v.outcome.RetryAt); after > 0 && (retry.RequeueAfter == 0 || after < retry.RequeueAfter) {
				retry.RequeueAfter = after
			}
		}
	}
	return retry, nil
}

// securityVerdict is a securityVerdict gate's outcome for the current release.
type securityVerdict struct {
	gate    string
	outcome gates.Outcome
}

// setSecurityCondition says whether the current release passes the
// environment's securityVerdict gates: False when one fails, Unknown while
// one is pending, True when all pass. Without such gates, or a current
// release, there is no condition.
func setSecurityCondition(env *v1alpha1.Environment, verdicts []securityVerdict) {
	if len(verdicts) == 0 {
		meta.RemoveStatusCondition(&env.Status.Conditions, v1alpha1.ConditionSecurityVerdict)
		return
	}
	status, reason := metav1.ConditionTrue, "Passed"
	var failed, pending, passed []string
	for _, v := range verdicts {
		line := fmt.Sprintf("gate %s: %s", v.gate, v.outcome.Message)
		switch v.outcome.Result {
		case v1alpha1.GateFail:
			failed = append(failed, line)
		case v1alpha1.GatePending:
			pending = append(pending, line)
		default:
			passed = append(passed, line)
		}
	}
	lines := passed
	switch {
	case len(failed) > 0:
		status, reason, lines = metav1.ConditionFalse, "Failed", failed
	case len(pending) > 0:
		status, reason, lines = metav1.ConditionUnknown, "Pending", pending
	}
	meta.SetStatusCondition(&env.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionSecurityVerdict, Status: status, Reason: reason,
		Message: gates.Truncate(fmt.Sprintf("%s, running here: %s", env.Status.CurrentRelease, strings.Join(lines, "; ")), 1024), ObservedGeneration: env.Generation})
}

// computeEnvironmentStatus derives the status. History keeps the entries it
// had, so it outlives promotions that were deleted.
func computeEnvironmentStatus(env *v1alpha1.Environment, promos []v1alpha1.Promotion, targets []v1alpha1.Target, versions map[string]string) {
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
				Phase: p.Status.Phase, FinishedAt: p.Status.FinishedAt.DeepCopy(), Version: versions[p.Spec.Release],
				CreationRevision: p.Status.CreationRevision}
		case v1alpha1.PromotionDeploying, v1alpha1.PromotionVerifying, v1alpha1.PromotionApproved:
			st.CurrentPromotion = p.Name
		}
	}
	history := make([]v1alpha1.EnvironmentHistoryEntry, 0, len(byPromotion))
	for _, h := range byPromotion {
		history = append(history, h)
	}
	slices.SortFunc(history, func(a, b v1alpha1.EnvironmentHistoryEntry) int {
		return historyOrder(b).compare(historyOrder(a)) // newest first
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

	counts := countTargets(targets)
	st.Targets = counts
	message := fmt.Sprintf("no release yet; %d target(s)", counts.Total)
	if st.CurrentRelease != "" {
		message = fmt.Sprintf("%s is current; %d target(s): %d healthy, %d drifted, %d unknown",
			st.CurrentRelease, counts.Total, counts.Healthy, counts.Drifted, counts.Unknown)
	}
	markReady(&st.Conditions, env.Generation, message)
	st.ObservedGeneration = env.Generation
}

// countTargets sums up the health of the environment's targets.
func countTargets(targets []v1alpha1.Target) v1alpha1.TargetCounts {
	var c v1alpha1.TargetCounts
	for _, t := range targets {
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
	return c
}

// wakeSelecting enqueues the environments that select a target with the
// labels of o.
func (r *EnvironmentReconciler) wakeSelecting(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	for _, env := range environmentsSelecting(ctx, r.Client, o.GetNamespace(), o.GetLabels()) {
		q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&env)})
	}
}
