package evidence

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	ita "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
)

// Predicate types of Stella's records.
const (
	PredicateDecision   = "https://stella-ops.org/attestations/decision/v1"
	PredicateDeployment = "https://stella-ops.org/attestations/deployment/v1"
	PredicateRollback   = "https://stella-ops.org/attestations/rollback/v1"
)

// MaxStatementSize bounds a statement: a decision's frozen inputs are a few
// object specs, far below it.
const MaxStatementSize = 1 << 20

// Subject is what a statement is about: an image, by digest.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Statement is an in-toto Statement v1.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// DecisionPredicate is the predicate of a decision record: the frozen
// inputs the gates saw and what they said, enough to replay the decision.
type DecisionPredicate struct {
	Namespace string `json:"namespace"`
	Promotion string `json:"promotion"`
	// Record holds the frozen inputs, each gate's evaluation, the result
	// and the reason codes.
	Record          decision.Record `json:"record"`
	InputsDigest    v1alpha1.Digest `json:"inputsDigest"`
	DeterminismHash v1alpha1.Digest `json:"determinismHash"`
	PolicyDigest    v1alpha1.Digest `json:"policyDigest,omitempty"`
	// DecidedAt is the frozen clock of the decision, RFC 3339 in UTC.
	DecidedAt string `json:"decidedAt"`
}

// DecisionStatement is the canonical statement of a decision about the
// images of release: the same record gives the same bytes, on any server.
func DecisionStatement(namespace, promotion string, release v1alpha1.ReleaseSpec, record decision.Record) ([]byte, error) {
	hash, err := record.Hash()
	if err != nil {
		return nil, err
	}
	inputs, err := record.InputsDigest()
	if err != nil {
		return nil, err
	}
	pred := DecisionPredicate{Namespace: namespace, Promotion: promotion, Record: record, InputsDigest: inputs,
		DeterminismHash: hash, PolicyDigest: record.Inputs.PolicyDigest(), DecidedAt: record.Inputs.Clock}
	return MarshalStatement(PredicateDecision, ImageSubjects(release.Components), pred)
}

// ImageSubjects are the subjects of a release's images: repository and
// sha256 digest, sorted, each once.
func ImageSubjects(components []v1alpha1.ReleaseComponent) []Subject {
	var out []Subject
	for _, c := range components {
		repo, digest, _ := strings.Cut(string(c.Image), "@")
		hexDigest, ok := strings.CutPrefix(digest, "sha256:")
		if !ok {
			continue // admission accepts only sha256 digests
		}
		out = append(out, Subject{Name: repo, Digest: map[string]string{"sha256": hexDigest}})
	}
	slices.SortFunc(out, func(a, b Subject) int {
		return strings.Compare(a.Name+"@"+a.Digest["sha256"], b.Name+"@"+b.Digest["sha256"])
	})
	return slices.CompactFunc(out, func(a, b Subject) bool { return a.Name == b.Name && a.Digest["sha256"] == b.Digest["sha256"] })
}

