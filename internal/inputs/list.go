package inputs

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// ListReader is the Reader of a client without a cache (stellactl's): each
// lookup lists the namespace's objects of the kind and keeps those that
// match. It reads what the caller may read, and each object once per
// lookup, which a command run once can afford.
type ListReader struct {
	client.Reader
}

var _ Reader = ListReader{}

// Gate reads the gate from the API server, or nil when it does not exist.
func (r ListReader) Gate(ctx context.Context, namespace, name string) (*v1alpha1.Gate, error) {
	g := &v1alpha1.Gate{}
	err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, g)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read gate %s: %w", name, err)
	}
	return g, nil
}

// ApprovalsOf lists the namespace's Approvals and keeps promotion's.
func (r ListReader) ApprovalsOf(ctx context.Context, namespace, promotion string) ([]v1alpha1.Approval, error) {
	var list v1alpha1.ApprovalList
	if err := r.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	return keep(list.Items, func(a *v1alpha1.Approval) bool { return a.Spec.Promotion == promotion }), nil
}

// PromotionsInto lists the namespace's Promotions and keeps those into
// environment.
func (r ListReader) PromotionsInto(ctx context.Context, namespace, environment string) ([]v1alpha1.Promotion, error) {
	var list v1alpha1.PromotionList
	if err := r.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list promotions: %w", err)
	}
	return keep(list.Items, func(p *v1alpha1.Promotion) bool { return p.Spec.Environment == environment }), nil
}

// ScanReportsOf lists the namespace's ScanReports and keeps those about an
// image of rel.
func (r ListReader) ScanReportsOf(ctx context.Context, rel *v1alpha1.Release) ([]v1alpha1.ScanReport, error) {
	digests := map[string]bool{}
	for _, c := range rel.Spec.Components {
		digests[c.Image.Digest()] = true
	}
	var list v1alpha1.ScanReportList
	if err := r.List(ctx, &list, client.InNamespace(rel.Namespace)); err != nil {
		return nil, fmt.Errorf("list scan reports: %w", err)
	}
	return keep(list.Items, func(s *v1alpha1.ScanReport) bool { return digests[s.Spec.Image.Digest()] }), nil
}

// keep returns the items that match, in their order.
func keep[T any](items []T, match func(*T) bool) []T {
	var out []T
	for i := range items {
		if match(&items[i]) {
			out = append(out, items[i])
		}
	}
	return out
}
