package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Input is the document a policy sees as `input`: the frozen inputs of one
// promotion. Its JSON form (field names from the json tags) is the contract
// policies are written against, so names only ever get added, never renamed.
//
// Every field is always present in the document: a value the promotion
// does not have is "", 0 or [] (never null, never absent), so a policy's
// `input` schema can rely on the shape. Lists are passed in the order the
// caller gives them; that order is part of the frozen input and of its digest,
// so the caller builds them in a stable order.
type Input struct {
	// Release is the release being promoted.
	Release Release `json:"release"`
	// Environment is the environment the release is promoted to.
	Environment Environment `json:"environment"`
	// Promotion is the promotion request itself.
	Promotion Promotion `json:"promotion"`
	// Approvals are the approvals and rejections recorded for the promotion.
	Approvals []Approval `json:"approvals"`
	// ScanReports are the scan verdicts for the release's images.
	ScanReports []ScanReport `json:"scanReports"`
	// Clock is the decision time, frozen so a replay sees the same instant.
	Clock Clock `json:"clock"`
}

// Release is a release as the policy sees it.
type Release struct {
	// Name is the Release object's name.
	Name string `json:"name"`
	// Version is the release's version as written in its spec (semver).
	Version string `json:"version"`
	// Components are the release's images, in spec order.
	Components []Component `json:"components"`
	// Source is where the release was built from.
	Source Source `json:"source"`
}

// Component is one image of a release.
type Component struct {
	// Name is the component name, e.g. "api".
	Name string `json:"name"`
	// Image is the image reference by digest, "repository@sha256:<hex>".
	Image string `json:"image"`
	// Digest is the image digest alone, "sha256:<hex>".
	Digest string `json:"digest"`
	// Role is one of "primary", "sidecar", "init", "migration".
	Role string `json:"role"`
}

// Source is the provenance of a release.
type Source struct {
	// Repository is the source repository URL.
	Repository string `json:"repository"`
	// Commit is the source commit.
	Commit string `json:"commit"`
	// BuildURL is the CI build that produced the images.
	BuildURL string `json:"buildURL"`
}

// Environment is the promotion's target environment.
type Environment struct {
	// Name is the Environment object's name, e.g. "prod".
	Name string `json:"name"`
	// Order is the environment's position in the pipeline (dev 10, stage 20,
	// prod 30, by convention); larger is further from dev.
	Order int `json:"order"`
}

// Promotion is the promotion request.
type Promotion struct {
	// Name is the Promotion object's name.
	Name string `json:"name"`
	// RequestedBy is the authenticated user who created the promotion.
	RequestedBy string `json:"requestedBy"`
	// Reason is the free-text reason given by the requester.
	Reason string `json:"reason"`
}

// Approval is one approval or rejection of the promotion.
type Approval struct {
	// Approver is the authenticated user who decided.
	Approver string `json:"approver"`
	// Groups are the approver's groups at the time of the decision.
	Groups []string `json:"groups"`
	// Decision is "approve" or "reject".
	Decision string `json:"decision"`
}

// ScanReport is the scan verdict for one image of the release, after VEX.
type ScanReport struct {
	// Image is the scanned image reference by digest.
	Image string `json:"image"`
	// MaxSeverity is the highest severity found, spelt as the ScanReport API
	// spells it: "None", "Unknown", "Low", "Medium", "High" or "Critical".
	MaxSeverity string `json:"maxSeverity"`
	// Counts are the number of findings per severity.
	Counts SeverityCounts `json:"counts"`
}

// SeverityCounts counts findings per severity. It is a struct rather than a
// map so the document has a fixed shape and a fixed encoding.
type SeverityCounts struct {
	Critical int `json:"critical"`
	High     int `json:"high"`
	Medium   int `json:"medium"`
	Low      int `json:"low"`
	Unknown  int `json:"unknown"`
}

// Clock is the decision time. CUE has no notion of "now" (evaluation is
// hermetic), so the time a policy may depend on is an input like any other.
type Clock struct {
	// Now is the decision time in RFC 3339, UTC, whole seconds:
	// "2026-01-02T15:04:05Z". Use ClockAt to produce it.
	Now string `json:"now"`
}

// ClockAt returns the Clock for t in the one format policies see: UTC,
// RFC 3339, truncated to whole seconds, so equal instants encode equally.
func ClockAt(t time.Time) Clock {
	return Clock{Now: t.UTC().Format(time.RFC3339)}
}

// MaxInputBytes bounds the JSON encoding of an Input. The API bounds every
// list an Input is built from, so only a promotion far outside normal use
// reaches it; its policy gates then fail closed.
const MaxInputBytes = 1 << 20

// encode is the JSON document a policy sees as input, refused when it is
// over MaxInputBytes.
func (in Input) encode() ([]byte, error) {
	data, err := json.Marshal(in.withEmptyLists())
	if err != nil {
		return nil, fmt.Errorf("encode policy input: %w", err)
	}
	if len(data) > MaxInputBytes {
		return nil, fmt.Errorf("policy input is %d bytes of JSON, over the limit of %d: the promotion has too many components, approvals or scan reports for a policy gate", len(data), MaxInputBytes)
	}
	return data, nil
}

// withEmptyLists returns a copy of in whose nil lists are empty, so they
// encode as [] rather than null. It never writes to the caller's slices.
func (in Input) withEmptyLists() Input {
	in.Release.Components = nonNil(in.Release.Components)
	in.Approvals = slices.Clone(nonNil(in.Approvals))
	for i := range in.Approvals {
		in.Approvals[i].Groups = nonNil(in.Approvals[i].Groups)
	}
	in.ScanReports = nonNil(in.ScanReports)
	return in
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
