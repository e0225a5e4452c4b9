package controllers

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
	"github.com/stella-ops/stella/internal/inputs"
)

// AutoPromotionReconciler promotes releases into environments that set
// spec.autoPromote: the newest release into an environment that promotes
// from nowhere, and the newest release that succeeded upstream into one that
// promotes from other environments. A newer release supersedes an older one
// still queued.
type AutoPromotionReconciler struct {
	client.Client
	// Archive holds the promotions that left the API; nil when the server
	// archives none.
	Archive *archive.Archive
}

// SetupWithManager registers the reconciler; releases and promotions wake
// the environments of their namespace.
func (r *AutoPromotionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("autopromotion").
		For(&v1alpha1.Environment{}).
		Watches(&v1alpha1.Release{}, handler.EnqueueRequestsFromMapFunc(r.autoPromotingEnvironments)).
		Watches(&v1alpha1.Promotion{}, handler.EnqueueRequestsFromMapFunc(r.autoPromotingEnvironments)).
		Complete(r)
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=environments;releases;promotions,verbs=get;list;watch
// It creates the auto-promotions, and asks to cancel a superseded one with
// an annotation; the promotion reconciler owns their status.
// +kubebuilder:rbac:groups=stella-ops.org,resources=promotions,verbs=create;patch

// Reconcile creates the promotion of the newest candidate release, once.
func (r *AutoPromotionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	env := &v1alpha1.Environment{}
	if err := r.Get(ctx, req.NamespacedName, env); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !env.Spec.AutoPromote || !env.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	var promos v1alpha1.PromotionList
	if err := r.List(ctx, &promos, client.InNamespace(env.Namespace), client.MatchingFields{indexEnvironment: env.Name}); err != nil {
		return ctrl.Result{}, err
	}
	newest, from, err := r.newestCandidate(ctx, env)
	if err != nil || newest == nil {
		return ctrl.Result{}, err
	}
	for _, p := range promos.Items {
		if p.Spec.Release == newest.Name {
			return ctrl.Result{}, nil // promoted once; a failure is not retried by itself
		}
	}
	if archived, err := r.archivedBefore(env, autoPromotionName(newest.Name, env.Name), newest.Name); err != nil || archived {
		return ctrl.Result{}, err // promoted once too, and archived since
	}
	promo := &v1alpha1.Promotion{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: env.Namespace, Name: autoPromotionName(newest.Name, env.Name),
			Labels: map[string]string{v1alpha1.LabelAutoPromotion: "true"},
		},
		Spec: v1alpha1.PromotionSpec{Release: newest.Name, Environment: env.Name, Reason: from},
	}
	if err := r.supersede(ctx, promos.Items, promo); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: conflictRetry}, nil // it changed since read: judge it again
		}
		return ctrl.Result{}, err
	}
	if err := r.Create(ctx, promo); err != nil && !apierrors.IsAlreadyExists(err) {
		return ctrl.Result{}, fmt.Errorf("create promotion %s: %w", promo.Name, err)
	}
	return ctrl.Result{}, nil
}

// archivedBefore says whether the archive holds the auto-promotion name of
// release into env: made once, and archived since. Without this a finished
// auto-promotion archived out of the API would be made again under its
// name, and again after each archiving.
func (r *AutoPromotionReconciler) archivedBefore(env *v1alpha1.Environment, name, release string) (bool, error) {
	if r.Archive == nil {
		return false, nil
	}
	entries, err := r.Archive.Promotion(env.Namespace, name)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(entries, func(e archive.Entry) bool { return e.Environment == env.Name && e.Release == release }), nil
}

// newestCandidate is the newest release that may enter env, and why. A
// release succeeded upstream when a promotion into an upstream environment
// succeeded, or, for promotions since deleted, when the upstream
// environment's history says so.
func (r *AutoPromotionReconciler) newestCandidate(ctx context.Context, env *v1alpha1.Environment) (*v1alpha1.Release, string, error) {
	var releases v1alpha1.ReleaseList
	if err := r.List(ctx, &releases, client.InNamespace(env.Namespace)); err != nil {
		return nil, "", err
	}
	reason := map[string]string{}
	if len(env.Spec.PromotesFrom) == 0 {
		for _, rel := range releases.Items {
			reason[rel.Name] = "auto-promotion of a new release"
		}
	} else {
		ups, err := inputs.GetExisting[v1alpha1.Environment](ctx, r.Client, env.Namespace, env.Spec.PromotesFrom)
		if err != nil {
			return nil, "", err
		}
		for _, up := range ups {
			for _, h := range up.Status.History {
				if h.Phase == v1alpha1.PromotionSucceeded {
					reason[h.Release] = "auto-promotion: succeeded in " + up.Name
				}
			}
			var promos v1alpha1.PromotionList
			if err := r.List(ctx, &promos, client.InNamespace(env.Namespace), client.MatchingFields{indexEnvironment: up.Name}, client.UnsafeDisableDeepCopy); err != nil {
				return nil, "", err
			}
			for _, p := range promos.Items {
				if p.Status.Phase == v1alpha1.PromotionSucceeded {
					reason[p.Spec.Release] = "auto-promotion: succeeded in " + up.Name
				}
			}
		}
	}
	var newest *v1alpha1.Release
	for i := range releases.Items {
		rel := &releases.Items[i]
		if reason[rel.Name] == "" || !rel.DeletionTimestamp.IsZero() {
			continue
		}
		if newest == nil || releaseOrder(rel).compare(releaseOrder(newest)) > 0 {
			newest = rel
		}
	}
	if newest == nil {
		return nil, "", nil
	}
	return newest, reason[newest.Name], nil
}

// supersede asks to cancel the auto-promotions that still wait in the queue
// for an older release than by's, the way stellactl promote cancel does: the
// promotion reconciler owns their status and cancels them, saying which
// promotion superseded them. A promotion that changed since it was read is
// left alone (the request fails with a conflict), since it may have left the
// queue meanwhile.
func (r *AutoPromotionReconciler) supersede(ctx context.Context, promos []v1alpha1.Promotion, by *v1alpha1.Promotion) error {
	for i := range promos {
		p := &promos[i]
		reconciling := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReconciling)
		queued := reconciling != nil && reconciling.Reason == v1alpha1.ReasonQueued
		if _, cancelling := p.Annotations[v1alpha1.AnnotationCancel]; cancelling || p.Labels[v1alpha1.LabelAutoPromotion] != "true" ||
			p.Status.Phase.IsTerminal() || !queued || p.Spec.Release == by.Spec.Release {
			continue
		}
		patch := client.MergeFromWithOptions(p.DeepCopy(), client.MergeFromWithOptimisticLock{})
		metav1.SetMetaDataAnnotation(&p.ObjectMeta, v1alpha1.AnnotationCancel,
			fmt.Sprintf("superseded by promotion %s of the newer release %s", by.Name, by.Spec.Release))
		if err := r.Patch(ctx, p, patch); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("ask to cancel the superseded promotion %s: %w", p.Name, err)
		}
	}
	return nil
}

// autoPromotionName is deterministic, so that creating it twice is harmless.
func autoPromotionName(release, env string) string {
	return boundedName(release+"-to-"+env, release+"/"+env)
}

func (r *AutoPromotionReconciler) autoPromotingEnvironments(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.EnvironmentList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexAutoPromote: "true"}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, e := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&e)})
	}
	return reqs
}
