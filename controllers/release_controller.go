package controllers

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/gates"
)

// ReleaseReconciler reports Releases Ready and shows the environments where
// each one currently runs and the scan verdict of each of its images.
type ReleaseReconciler struct {
	client.Client
}

// SetupWithManager registers the reconciler; an environment wakes the
// release it runs now and the one it ran before.
func (r *ReleaseReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Release{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.Environment{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			var reqs []reconcile.Request
			for _, name := range releasesRun(o) {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}})
			}
			return reqs
		})).
		Watches(&v1alpha1.ScanReport{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return releasesPinning(ctx, r.Client, o)
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=releases;environments;scanreports,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=releases/status,verbs=patch

// Reconcile fetches the Release, computes its status and patches it once.
func (r *ReleaseReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	rel := &v1alpha1.Release{}
	if err := r.Get(ctx, req.NamespacedName, rel); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !rel.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	before := rel.DeepCopy()
	defer func() {
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, before, rel))
	}()
	var envs v1alpha1.EnvironmentList
	if err := r.List(ctx, &envs, client.InNamespace(rel.Namespace), client.MatchingFields{indexReleasesRun: rel.Name}); err != nil {
		return ctrl.Result{}, err
	}
	reports, err := scanReportsOf(ctx, r.Client, rel)
	if err != nil {
		return ctrl.Result{}, err
	}
	computeReleaseStatus(rel, envs.Items, gates.LatestReports(reports))
	return ctrl.Result{}, nil
}

// scanReportsOf lists the scan reports of the release's images, each image
// once, from any scanner.
func scanReportsOf(ctx context.Context, c client.Reader, rel *v1alpha1.Release) ([]v1alpha1.ScanReport, error) {
	var reports []v1alpha1.ScanReport
	seen := map[string]bool{}
	for _, comp := range rel.Spec.Components {
		digest := comp.Image.Digest()
		if seen[digest] {
			continue
		}
		seen[digest] = true
		var list v1alpha1.ScanReportList
		if err := c.List(ctx, &list, client.InNamespace(rel.Namespace), client.MatchingFields{indexDigest: digest}); err != nil {
			return nil, err
		}
		reports = append(reports, list.Items...)
	}
	return reports, nil
}

// releasesPinning lists the releases in the report's namespace that pin its
// image.
func releasesPinning(ctx context.Context, c client.Client, report client.Object) []reconcile.Request {
	var releases v1alpha1.ReleaseList
	if err := c.List(ctx, &releases, client.InNamespace(report.GetNamespace()), client.MatchingFields{indexDigest: report.(*v1alpha1.ScanReport).Spec.Image.Digest()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(releases.Items))
	for _, rel := range releases.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&rel)})
	}
	return reqs
}
