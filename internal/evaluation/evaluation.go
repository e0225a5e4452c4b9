// Package evaluation decides a promotion from its frozen inputs alone: the
// promotion controller decides with it, and a replay (stellactl replay) runs
// it again on the inputs a sealed decision recorded. Since nothing else is
// read, the same inputs give the same record, byte for byte.
package evaluation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/gates"
	"github.com/stella-ops/stella/internal/policy"
)

// Reason codes of gates judged here, before any evaluator runs. Like the
// evaluators' codes they are stable and sortable.
const (
	ReasonUpstreamNotSucceeded  = "promotion.upstream-not-succeeded"
	ReasonRollbackTargetUnknown = "promotion.rollback-target-unknown"
	ReasonGateNotFound          = "gate.not-found"
	ReasonPolicyDenied          = "policy.denied"
	ReasonPolicyRejected        = "policy.input-rejected"
	ReasonPolicyError           = "policy.error"
	ReasonPolicyBudget          = "policy.budget-exceeded"
)

// RefusalGate names the verdict on the promotion itself, which comes before
// any gate: a release that has not succeeded upstream, or a rollback to a
// release the environment never ran.
const RefusalGate = "promotion"

// maxMessage bounds a gate's message, as the API does.
const maxMessage = 1024

// Evaluator evaluates gates. CUE policies run in a sandbox, so that one
// that never finishes or exhausts memory fails its own gate and stops
// nothing else; a replay meets the same budgets, so it reproduces such a
// verdict too.
type Evaluator struct {
	// Policies runs the CUE policies; policy.Default() when nil.
	Policies *policy.Sandbox
	// Namespace is the tenant whose policies these are: a tenant's
	// policies take turns in the sandbox, so one never holds every worker.
	Namespace string
}

// Evaluate runs every gate the environment names, in its order, and
// combines the verdicts into a decision record. The record's inputs are in
// plus the digests of the policies evaluated.
func (e *Evaluator) Evaluate(in decision.Inputs) (decision.Record, []v1alpha1.GateEvaluation, error) {
	now, err := time.Parse(time.RFC3339, in.Clock)
	if err != nil {
		return decision.Record{}, nil, fmt.Errorf("inputs: clock %q is not RFC 3339: %w", in.Clock, err)
	}
	objects, err := objectsOf(in, now)
	if err != nil {
		return decision.Record{}, nil, err
	}
	byName := map[string]decision.Gate{}
	for _, g := range in.Gates {
		byName[g.Name] = g
	}
	in.Policies = nil
	var evals []v1alpha1.GateEvaluation
	var counted []decision.CountedApproval
	if refused := refusal(in); refused != nil {
		evals = append(evals, *refused)
	}
	for _, ref := range in.Environment.Value.Gates {
		g, ok := byName[ref.Name]
		t, _ := gates.TypeOf(&g.Spec)
		switch {
		case !ok:
			evals = append(evals, v1alpha1.GateEvaluation{Name: ref.Name, Result: v1alpha1.GateFail,
				ReasonCodes: []string{ReasonGateNotFound}, Message: fmt.Sprintf("Gate %s does not exist; a missing gate never passes", ref.Name)})
		case in.Promotion.Spec.Rollback && slices.Contains(in.Environment.Value.RollbackSkipGateTypes, t):
			evals = append(evals, v1alpha1.GateEvaluation{Name: ref.Name, Type: t, Result: v1alpha1.GatePass,
				Message: fmt.Sprintf("%s gates do not apply to rollbacks (spec.rollbackSkipGateTypes of environment %s)", t, in.Environment.Name)})
		case g.Invalid != "":
			evals = append(evals, v1alpha1.GateEvaluation{Name: ref.Name, Type: t, Result: v1alpha1.GateFail,
				ReasonCodes: []string{gates.ReasonInvalid}, Message: gates.Truncate("the gate's configuration is invalid: "+g.Invalid, maxMessage)})
		case g.Spec.Policy != nil:
			ev, digest, err := e.evaluatePolicy(ref.Name, g.Spec.Policy, in, now)
			if err != nil {
				return decision.Record{}, nil, err
			}
			evals = append(evals, ev)
			in.Policies = append(in.Policies, decision.Named[v1alpha1.Digest]{Name: ref.Name, Value: v1alpha1.Digest(digest)})
		default:
			gate := &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Name: g.Name}, Spec: g.Spec}
			out := gates.Evaluate(gate, objects)
			evals = append(evals, out.Evaluation(ref.Name))
			counted = append(counted, countedApprovals(ref.Name, out.Approvals, in.Approvals)...)
		}
	}
	return decision.Decide(in, evals, counted), evals, nil
}

