package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/evaluation"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/inputs"
)

// loadReferences loads the release and environment. A missing one stalls
// the promotion with a condition that names the field, since creating the
// object lets it go on (the watches wake it).
func (r *PromotionReconciler) loadReferences(ctx context.Context, run *promotionRun) (outcome, error) {
	promo := run.promo
	rel := &v1alpha1.Release{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: promo.Namespace, Name: promo.Spec.Release}, rel); err != nil {
		if apierrors.IsNotFound(err) {
			return stall(v1alpha1.ReasonReleaseNotFound, fmt.Sprintf(
				"spec.release: Release %s does not exist in namespace %s; create it or promote an existing release", promo.Spec.Release, promo.Namespace)), nil
		}
		return outcome{}, err
	}
	env := &v1alpha1.Environment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: promo.Namespace, Name: promo.Spec.Environment}, env); err != nil {
		if apierrors.IsNotFound(err) {
			return stall(v1alpha1.ReasonEnvironmentNotFound, fmt.Sprintf(
				"spec.environment: Environment %s does not exist in namespace %s; create it or promote to an existing environment", promo.Spec.Environment, promo.Namespace)), nil
		}
		return outcome{}, err
	}
	run.rel, run.env = rel, env
	return next(), nil
}

// decide evaluates the gates on inputs gathered now, until the decision is
// final: a pending gate holds the promotion, a denial ends it, an allow
// hands over to planning the rollout.
func (r *PromotionReconciler) decide(ctx context.Context, run *promotionRun) (outcome, error) {
	promo := run.promo
	if decided(promo) {
		if promo.Status.Decision.Result == v1alpha1.DecisionDeny {
			// Stored by a run that did not get to end the promotion.
			return end(v1alpha1.PromotionRejected, v1alpha1.ReasonRejected, "rejected by the gates: "+joinCodes(promo.Status.Decision.ReasonCodes)), nil
		}
		return next(), nil
	}
	in, err := inputs.Gather(ctx, r.reader(), promo, run.rel, run.env, r.now())
	if err != nil {
		return outcome{}, err
	}
	record, evals, err := (&evaluation.Evaluator{Namespace: promo.Namespace}).Evaluate(in)
	if err != nil {
		return outcome{}, err
	}
	decidedAt, err := time.Parse(time.RFC3339, record.Inputs.Clock)
	if err != nil {
		return outcome{}, err
	}
	hash, err := record.Hash()
	if err != nil {
		return outcome{}, err
	}
	inputsDigest, err := record.InputsDigest()
	if err != nil {
		return outcome{}, err
	}
	result := &v1alpha1.Decision{
		Result: record.Result, ReasonCodes: record.ReasonCodes, PolicyDigest: record.Inputs.PolicyDigest(),
		InputsDigest: inputsDigest, DeterminismHash: hash, DecidedAt: &metav1.Time{Time: decidedAt},
	}
	if record.Result != v1alpha1.DecisionPending {
		// A final decision is kept only with its statement: one whose
		// statement could not be stored would never be sealed.
		if result.StatementDigest, err = r.keepStatement(promo, run.rel, record); err != nil {
			return outcome{}, fmt.Errorf("keep the decision's statement: %w", err)
		}
		if result.StatementDigest != "" {
			promo.Status.EvidencePacket = decisionPacketName(promo)
		}
	}
	promo.Status.Gates, promo.Status.Decision = evals, result
	run.evaluatedAt = r.now()
	if i := slices.IndexFunc(evals, func(e v1alpha1.GateEvaluation) bool { return e.Name == evaluation.RefusalGate }); i >= 0 {
		return end(v1alpha1.PromotionRejected, v1alpha1.ReasonRejected, evals[i].Message), nil
	}
	switch record.Result {
	case v1alpha1.DecisionDeny:
		return end(v1alpha1.PromotionRejected, v1alpha1.ReasonRejected, "rejected by the gates: "+joinCodes(record.ReasonCodes)), nil
	case v1alpha1.DecisionPending:
		promo.Status.Phase = v1alpha1.PromotionEvaluating
		if onlyApprovalsPending(evals) {
			promo.Status.Phase = v1alpha1.PromotionAwaitingApproval
		}
		return waiting(v1alpha1.ReasonAwaitingGates, "waiting for the gates: "+joinCodes(record.ReasonCodes), untilEarliestRetry(evals, decidedAt)), nil
	}
	promo.Status.Phase = v1alpha1.PromotionApproved
	return next(), nil
}

// keepStatement stores the in-toto statement of a final decision in the
// evidence store, before the decision itself is stored, and returns its
// digest; none when the reconciler keeps no evidence.
func (r *PromotionReconciler) keepStatement(promo *v1alpha1.Promotion, rel *v1alpha1.Release, record decision.Record) (v1alpha1.Digest, error) {
	if r.Evidence == nil {
		return "", nil
	}
	statement, err := evidence.DecisionStatement(promo.Namespace, promo.Name, rel.Spec, record)
	if err != nil {
		return "", err
	}
	return r.Evidence.Store.Put(statement)
}

func onlyApprovalsPending(evals []v1alpha1.GateEvaluation) bool {
	pending := false
	for _, e := range evals {
		if e.Result == v1alpha1.GatePending {
			if e.Type != "approval" {
				return false
			}
			pending = true
		}
	}
	return pending
}

// untilEarliestRetry is how long until the first pending gate changes by
// itself (a freeze window opening); zero when only events can change them.
func untilEarliestRetry(evals []v1alpha1.GateEvaluation, now time.Time) time.Duration {
	var earliest time.Time
	for _, e := range evals {
		if e.Result == v1alpha1.GatePending && e.RetryAt != nil && (earliest.IsZero() || e.RetryAt.Before(&metav1.Time{Time: earliest})) {
			earliest = e.RetryAt.Time
		}
	}
	if earliest.IsZero() {
		return 0
	}
	return max(time.Second, earliest.Sub(now))
}
