// Package decision combines gate verdicts into a promotion's decision and
// fingerprints it: the determinism hash is the sha256 of the RFC 8785
// canonical JSON of the frozen inputs and the outputs, so that a replay from
// the same inputs must reproduce it bit for bit.
package decision

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/gowebpki/jcs"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Inputs are what a decision was based on, frozen when it was made: every
// field of every object a gate evaluator reads, so that evaluating them
// again (a replay) must give the same verdicts. Every list is sorted by name
// before hashing, so the order in which objects were listed never changes
// the hash.
type Inputs struct {
	// Clock is the frozen evaluation time, RFC 3339 in UTC.
	Clock       string                          `json:"clock"`
	Promotion   Promotion                       `json:"promotion"`
	Release     Named[v1alpha1.ReleaseSpec]     `json:"release"`
	Environment Named[v1alpha1.EnvironmentSpec] `json:"environment"`
	// Gates are the gates the environment names that exist.
	Gates     []Gate     `json:"gates"`
	Approvals []Approval `json:"approvals"`
	// Upstream are the environments the gates looked at, with the status
	// they had.
	Upstream []Named[v1alpha1.EnvironmentStatus] `json:"upstream"`
	// OtherReleases are the releases dependency gates compared against.
	OtherReleases []Named[v1alpha1.ReleaseSpec] `json:"otherReleases"`
	// ScanReports are the scan reports of the release's images.
	ScanReports []ScanReport `json:"scanReports"`
	// Policies are the digests of the CUE policy sources evaluated, by gate.
	Policies []Named[v1alpha1.Digest] `json:"policies"`
	// SucceededIn are the environments, among the target environment and
	// those it promotes from, where the release had succeeded.
	SucceededIn []string `json:"succeededIn"`
}

// Promotion is the promotion decided on.
type Promotion struct {
	Name string `json:"name"`
	// UID tells this promotion from any other that had or will have its
	// name: approvals count only when bound to it.
	UID  types.UID              `json:"uid"`
	Spec v1alpha1.PromotionSpec `json:"spec"`
	// StartedAt is when its evaluation began (RFC 3339, UTC): fail-closed
	// timeouts count from it.
	StartedAt string `json:"startedAt,omitempty"`
}

// Gate is a gate as the decision saw it.
type Gate struct {
	Name string            `json:"name"`
	Spec v1alpha1.GateSpec `json:"spec"`
	// Invalid is why the gate's configuration could not be evaluated, as
	// its status said; empty when it could.
	Invalid string `json:"invalid,omitempty"`
}

// Approval is an approval of the promotion, bound or not (its spec says
// to which promotion UID and release images).
type Approval struct {
	Name string                `json:"name"`
	UID  types.UID             `json:"uid"`
	Spec v1alpha1.ApprovalSpec `json:"spec"`
	// CreatedAt orders approvals (RFC 3339, UTC).
	CreatedAt string `json:"createdAt"`
}

// ScanReport is a scan report of one of the release's images.
type ScanReport struct {
	Name   string                    `json:"name"`
	Spec   v1alpha1.ScanReportSpec   `json:"spec"`
	Status v1alpha1.ScanReportStatus `json:"status"`
}

// Named is an object's name with the part of it a decision depends on.
type Named[T any] struct {
	Name  string `json:"name"`
	Value T      `json:"value"`
}

// Record is the whole decision: what it was based on and what came out.
type Record struct {
	Inputs      Inputs                    `json:"inputs"`
	Gates       []v1alpha1.GateEvaluation `json:"gates"`
	Result      v1alpha1.DecisionResult   `json:"result"`
	ReasonCodes []string                  `json:"reasonCodes"`
	// CountedApprovals are the approvals the approval gates counted, each
	// with its UID and the promotion UID it is bound to, sorted by gate and
	// name; absent when no approval counted.
	CountedApprovals []CountedApproval `json:"countedApprovals,omitempty"`
}

// CountedApproval is an approval that an approval gate counted.
type CountedApproval struct {
	Gate     string                    `json:"gate"`
	Name     string                    `json:"name"`
	UID      types.UID                 `json:"uid"`
	Approver string                    `json:"approver"`
	Decision v1alpha1.ApprovalDecision `json:"decision"`
	// PromotionUID is the promotion the approval is bound to: always the
	// decided promotion's UID, recorded so that the record shows it.
	PromotionUID types.UID `json:"promotionUID"`
}