// countedApprovals are the approvals gate counted, by their verdicts, named
// by their UIDs and the promotion UID they are bound to.
func countedApprovals(gate string, verdicts []gates.ApprovalVerdict, approvals []decision.Approval) []decision.CountedApproval {
	var out []decision.CountedApproval
	for _, v := range verdicts {
		i := slices.IndexFunc(approvals, func(a decision.Approval) bool { return a.Name == v.Name })
		if !v.Counted || i < 0 {
			continue
		}
		a := approvals[i]
		out = append(out, decision.CountedApproval{Gate: gate, Name: a.Name, UID: a.UID, Approver: a.Spec.Approver,
			Decision: a.Spec.Decision, PromotionUID: a.Spec.PromotionUID})
	}
	return out
}

// refusal is the verdict on the promotion itself, or nil when it may go on
// to its gates.
func refusal(in decision.Inputs) *v1alpha1.GateEvaluation {
	env := in.Environment
	switch {
	case in.Promotion.Spec.Rollback && !slices.Contains(in.SucceededIn, env.Name):
		return &v1alpha1.GateEvaluation{Name: RefusalGate, Result: v1alpha1.GateFail, ReasonCodes: []string{ReasonRollbackTargetUnknown},
			Message: fmt.Sprintf("a rollback returns to a release that succeeded in %s before, and %s never did", env.Name, in.Release.Name)}
	case !in.Promotion.Spec.Rollback && len(env.Value.PromotesFrom) > 0 &&
		!slices.ContainsFunc(env.Value.PromotesFrom, func(up string) bool { return slices.Contains(in.SucceededIn, up) }):
		return &v1alpha1.GateEvaluation{Name: RefusalGate, Result: v1alpha1.GateFail, ReasonCodes: []string{ReasonUpstreamNotSucceeded},
			Message: fmt.Sprintf("release %s has not succeeded in any of %v, which environment %s promotes from", in.Release.Name, env.Value.PromotesFrom, env.Name)}
	}
	return nil
}

// objectsOf rebuilds the objects the evaluators read from the inputs: every
// field they read is in the inputs, and only those.
func objectsOf(in decision.Inputs, now time.Time) (gates.Inputs, error) {
	out := gates.Inputs{Now: now}
	promo, rel := decidedObjects(in)
	if in.Promotion.StartedAt != "" {
		t, err := time.Parse(time.RFC3339, in.Promotion.StartedAt)
		if err != nil {
			return out, fmt.Errorf("inputs: promotion.startedAt %q: %w", in.Promotion.StartedAt, err)
		}
		promo.Status.StartedAt = &metav1.Time{Time: t}
	}
	out.Promotion, out.Release = promo, rel
	for _, r := range in.OtherReleases {
		out.Releases = append(out.Releases, v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Name: r.Name}, Spec: r.Value})
	}
	for _, e := range in.Upstream {
		out.Environments = append(out.Environments, v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Name: e.Name}, Status: e.Value})
	}
	for _, a := range in.Approvals {
		t, err := time.Parse(time.RFC3339, a.CreatedAt)
		if err != nil {
			return out, fmt.Errorf("inputs: approval %s: createdAt %q: %w", a.Name, a.CreatedAt, err)
		}
		out.Approvals = append(out.Approvals, v1alpha1.Approval{ObjectMeta: metav1.ObjectMeta{Name: a.Name, UID: a.UID, CreationTimestamp: metav1.Time{Time: t}}, Spec: a.Spec})
	}
	for _, r := range in.ScanReports {
		out.ScanReports = append(out.ScanReports, v1alpha1.ScanReport{ObjectMeta: metav1.ObjectMeta{Name: r.Name}, Spec: r.Spec, Status: r.Status})
	}
	return out, nil
}

// decidedObjects are the promotion and release decided on, as far as the
// inputs record them.
func decidedObjects(in decision.Inputs) (*v1alpha1.Promotion, *v1alpha1.Release) {
	return &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Name: in.Promotion.Name, UID: in.Promotion.UID}, Spec: in.Promotion.Spec},
		&v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Name: in.Release.Name}, Spec: in.Release.Value}
}

