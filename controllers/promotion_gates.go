package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/gates"
	"github.com/stella-ops/stella/internal/policy"
)

// Reason codes of gates the promotion controller judges itself, before any
// evaluator runs. Like the evaluators' codes they are stable and sortable.
const (
	reasonGateNotFound   = "gate.not-found"
	reasonPolicyDenied   = "policy.denied"
	reasonPolicyRejected = "policy.input-rejected"
	reasonPolicyError    = "policy.error"
)

// frozen is what one evaluation of a promotion's gates looks at, read once.
type frozen struct {
	now          time.Time
	promotion    *v1alpha1.Promotion
	release      *v1alpha1.Release
	environment  *v1alpha1.Environment
	gates        []gateRef
	approvals    []v1alpha1.Approval
	environments []v1alpha1.Environment
	scanReports  []v1alpha1.ScanReport
	// releases are the other releases dependency gates compare against.
	releases []v1alpha1.Release
}

// gateRef is a gate the environment names, and the Gate object if found.
type gateRef struct {
	name string
	gate *v1alpha1.Gate
}

// freeze reads everything the gates of promo's environment may look at.
func (r *PromotionReconciler) freeze(ctx context.Context, promo *v1alpha1.Promotion, rel *v1alpha1.Release, env *v1alpha1.Environment) (*frozen, error) {
	ns := client.InNamespace(promo.Namespace)
	f := &frozen{now: r.now().UTC().Truncate(time.Second), promotion: promo, release: rel, environment: env}
	for _, ref := range env.Spec.Gates {
		g, err := r.getGate(ctx, promo.Namespace, ref.Name)
		if err != nil {
			return nil, err
		}
		f.gates = append(f.gates, gateRef{name: ref.Name, gate: g})
	}
	var approvals v1alpha1.ApprovalList
	if err := r.List(ctx, &approvals, ns, client.MatchingFields{indexPromotion: promo.Name}); err != nil {
		return nil, err
	}
	f.approvals = approvals.Items
	slices.SortFunc(f.approvals, func(a, b v1alpha1.Approval) int { return strings.Compare(a.Name, b.Name) })
	// Only the environments the gates name are inputs: freezing every
	// environment of a namespace would make each decision grow with it.
	named := gateEnvironments(f.gates)
	envs, err := getEnvironments(ctx, r.Client, promo.Namespace, slices.Collect(maps.Keys(named)))
	if err != nil {
		return nil, err
	}
	f.environments = envs
	seen := map[string]bool{}
	for _, c := range rel.Spec.Components {
		digest := digestOf(c.Image)
		if seen[digest] {
			continue
		}
		seen[digest] = true
		var reports v1alpha1.ScanReportList
		if err := r.List(ctx, &reports, ns, client.MatchingFields{indexDigest: digest}); err != nil {
			return nil, err
		}
		f.scanReports = append(f.scanReports, reports.Items...)
	}
	slices.SortFunc(f.scanReports, func(a, b v1alpha1.ScanReport) int { return strings.Compare(a.Name, b.Name) })
	releases, err := r.dependencyReleases(ctx, promo.Namespace, f)
	if err != nil {
		return nil, err
	}
	f.releases = releases
	return f, nil
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
func gateEnvironments(refs []gateRef) map[string]bool {
	names := map[string]bool{}
	for _, g := range refs {
		switch {
		case g.gate == nil:
		case g.gate.Spec.Soak != nil:
			names[g.gate.Spec.Soak.Environment] = true
		case g.gate.Spec.Dependency != nil:
			names[g.gate.Spec.Dependency.Environment] = true
		}
	}
	return names
}

// digestOf is the sha256:<hex> part of an image reference pinned by digest;
// the same image may be named through different repositories.
func digestOf(image v1alpha1.ImageDigestRef) string {
	_, digest, _ := strings.Cut(string(image), "@")
	return digest
}

// dependencyReleases reads the releases dependency gates look at: the one
// a gate names and the one its environment currently runs.
func (r *PromotionReconciler) dependencyReleases(ctx context.Context, ns string, f *frozen) ([]v1alpha1.Release, error) {
	names := map[string]bool{}
	for _, g := range f.gates {
		if g.gate == nil || g.gate.Spec.Dependency == nil {
			continue
		}
		dep := g.gate.Spec.Dependency
		if dep.Release != "" {
			names[dep.Release] = true
		}
		for _, e := range f.environments {
			if e.Name == dep.Environment && e.Status.CurrentRelease != "" {
				names[e.Status.CurrentRelease] = true
			}
		}
	}
	var out []v1alpha1.Release
	for name := range names {
		rel := &v1alpha1.Release{}
		err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, rel)
		if client.IgnoreNotFound(err) != nil {
			return nil, err
		}
		if err == nil {
			out = append(out, *rel)
		}
	}
	slices.SortFunc(out, func(a, b v1alpha1.Release) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// uncached reads from the API server itself when the reconciler has a
// cache, and through its client otherwise (stellactl gates check).
func (r *PromotionReconciler) uncached() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// evaluate runs every gate and combines the verdicts into a decision record.
func (r *PromotionReconciler) evaluate(f *frozen) (decision.Record, []v1alpha1.GateEvaluation) {
	in := gates.Inputs{
		Now: f.now, Promotion: f.promotion, Release: f.release, Releases: f.releases,
		Environments: f.environments, Approvals: f.approvals, ScanReports: f.scanReports,
	}
	var evals []v1alpha1.GateEvaluation
	var policies []decision.Named[v1alpha1.Digest]
	for _, ref := range f.gates {
		switch {
		case ref.gate == nil:
			evals = append(evals, v1alpha1.GateEvaluation{Name: ref.name, Result: v1alpha1.GateFail,
				ReasonCodes: []string{reasonGateNotFound}, Message: fmt.Sprintf("Gate %s does not exist; a missing gate never passes", ref.name)})
		case f.promotion.Spec.Rollback && slices.Contains(f.environment.Spec.RollbackSkipGateTypes, typeOf(ref.gate)):
			evals = append(evals, v1alpha1.GateEvaluation{Name: ref.name, Type: typeOf(ref.gate), Result: v1alpha1.GatePass,
				Message: fmt.Sprintf("%s gates do not apply to rollbacks (spec.rollbackSkipGateTypes of environment %s)", typeOf(ref.gate), f.environment.Name)})
		case meta.IsStatusConditionTrue(ref.gate.Status.Conditions, v1alpha1.ConditionStalled):
			evals = append(evals, v1alpha1.GateEvaluation{Name: ref.name, Type: ref.gate.Status.Type, Result: v1alpha1.GateFail,
				ReasonCodes: []string{gates.ReasonInvalid}, Message: "the gate's configuration is invalid: " + stalledMessage(ref.gate)})
		case ref.gate.Spec.Policy != nil:
			ev, digest := r.evaluatePolicy(ref.gate, f)
			evals = append(evals, ev)
			policies = append(policies, decision.Named[v1alpha1.Digest]{Name: ref.name, Value: v1alpha1.Digest(digest)})
		default:
			evals = append(evals, gates.Evaluate(ref.gate, in).Evaluation(ref.name))
		}
	}
	return decision.Decide(f.inputs(policies), evals), evals
}

// typeOf is the gate's type, or "" when its spec sets none or several
// (admission refuses both).
func typeOf(g *v1alpha1.Gate) string {
	t, _ := gates.TypeOf(&g.Spec)
	return t
}

func stalledMessage(g *v1alpha1.Gate) string {
	if c := meta.FindStatusCondition(g.Status.Conditions, v1alpha1.ConditionStalled); c != nil {
		return c.Message
	}
	return ""
}

// evaluatePolicy runs a CUE policy gate with its program compiled once per
// gate generation.
func (r *PromotionReconciler) evaluatePolicy(g *v1alpha1.Gate, f *frozen) (v1alpha1.GateEvaluation, string) {
	ev := v1alpha1.GateEvaluation{Name: g.Name, Type: gates.TypePolicy}
	prog, err := r.programs.get(g)
	if err != nil {
		ev.Result, ev.ReasonCodes, ev.Message = v1alpha1.GateFail, []string{gates.ReasonInvalid}, truncate(err.Error(), 1024)
		return ev, policy.Digest(g.Spec.Policy.Source)
	}
	d, err := prog.Evaluate(policyInput(f))
	switch {
	case err != nil:
		ev.Result, ev.ReasonCodes, ev.Message = v1alpha1.GateFail, []string{reasonPolicyError}, truncate(err.Error(), 1024)
	case d.Allow:
		ev.Result, ev.Message = v1alpha1.GatePass, "the policy allows the promotion"
	case d.Code == policy.CodeInputRejected:
		ev.Result, ev.ReasonCodes, ev.Message = v1alpha1.GateFail, []string{reasonPolicyRejected}, truncate(strings.Join(d.Reasons, "; "), 1024)
	default:
		ev.Result, ev.ReasonCodes, ev.Message = v1alpha1.GateFail, []string{reasonPolicyDenied}, truncate(strings.Join(d.Reasons, "; "), 1024)
	}
	return ev, prog.Digest()
}

// policyInput is the documented input document of policy gates.
func policyInput(f *frozen) policy.Input {
	in := policy.Input{
		Release:     policy.Release{Name: f.release.Name, Version: f.release.Spec.Version},
		Environment: policy.Environment{Name: f.environment.Name, Order: int(f.environment.Spec.Order)},
		Promotion:   policy.Promotion{Name: f.promotion.Name, RequestedBy: f.promotion.Spec.RequestedBy, Reason: f.promotion.Spec.Reason},
		Clock:       policy.ClockAt(f.now),
	}
	if s := f.release.Spec.Source; s != nil {
		in.Release.Source = policy.Source{Repository: s.Repository, Commit: s.Commit, BuildURL: s.BuildURL}
	}
	for _, c := range f.release.Spec.Components {
		in.Release.Components = append(in.Release.Components, policy.Component{Name: c.Name, Image: string(c.Image), Digest: digestOf(c.Image), Role: string(c.Role)})
	}
	for _, a := range f.approvals {
		in.Approvals = append(in.Approvals, policy.Approval{Approver: a.Spec.Approver, Groups: a.Spec.ApproverGroups, Decision: string(a.Spec.Decision)})
	}
	slices.SortFunc(in.Approvals, func(a, b policy.Approval) int { return strings.Compare(a.Approver+a.Decision, b.Approver+b.Decision) })
	for _, s := range f.scanReports {
		c := s.Status.Summary
		in.ScanReports = append(in.ScanReports, policy.ScanReport{Image: string(s.Spec.Image), MaxSeverity: string(s.Status.MaxSeverity),
			Counts: policy.SeverityCounts{Critical: int(c.Critical), High: int(c.High), Medium: int(c.Medium), Low: int(c.Low), Unknown: int(c.Unknown)}})
	}
	slices.SortFunc(in.ScanReports, func(a, b policy.ScanReport) int { return strings.Compare(a.Image, b.Image) })
	return in
}

// inputs are the frozen inputs as the decision record holds them.
func (f *frozen) inputs(policies []decision.Named[v1alpha1.Digest]) decision.Inputs {
	in := decision.Inputs{
		Clock:       decision.Clock(f.now),
		Promotion:   decision.Named[v1alpha1.PromotionSpec]{Name: f.promotion.Name, Value: f.promotion.Spec},
		Release:     decision.Named[v1alpha1.ReleaseSpec]{Name: f.release.Name, Value: f.release.Spec},
		Environment: decision.Named[v1alpha1.EnvironmentSpec]{Name: f.environment.Name, Value: f.environment.Spec},
		Policies:    policies,
	}
	for _, g := range f.gates {
		if g.gate != nil {
			in.Gates = append(in.Gates, decision.Named[v1alpha1.GateSpec]{Name: g.name, Value: g.gate.Spec})
		}
	}
	for _, a := range f.approvals {
		in.Approvals = append(in.Approvals, decision.Named[v1alpha1.ApprovalSpec]{Name: a.Name, Value: a.Spec})
	}
	for _, e := range f.environments {
		in.Upstream = append(in.Upstream, decision.Named[v1alpha1.EnvironmentStatus]{Name: e.Name, Value: e.Status})
	}
	for _, s := range f.scanReports {
		in.ScanReports = append(in.ScanReports, decision.Named[v1alpha1.Digest]{Name: s.Name, Value: s.Status.ReportDigest})
	}
	for _, rel := range f.releases {
		in.OtherReleases = append(in.OtherReleases, decision.Named[v1alpha1.ReleaseSpec]{Name: rel.Name, Value: rel.Spec})
	}
	return in
}

// programCache holds one compiled policy per gate, for its latest
// generation. A deleted gate's program stays until the process restarts;
// there are few gates and each program is small.
type programCache struct {
	mu       sync.Mutex
	programs map[types.UID]cachedProgram
}

type cachedProgram struct {
	generation int64
	program    *policy.Program
	err        error
}

func (c *programCache) get(g *v1alpha1.Gate) (*policy.Program, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.programs[g.UID]; ok && p.generation == g.Generation {
		return p.program, p.err
	}
	prog, err := policy.Compile(g.Spec.Policy.Source)
	if c.programs == nil {
		c.programs = map[types.UID]cachedProgram{}
	}
	c.programs[g.UID] = cachedProgram{generation: g.Generation, program: prog, err: err}
	return prog, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
