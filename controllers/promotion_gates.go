package controllers

import (
	"context"
	"maps"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
)

// freeze reads, once, everything the gates of promo's environment may look
// at, as the decision records it: the evaluation reads nothing else.
func (r *PromotionReconciler) freeze(ctx context.Context, promo *v1alpha1.Promotion, rel *v1alpha1.Release, env *v1alpha1.Environment) (decision.Inputs, error) {
	ns := client.InNamespace(promo.Namespace)
	in := decision.Inputs{
		Clock:       decision.Clock(r.now()),
		Promotion:   decision.Promotion{Name: promo.Name, UID: promo.UID, Spec: promo.Spec, StartedAt: startedAt(promo)},
		Release:     decision.Named[v1alpha1.ReleaseSpec]{Name: rel.Name, Value: rel.Spec},
		Environment: decision.Named[v1alpha1.EnvironmentSpec]{Name: env.Name, Value: env.Spec},
	}
	var found []*v1alpha1.Gate
	for _, ref := range env.Spec.Gates {
		g, err := r.getGate(ctx, promo.Namespace, ref.Name)
		if err != nil {
			return in, err
		}
		if g == nil {
			continue
		}
		found = append(found, g)
		gate := decision.Gate{Name: g.Name, Spec: g.Spec}
		if c := meta.FindStatusCondition(g.Status.Conditions, v1alpha1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
			gate.Invalid = c.Message
		}
		in.Gates = append(in.Gates, gate)
	}
	// Every Approval naming the promotion is frozen, bound to it or not:
	// the approval gates count only those bound to its UID and release, and
	// the record shows why the others did not count.
	var approvals v1alpha1.ApprovalList
	if err := r.List(ctx, &approvals, ns, client.MatchingFields{indexPromotion: promo.Name}); err != nil {
		return in, err
	}
	for _, a := range approvals.Items {
		in.Approvals = append(in.Approvals, decision.Approval{Name: a.Name, UID: a.UID, Spec: a.Spec, CreatedAt: decision.Clock(a.CreationTimestamp.Time)})
	}
	// Only the environments the gates name are inputs: freezing every
	// environment of a namespace would make each decision grow with it.
	envs, err := getExisting[v1alpha1.Environment](ctx, r.Client, promo.Namespace, slices.Collect(maps.Keys(gateEnvironments(found))))
	if err != nil {
		return in, err
	}
	for _, e := range envs {
		in.Upstream = append(in.Upstream, decision.Named[v1alpha1.EnvironmentStatus]{Name: e.Name, Value: e.Status})
	}
	reports, err := scanReportsOf(ctx, r.Client, rel)
	if err != nil {
		return in, err
	}
	for _, s := range reports {
		// What the scanner found, without the bookkeeping no gate reads.
		s.Status.Conditions, s.Status.ObservedGeneration = nil, 0
		in.ScanReports = append(in.ScanReports, decision.ScanReport{Name: s.Name, Spec: s.Spec, Status: s.Status})
	}
	// The refusals judge where the release succeeded: for a rollback the
	// environment itself, otherwise those it promotes from (often none).
	judged := env.Spec.PromotesFrom
	if promo.Spec.Rollback {
		judged = []string{env.Name}
	}
	if in.SucceededIn, err = r.environmentsSucceeded(ctx, promo.Namespace, rel.Name, judged); err != nil {
		return in, err
	}
	others, err := r.dependencyReleases(ctx, promo.Namespace, found, envs)
	if err != nil {
		return in, err
	}
	for _, o := range others {
		in.OtherReleases = append(in.OtherReleases, decision.Named[v1alpha1.ReleaseSpec]{Name: o.Name, Value: o.Spec})
	}
	return in, nil
}

// startedAt is when the promotion's evaluation began: fail-closed timeouts
// count from it.
func startedAt(promo *v1alpha1.Promotion) string {
	switch {
	case promo.Status.StartedAt != nil:
		return decision.Clock(promo.Status.StartedAt.Time)
	case !promo.CreationTimestamp.IsZero():
		return decision.Clock(promo.CreationTimestamp.Time)
	}
	return ""
}

// getGate reads a gate, or nil when it does not exist. A gate the cache
// does not hold is read past it: a gate created a moment ago must not be
// judged missing, since a denial is final.
func (r *PromotionReconciler) getGate(ctx context.Context, ns, name string) (*v1alpha1.Gate, error) {
	g := &v1alpha1.Gate{}
	key := types.NamespacedName{Namespace: ns, Name: name}
	err := r.Get(ctx, key, g)
	if apierrors.IsNotFound(err) {
		err = r.uncached().Get(ctx, key, g)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return g, err
}

// gateEnvironments are the environments soak and dependency gates read.
func gateEnvironments(found []*v1alpha1.Gate) map[string]bool {
	names := map[string]bool{}
	for _, g := range found {
		switch {
		case g.Spec.Soak != nil:
			names[g.Spec.Soak.Environment] = true
		case g.Spec.Dependency != nil:
			names[g.Spec.Dependency.Environment] = true
		}
	}
	return names
}

// dependencyReleases reads the releases dependency gates look at: the one
// a gate names and the one its environment currently runs.
func (r *PromotionReconciler) dependencyReleases(ctx context.Context, ns string, found []*v1alpha1.Gate, envs []v1alpha1.Environment) ([]v1alpha1.Release, error) {
	names := map[string]bool{}
	for _, g := range found {
		dep := g.Spec.Dependency
		if dep == nil {
			continue
		}
		if dep.Release != "" {
			names[dep.Release] = true
		}
		for _, e := range envs {
			if e.Name == dep.Environment && e.Status.CurrentRelease != "" {
				names[e.Status.CurrentRelease] = true
			}
		}
	}
	return getExisting[v1alpha1.Release](ctx, r.Client, ns, slices.Collect(maps.Keys(names)))
}

// uncached reads from the API server itself when the reconciler has a
// cache, and through its client otherwise (stellactl gates check).
func (r *PromotionReconciler) uncached() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}
