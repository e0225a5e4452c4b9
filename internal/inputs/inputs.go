// Package inputs reads, once, everything the gates of a promotion's
// environment may look at, as its decision records it: the promotion
// reconciler decides on what Gather returns, and `stellactl gates check`
// and `stellactl replay --what-if` explain with the same reading. Both read
// through a Reader: the reconciler answers its lookups from its indexed
// cache, stellactl by listing the namespace (ListReader).
package inputs

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/evaluation"
)

// Getter reads one object by name, as client.Reader's Get does: a missing
// one is a NotFound error.
type Getter interface {
	Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error
}

// Reader is what gathering reads: objects by name, and the lookups by field
// that a reader with a cache answers from its indexes. The objects it
// returns are only read.
type Reader interface {
	Getter
	// Gate reads a gate, or nil when it does not exist. A denial is final,
	// so a reader with a cache reads past it before it judges a gate
	// missing: a gate created a moment ago counts.
	Gate(ctx context.Context, namespace, name string) (*v1alpha1.Gate, error)
	// ApprovalsOf lists the Approvals of the namespace whose
	// spec.promotion is promotion.
	ApprovalsOf(ctx context.Context, namespace, promotion string) ([]v1alpha1.Approval, error)
	// PromotionsInto lists the Promotions of the namespace whose
	// spec.environment is environment.
	PromotionsInto(ctx context.Context, namespace, environment string) ([]v1alpha1.Promotion, error)
	// ScanReportsOf lists the ScanReports, from any scanner, of the
	// release's images.
	ScanReportsOf(ctx context.Context, rel *v1alpha1.Release) ([]v1alpha1.ScanReport, error)
}

// Gather reads, once, everything the gates of env may look at for promo
// and rel, with now as the decision's clock: the evaluation reads nothing
// else.
func Gather(ctx context.Context, r Reader, promo *v1alpha1.Promotion, rel *v1alpha1.Release, env *v1alpha1.Environment, now time.Time) (decision.Inputs, error) {
	in := decision.Inputs{
		Clock:       decision.Clock(now),
		Promotion:   decision.Promotion{Name: promo.Name, UID: promo.UID, Spec: promo.Spec, StartedAt: startedAt(promo)},
		Release:     decision.Named[v1alpha1.ReleaseSpec]{Name: rel.Name, Value: rel.Spec},
		Environment: decision.Named[v1alpha1.EnvironmentSpec]{Name: env.Name, Value: env.Spec},
	}
	var found []*v1alpha1.Gate
	for _, ref := range env.Spec.Gates {
		g, err := r.Gate(ctx, promo.Namespace, ref.Name)
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
	approvals, err := r.ApprovalsOf(ctx, promo.Namespace, promo.Name)
	if err != nil {
		return in, err
	}
	for _, a := range approvals {
		in.Approvals = append(in.Approvals, decision.Approval{Name: a.Name, UID: a.UID, Spec: a.Spec, CreatedAt: decision.Clock(a.CreationTimestamp.Time)})
	}
	// Only the environments the gates name are inputs: freezing every
	// environment of a namespace would make each decision grow with it.
	envs, err := GetExisting[v1alpha1.Environment](ctx, r, promo.Namespace, slices.Collect(maps.Keys(gateEnvironments(found))))
	if err != nil {
		return in, err
	}
	for _, e := range envs {
		in.Upstream = append(in.Upstream, decision.Named[v1alpha1.EnvironmentStatus]{Name: e.Name, Value: e.Status})
	}
	reports, err := r.ScanReportsOf(ctx, rel)
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
	if in.SucceededIn, err = environmentsSucceeded(ctx, r, promo.Namespace, rel.Name, judged); err != nil {
		return in, err
	}
	others, err := dependencyReleases(ctx, r, promo.Namespace, found, envs)
	if err != nil {
		return in, err
	}
	for _, o := range others {
		in.OtherReleases = append(in.OtherReleases, decision.Named[v1alpha1.ReleaseSpec]{Name: o.Name, Value: o.Spec})
	}
	return in, nil
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

// Explain evaluates the gates promo would face at now, with the inputs r
// reads, and changes nothing: `stellactl gates check` is built on it.
func Explain(ctx context.Context, r Reader, promo *v1alpha1.Promotion, now time.Time) (Explanation, error) {
	rel := &v1alpha1.Release{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: promo.Namespace, Name: promo.Spec.Release}, rel); err != nil {
		return Explanation{}, fmt.Errorf("release %s: %w", promo.Spec.Release, err)
	}
	env := &v1alpha1.Environment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: promo.Namespace, Name: promo.Spec.Environment}, env); err != nil {
		return Explanation{}, fmt.Errorf("environment %s: %w", promo.Spec.Environment, err)
	}
	in, err := Gather(ctx, r, promo, rel, env, now)
	if err != nil {
		return Explanation{}, err
	}
	record, evals, err := (&evaluation.Evaluator{Namespace: promo.Namespace}).Evaluate(in)
	if err != nil {
		return Explanation{}, err
	}
	return Explanation{UpstreamOK: !slices.Contains(record.ReasonCodes, evaluation.ReasonUpstreamNotSucceeded), Decision: record, Gates: evals}, nil
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
func dependencyReleases(ctx context.Context, r Reader, ns string, found []*v1alpha1.Gate, envs []v1alpha1.Environment) ([]v1alpha1.Release, error) {
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
	return GetExisting[v1alpha1.Release](ctx, r, ns, slices.Collect(maps.Keys(names)))
}

// environmentsSucceeded are the environments among names where release
// succeeded: by a Succeeded promotion there (the environment's status may
// not show it yet), by the environment's history (the promotion may have
// been deleted since), or, for a reader of the archive, by an archived
// promotion (older than the history holds).
func environmentsSucceeded(ctx context.Context, r Reader, ns, release string, names []string) ([]string, error) {
	var out []string
	for _, name := range names {
		promos, err := r.PromotionsInto(ctx, ns, name)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(promos, func(p v1alpha1.Promotion) bool {
			return p.Spec.Release == release && p.Status.Phase == v1alpha1.PromotionSucceeded
		}) {
			out = append(out, name)
			continue
		}
		archived, err := succeededInArchive(ctx, r, ns, name, release)
		if err != nil {
			return nil, err
		}
		if archived {
			out = append(out, name)
		}
	}
	envs, err := GetExisting[v1alpha1.Environment](ctx, r, ns, names)
	if err != nil {
		return nil, err
	}
	for _, e := range envs {
		if succeededIn(release, e) {
			out = append(out, e.Name)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(out))), nil
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

// GetExisting reads the named objects of one kind that exist, in name
// order, each once.
func GetExisting[T any, P interface {
	*T
	client.Object
}](ctx context.Context, c Getter, ns string, names []string) ([]T, error) {
	names = slices.Sorted(slices.Values(names))
	out := make([]T, 0, len(names))
	for _, name := range slices.Compact(names) {
		obj := P(new(T))
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, obj)
		if client.IgnoreNotFound(err) != nil {
			return nil, err
		}
		if err == nil {
			out = append(out, *obj)
		}
	}
	return out, nil
}