// MarshalStatement is the canonical JSON of an in-toto Statement v1,
// checked against in-toto's own rules.
func MarshalStatement(predicateType string, subjects []Subject, predicate any) ([]byte, error) {
	pred, err := json.Marshal(predicate)
	if err != nil {
		return nil, fmt.Errorf("encode the %s predicate: %w", predicateType, err)
	}
	out, err := canonicalJSON(Statement{Type: ita.StatementTypeUri, Subject: subjects, PredicateType: predicateType, Predicate: pred})
	if err != nil {
		return nil, err
	}
	if _, err := ParseStatement(out); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseStatement reads a statement, requiring a valid in-toto Statement v1
// of one of Stella's predicate types.
func ParseStatement(data []byte) (*Statement, error) {
	if len(data) > MaxStatementSize {
		return nil, fmt.Errorf("%w: the statement has %d bytes, more than the %d allowed", ErrMalformed, len(data), MaxStatementSize)
	}
	var check ita.Statement
	if err := protojson.Unmarshal(data, &check); err != nil {
		return nil, fmt.Errorf("%w: not an in-toto Statement: %v", ErrMalformed, err)
	}
	if err := check.Validate(); err != nil {
		return nil, fmt.Errorf("%w: not a valid in-toto Statement v1: %v", ErrMalformed, err)
	}
	var st Statement
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch st.PredicateType {
	case PredicateDecision, PredicateDeployment, PredicateRollback:
	default:
		return nil, fmt.Errorf("%w: unknown predicate type %q; Stella writes %s, %s and %s", ErrMalformed, st.PredicateType,
			PredicateDecision, PredicateDeployment, PredicateRollback)
	}
	return &st, nil
}

// RolloutPredicate is the predicate of a deployment or rollback record:
// what each target was asked to run and what its agent reported.
type RolloutPredicate struct {
	Namespace   string                  `json:"namespace"`
	Promotion   string                  `json:"promotion"`
	Release     string                  `json:"release"`
	Environment string                  `json:"environment"`
	Phase       v1alpha1.PromotionPhase `json:"phase"`
	// Decision is the determinism hash of the decision that allowed the
	// rollout, and DecisionStatement the statement that seals it.
	Decision          v1alpha1.Digest `json:"decision"`
	DecisionStatement v1alpha1.Digest `json:"decisionStatement,omitempty"`
	// StartedAt and FinishedAt bound the promotion, RFC 3339 in UTC.
	StartedAt  string        `json:"startedAt,omitempty"`
	FinishedAt string        `json:"finishedAt,omitempty"`
	Tasks      []RolloutTask `json:"tasks"`
}

// RolloutTask is one DeployTask of a rollout and its outcome.
type RolloutTask struct {
	Name       string                     `json:"name"`
	Target     string                     `json:"target"`
	Action     v1alpha1.DeployAction      `json:"action"`
	Batch      int32                      `json:"batch"`
	Release    string                     `json:"release"`
	Components []v1alpha1.ComponentDigest `json:"components"`
	Phase      v1alpha1.DeployTaskPhase   `json:"phase"`
	Message    string                     `json:"message,omitempty"`
	// Observed is what the agent reported running afterwards.
	Observed   []v1alpha1.ComponentDigest `json:"observed,omitempty"`
	FinishedAt string                     `json:"finishedAt,omitempty"`
}

// RolloutStatement is the canonical statement of a finished rollout of
// promo with its tasks: a rollback record when the promotion rolled back,
// a deployment record otherwise. Its subjects are the images the rollout
// put on targets.
func RolloutStatement(promo *v1alpha1.Promotion, tasks []v1alpha1.DeployTask) (string, []byte, error) {
	pred := RolloutPredicate{Namespace: promo.Namespace, Promotion: promo.Name, Release: promo.Spec.Release,
		Environment: promo.Spec.Environment, Phase: promo.Status.Phase, StartedAt: clock(promo.Status.StartedAt), FinishedAt: clock(promo.Status.FinishedAt)}
	if d := promo.Status.Decision; d != nil {
		pred.Decision, pred.DecisionStatement = d.DeterminismHash, d.StatementDigest
	}
	predicateType, action := PredicateDeployment, v1alpha1.DeployActionDeploy
	if promo.Status.Phase == v1alpha1.PromotionRolledBack {
		predicateType, action = PredicateRollback, v1alpha1.DeployActionRollback
	}
	var images []v1alpha1.ReleaseComponent
	for _, t := range tasks {
		pred.Tasks = append(pred.Tasks, RolloutTask{Name: t.Name, Target: t.Spec.Target, Action: t.Spec.Action, Batch: t.Spec.Batch,
			Release: t.Spec.Release, Components: t.Spec.Components, Phase: t.Status.Phase, Message: t.Status.Message,
			Observed: t.Status.Observed, FinishedAt: clock(t.Status.FinishedAt)})
		if t.Spec.Action == action {
			for _, c := range t.Spec.Components {
				images = append(images, v1alpha1.ReleaseComponent{Name: c.Name, Image: c.Image})
			}
		}
	}
	slices.SortFunc(pred.Tasks, func(a, b RolloutTask) int { return strings.Compare(a.Name, b.Name) })
	subjects := ImageSubjects(images)
	if len(subjects) == 0 {
		return "", nil, fmt.Errorf("promotion %s: the rollout put no image on any target, so its record has no subject", promo.Name)
	}
	st, err := MarshalStatement(predicateType, subjects, pred)
	return predicateType, st, err
}

func clock(t *metav1.Time) string {
	if t == nil {
		return ""
	}
	return decision.Clock(t.Time)
}