// Decide combines the gates' verdicts: any Fail denies, whatever else
// passed (approvals cannot outvote a failing gate); otherwise any Pending
// leaves the decision pending; otherwise it allows. Reason codes are those of
// every gate that did not pass, sorted and without duplicates. counted are
// the approvals the approval gates counted.
func Decide(in Inputs, gates []v1alpha1.GateEvaluation, counted []CountedApproval) Record {
	gates = slices.Clone(gates)
	slices.SortFunc(gates, func(a, b v1alpha1.GateEvaluation) int { return cmp.Compare(a.Name, b.Name) })
	result := v1alpha1.DecisionAllow
	var codes []string
	for _, g := range gates {
		switch g.Result {
		case v1alpha1.GateFail:
			result = v1alpha1.DecisionDeny
		case v1alpha1.GatePending:
			if result != v1alpha1.DecisionDeny {
				result = v1alpha1.DecisionPending
			}
		}
		if g.Result != v1alpha1.GatePass {
			codes = append(codes, g.ReasonCodes...)
		}
	}
	slices.Sort(codes)
	counted = slices.Clone(counted)
	slices.SortFunc(counted, func(a, b CountedApproval) int {
		return cmp.Or(cmp.Compare(a.Gate, b.Gate), cmp.Compare(a.Name, b.Name))
	})
	return Record{Inputs: in.sorted(), Gates: gates, Result: result, ReasonCodes: slices.Compact(codes), CountedApprovals: counted}
}

// Hash is the record's determinism hash, sha256:<hex> of its canonical JSON.
func (r Record) Hash() (v1alpha1.Digest, error) {
	return digestOf(r)
}

// InputsDigest is sha256:<hex> of the canonical JSON of the inputs alone.
func (r Record) InputsDigest() (v1alpha1.Digest, error) {
	return digestOf(r.Inputs)
}

// Canonical is the record as RFC 8785 canonical JSON.
func (r Record) Canonical() ([]byte, error) {
	return canonical(r)
}

func digestOf(v any) (v1alpha1.Digest, error) {
	c, err := canonical(v)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return v1alpha1.Digest("sha256:" + hex.EncodeToString(sum[:])), nil
}

func canonical(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode the decision record: %w", err)
	}
	c, err := jcs.Transform(raw)
	if err != nil {
		return nil, fmt.Errorf("canonicalise the decision record: %w", err)
	}
	return c, nil
}

// PolicyDigest fingerprints the policies a decision evaluated: the digest of
// their digests in gate-name order, or "" when there were none.
func (in Inputs) PolicyDigest() v1alpha1.Digest {
	policies := in.sorted().Policies
	if len(policies) == 0 {
		return ""
	}
	h := sha256.New()
	for _, p := range policies {
		fmt.Fprintf(h, "%s %s\n", p.Name, p.Value)
	}
	return v1alpha1.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
}

// Clock formats an evaluation time the way Inputs.Clock holds it.
func Clock(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}

func (in Inputs) sorted() Inputs {
	in.Gates = sortedBy(in.Gates, func(g Gate) string { return g.Name })
	in.Approvals = sortedBy(in.Approvals, func(a Approval) string { return a.Name })
	in.Upstream = sortedBy(in.Upstream, Named[v1alpha1.EnvironmentStatus].name)
	in.OtherReleases = sortedBy(in.OtherReleases, Named[v1alpha1.ReleaseSpec].name)
	in.ScanReports = sortedBy(in.ScanReports, func(r ScanReport) string { return r.Name })
	in.Policies = sortedBy(in.Policies, Named[v1alpha1.Digest].name)
	in.SucceededIn = slices.Compact(slices.Sorted(slices.Values(in.SucceededIn)))
	return in
}

func (n Named[T]) name() string { return n.Name }

func sortedBy[T any](items []T, name func(T) string) []T {
	items = slices.Clone(items)
	slices.SortFunc(items, func(a, b T) int { return cmp.Compare(name(a), name(b)) })
	return items
}
