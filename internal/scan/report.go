package scan

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/uuid"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Report is the outcome of matching one image's inventory against one
// advisory snapshot, with VEX applied. It holds no clock time, so the same
// inventory, snapshot and VEX make the same report and the same digest.
type Report struct {
	Image            string `json:"image"`
	AdvisorySnapshot string `json:"advisorySnapshot"`
	Packages         int    `json:"packages"`
	// Findings, highest severity first, then by advisory and package.
	Findings    []v1alpha1.Finding      `json:"findings"`
	Summary     v1alpha1.SeverityCounts `json:"summary"`
	MaxSeverity v1alpha1.Severity       `json:"maxSeverity"`
	// VEX names the VEXStatements applied, sorted.
	VEX []string `json:"vex,omitempty"`
	// Problems are files that could not be read and versions that could not
	// be compared; what they hide is not in the findings.
	Problems []string `json:"problems,omitempty"`
}

// Evaluate matches an inventory against a snapshot and applies VEX, with
// issuers trusted in the given order to settle ties.
func Evaluate(inv *Inventory, snap *Snapshot, docs []VEXDocument, trust []string) *Report {
	r := &Report{Image: inv.Image, AdvisorySnapshot: snap.Digest, Packages: len(inv.Packages), Findings: []v1alpha1.Finding{},
		Problems: slices.Clone(inv.Problems)}
	rules := vexRules{docs: docs, trust: trust}
	for _, d := range docs {
		r.VEX = append(r.VEX, d.Name)
	}
	slices.Sort(r.VEX)
	type findingKey struct{ path, typ, name, version, advisory string }
	seen := map[findingKey]bool{}
	for _, p := range inv.Packages {
		base, _, _ := strings.Cut(p.Ecosystem, ":")
		entries := snap.byPackage[packageKey{base, p.matchName()}]
		if len(entries) == 0 {
			continue
		}
		installed := lazyVersion{raw: p.matchVersion(), ecosystem: base}
		for _, e := range entries {
			if !appliesTo(e.affected.Package.Ecosystem, p.Ecosystem) {
				continue
			}
			affected, fixedIn, err := e.affects(&installed)
			if err != nil {
				r.Problems = append(r.Problems, fmt.Sprintf("%s %s (%s): advisory %s: %v", p.Name, p.Version, p.Path, e.advisory.ID, err))
				continue
			}
			key := findingKey{p.Path, p.Type, p.Name, p.Version, e.advisory.ID}
			if !affected || seen[key] {
				continue
			}
			seen[key] = true
			f := v1alpha1.Finding{
				Package:   p.Name,
				Ecosystem: p.Ecosystem,
				Version:   p.Version,
				Advisory:  e.advisory.ID,
				Aliases:   slices.Clone(e.aliases),
				Severity:  e.severity,
				FixedIn:   fixedIn,
			}
			rules.apply(&f, p, inv.Image)
			r.Findings = append(r.Findings, f)
		}
	}
	slices.SortStableFunc(r.Findings, func(a, b v1alpha1.Finding) int {
		return cmp.Or(b.Severity.Rank()-a.Severity.Rank(), strings.Compare(a.Advisory, b.Advisory),
			strings.Compare(a.Package, b.Package), strings.Compare(a.Version, b.Version))
	})
	r.MaxSeverity = v1alpha1.SeverityNone
	for _, f := range r.Findings {
		if Suppressed(f) {
			r.Summary.Suppressed++
			continue
		}
		switch f.Severity {
		case v1alpha1.SeverityCritical:
			r.Summary.Critical++
		case v1alpha1.SeverityHigh:
			r.Summary.High++
		case v1alpha1.SeverityMedium:
			r.Summary.Medium++
		case v1alpha1.SeverityLow:
			r.Summary.Low++
		default:
			r.Summary.Unknown++
		}
		if f.Severity.Rank() > r.MaxSeverity.Rank() {
			r.MaxSeverity = f.Severity
		}
	}
	slices.Sort(r.Problems)
	r.Problems = slices.Compact(r.Problems)
	return r
}

// Suppressed tells whether VEX marks a finding not_affected or fixed.
func Suppressed(f v1alpha1.Finding) bool {
	return f.VEX != nil && (f.VEX.Status == v1alpha1.VEXNotAffected || f.VEX.Status == v1alpha1.VEXFixed)
}

// Canonical is the report's bytes as stored and hashed.
func (r *Report) Canonical() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		panic(err) // a Report has no value JSON cannot encode
	}
	return buf.Bytes()
}

// Digest is the sha256 of the canonical report.
func (r *Report) Digest() v1alpha1.Digest {
	return v1alpha1.Digest(digestOf(r.Canonical()))
}

// SBOM is the inventory as a CycloneDX 1.6 JSON document. Its serial number
// derives from the image digest and it carries no timestamp, so one image
// always makes the same bytes.
func SBOM(inv *Inventory, name string) ([]byte, error) {
	imageRef := "pkg:oci/" + purlPath(lastSegment(name)) + "@" + strings.ReplaceAll(inv.Image, ":", "%3A")
	bom := cdx.NewBOM()
	bom.SerialNumber = uuid.NewHash(sha256.New(), uuid.NameSpaceURL, []byte(inv.Image), 5).URN()
	bom.Metadata = &cdx.Metadata{
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{Type: cdx.ComponentTypeApplication, Name: "stella"}}},
		Component: &cdx.Component{
			Type: cdx.ComponentTypeContainer, BOMRef: imageRef, PackageURL: imageRef, Name: name,
			Hashes: &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: strings.TrimPrefix(inv.Image, "sha256:")}},
		},
	}
	if inv.OS.ID != "" {
		bom.Metadata.Component.Properties = &[]cdx.Property{{Name: "stella-ops.org:os", Value: strings.TrimSuffix(inv.OS.ID+" "+inv.OS.VersionID, " ")}}
	}
	var components []cdx.Component
	byRef := map[string]int{}
	for _, p := range inv.Packages {
		ref := p.PURL()
		if i, ok := byRef[ref]; ok {
			occurrences := append(*components[i].Evidence.Occurrences, cdx.EvidenceOccurrence{Location: p.Path})
			components[i].Evidence.Occurrences = &occurrences
			continue
		}
		byRef[ref] = len(components)
		components = append(components, cdx.Component{
			BOMRef: ref, Type: cdx.ComponentTypeLibrary, Name: p.Name, Version: p.Version, PackageURL: ref,
			Evidence: &cdx.Evidence{Occurrences: &[]cdx.EvidenceOccurrence{{Location: p.Path}}},
		})
	}
	bom.Components = &components
	var buf bytes.Buffer
	if err := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON).SetPretty(false).EncodeVersion(bom, cdx.SpecVersion1_6); err != nil {
		return nil, fmt.Errorf("encode the CycloneDX SBOM: %w", err)
	}
	return buf.Bytes(), nil
}

// lastSegment is an image repository's name without its registry and path.
func lastSegment(repository string) string {
	repository, _, _ = strings.Cut(repository, "@")
	if i := strings.LastIndex(repository, "/"); i >= 0 {
		repository = repository[i+1:]
	}
	if i := strings.LastIndex(repository, ":"); i >= 0 {
		repository = repository[:i]
	}
	return cmp.Or(repository, "image")
}