// evaluatePolicy runs a CUE policy gate, and returns its verdict and the
// digest of the source evaluated. A policy that does not compile, exceeds
// its budget or breaks on the input fails its gate; an error is the sandbox
// failing, which decides nothing.
func (e *Evaluator) evaluatePolicy(name string, g *v1alpha1.PolicyGate, in decision.Inputs, now time.Time) (v1alpha1.GateEvaluation, string, error) {
	ev := v1alpha1.GateEvaluation{Name: name, Type: gates.TypePolicy}
	policies := e.Policies
	if policies == nil {
		policies = policy.Default()
	}
	// No context: the sandbox's time budget bounds the call.
	d, err := policies.Evaluate(context.Background(), e.Namespace, g.Source, PolicyInput(in, now))
	_, invalid := errors.AsType[*policy.CompileError](err)
	_, overBudget := errors.AsType[*policy.BudgetError](err)
	switch {
	case err != nil && !policy.IsPolicyFault(err):
		return ev, "", fmt.Errorf("policy gate %s: %w", name, err)
	case invalid:
		ev.Result, ev.ReasonCodes, ev.Message = v1alpha1.GateFail, []string{gates.ReasonInvalid}, gates.Truncate(err.Error(), maxMessage)
	case overBudget:
		ev.Result, ev.ReasonCodes, ev.Message = v1alpha1.GateFail, []string{ReasonPolicyBudget}, gates.Truncate(err.Error(), maxMessage)
	case err != nil:
		ev.Result, ev.ReasonCodes, ev.Message = v1alpha1.GateFail, []string{ReasonPolicyError}, gates.Truncate(err.Error(), maxMessage)
	case d.Allow:
		ev.Result, ev.Message = v1alpha1.GatePass, "the policy allows the promotion"
	case d.Code == policy.CodeInputRejected:
		ev.Result, ev.ReasonCodes, ev.Message = v1alpha1.GateFail, []string{ReasonPolicyRejected}, gates.Truncate(strings.Join(d.Reasons, "; "), maxMessage)
	default:
		ev.Result, ev.ReasonCodes, ev.Message = v1alpha1.GateFail, []string{ReasonPolicyDenied}, gates.Truncate(strings.Join(d.Reasons, "; "), maxMessage)
	}
	return ev, policy.Digest(g.Source), nil
}

// PolicyInput is the documented input document of policy gates. Its
// approvals are those bound to the promotion decided on, as approval gates
// count them: an approval of an earlier promotion of the same name, or of
// other release images, is not shown to a policy.
func PolicyInput(in decision.Inputs, now time.Time) policy.Input {
	out := policy.Input{
		Release:     policy.Release{Name: in.Release.Name, Version: in.Release.Value.Version},
		Environment: policy.Environment{Name: in.Environment.Name, Order: int(in.Environment.Value.Order)},
		Promotion:   policy.Promotion{Name: in.Promotion.Name, RequestedBy: in.Promotion.Spec.RequestedBy, Reason: in.Promotion.Spec.Reason},
		Clock:       policy.ClockAt(now),
	}
	if s := in.Release.Value.Source; s != nil {
		out.Release.Source = policy.Source{Repository: s.Repository, Commit: s.Commit, BuildURL: s.BuildURL}
	}
	for _, c := range in.Release.Value.Components {
		out.Release.Components = append(out.Release.Components, policy.Component{Name: c.Name, Image: string(c.Image), Digest: c.Image.Digest(), Role: string(c.Role)})
	}
	promo, rel := decidedObjects(in)
	for _, a := range in.Approvals {
		if a.Spec.Promotion != promo.Name || gates.ApprovalBinding(&a.Spec, promo, rel) != "" {
			continue
		}
		out.Approvals = append(out.Approvals, policy.Approval{Approver: a.Spec.Approver, Groups: a.Spec.ApproverGroups, Decision: string(a.Spec.Decision)})
	}
	slices.SortFunc(out.Approvals, func(a, b policy.Approval) int { return strings.Compare(a.Approver+a.Decision, b.Approver+b.Decision) })
	for _, s := range in.ScanReports {
		c := s.Status.Summary
		out.ScanReports = append(out.ScanReports, policy.ScanReport{Image: string(s.Spec.Image), MaxSeverity: string(s.Status.MaxSeverity),
			Counts: policy.SeverityCounts{Critical: int(c.Critical), High: int(c.High), Medium: int(c.Medium), Low: int(c.Low), Unknown: int(c.Unknown)}})
	}
	slices.SortFunc(out.ScanReports, func(a, b policy.ScanReport) int { return strings.Compare(a.Image, b.Image) })
	return out
}
