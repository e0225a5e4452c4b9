package controllers

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
	"github.com/stella-ops/stella/internal/inputs"
)

// gateInputs reads what the gates of a promotion may look at from the
// reconcilers' cache, each lookup by field through its index.
type gateInputs struct {
	client.Reader
	// apiReader reads past the cache.
	apiReader client.Reader
	// archive holds the promotions that left the API; nil when the server
	// keeps no evidence.
	archive *archive.Archive
}

var _ inputs.ArchiveReader = gateInputs{}

// reader is what the promotion's decision is gathered through.
func (r *PromotionReconciler) reader() gateInputs {
	return gateInputs{Reader: r.Client, apiReader: r.uncached(), archive: r.Archive}
}

// ArchivedInto lists the archived promotions into environment: a release
// that succeeded upstream still counts for promotesFrom once its promotion
// left the API and the environment's history.
func (r gateInputs) ArchivedInto(_ context.Context, ns, environment string) ([]archive.Entry, error) {
	if r.archive == nil {
		return nil, nil
	}
	return r.archive.Environment(ns, environment)
}

// Gate reads a gate, or nil when it does not exist. A gate the cache does
// not hold is read past it: a gate created a moment ago must not be judged
// missing, since a denial is final.
func (r gateInputs) Gate(ctx context.Context, ns, name string) (*v1alpha1.Gate, error) {
	g := &v1alpha1.Gate{}
	key := types.NamespacedName{Namespace: ns, Name: name}
	err := r.Get(ctx, key, g)
	if apierrors.IsNotFound(err) {
		err = r.apiReader.Get(ctx, key, g)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return g, err
}

// ApprovalsOf lists the approvals naming promotion.
func (r gateInputs) ApprovalsOf(ctx context.Context, ns, promotion string) ([]v1alpha1.Approval, error) {
	var list v1alpha1.ApprovalList
	if err := r.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{indexPromotion: promotion}); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// PromotionsInto lists the promotions into environment, straight from the
// cache: the caller only reads them.
func (r gateInputs) PromotionsInto(ctx context.Context, ns, environment string) ([]v1alpha1.Promotion, error) {
	var list v1alpha1.PromotionList
	if err := r.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{indexEnvironment: environment}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// ScanReportsOf lists the scan reports of the release's images.
func (r gateInputs) ScanReportsOf(ctx context.Context, rel *v1alpha1.Release) ([]v1alpha1.ScanReport, error) {
	return scanReportsOf(ctx, r.Reader, rel)
}

// uncached reads from the API server itself when the reconciler has a
// cache, and through its client otherwise (the unit tests' fake client).
func (r *PromotionReconciler) uncached() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}
