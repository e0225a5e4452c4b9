package scan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openvex/go-vex/pkg/vex"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/gates"
)

// VEXDocument is an accepted OpenVEX document with where it came from.
type VEXDocument struct {
	// Name names the VEXStatement object that holds it.
	Name string
	// Issuer is who vouches for it, for the trust order: the VEXStatement's
	// issuer, else the document's author.
	Issuer string
	Doc    *vex.VEX
}

// ParseVEX reads an OpenVEX document and checks what applying it relies on;
// its error names the statement and field at fault.
func ParseVEX(data []byte) (*vex.VEX, error) {
	doc, err := vex.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("not an OpenVEX JSON document: %w", err)
	}
	if !strings.HasPrefix(doc.Context, "https://openvex.dev/ns") {
		return nil, fmt.Errorf("@context %q: an OpenVEX document's context starts with https://openvex.dev/ns", doc.Context)
	}
	if doc.Timestamp == nil {
		return nil, fmt.Errorf("timestamp: set when the document was issued (RFC 3339)")
	}
	if len(doc.Statements) == 0 {
		return nil, fmt.Errorf("statements: the document has none")
	}
	for i, s := range doc.Statements {
		field := fmt.Sprintf("statements[%d]", i)
		if s.Vulnerability.Name == "" {
			return nil, fmt.Errorf("%s.vulnerability.name: name the vulnerability, such as CVE-2024-1234", field)
		}
		if !s.Status.Valid() {
			return nil, fmt.Errorf("%s.status %q: use one of %s", field, s.Status, strings.Join(vex.Statuses(), ", "))
		}
		if s.Status == vex.StatusNotAffected && s.Justification == "" && s.ImpactStatement == "" {
			return nil, fmt.Errorf("%s: a not_affected statement needs a justification or an impact_statement", field)
		}
		if s.Justification != "" && !s.Justification.Valid() {
			return nil, fmt.Errorf("%s.justification %q: use one of %s", field, s.Justification, strings.Join(vex.Justifications(), ", "))
		}
		if len(s.Products) == 0 {
			return nil, fmt.Errorf("%s.products: name the image (pkg:oci/...@sha256:...) or package the statement is about", field)
		}
	}
	return doc, nil
}

// vexRules resolves what VEX says about findings.
type vexRules struct {
	docs []VEXDocument
	// trust orders issuers, most trusted first, to break timestamp ties.
	trust []string
}

// verdict is one statement that applies to a finding.
type verdict struct {
	doc       VEXDocument
	statement vex.Statement
	at        time.Time
}

// apply sets what VEX says on a finding of a package in the image. The
// latest statement wins; at the same time, the most trusted issuer's, then
// the first VEXStatement by name. Statements that disagree with the winner
// are named on the finding.
func (r vexRules) apply(f *v1alpha1.Finding, p Package, image string) {
	var verdicts []verdict
	for _, d := range r.docs {
		for _, s := range d.Doc.Statements {
			if !namesVulnerability(s.Vulnerability, f) || !slices.ContainsFunc(s.Products, func(pr vex.Product) bool { return productCovers(pr, p, image) }) {
				continue
			}
			at := *d.Doc.Timestamp
			if s.Timestamp != nil {
				at = *s.Timestamp
			}
			verdicts = append(verdicts, verdict{doc: d, statement: s, at: at})
		}
	}
	if len(verdicts) == 0 {
		return
	}
	slices.SortStableFunc(verdicts, func(a, b verdict) int {
		return cmp.Or(b.at.Compare(a.at), cmp.Compare(r.rank(a.doc.Issuer), r.rank(b.doc.Issuer)), strings.Compare(a.doc.Name, b.doc.Name))
	})
	winner := verdicts[0]
	f.VEX = &v1alpha1.FindingVEX{
		Status:        v1alpha1.VEXStatus(winner.statement.Status),
		Justification: gates.Truncate(cmp.Or(string(winner.statement.Justification), winner.statement.ImpactStatement), 256),
		Statement:     winner.doc.Name,
	}
	var disagree []string
	for _, v := range verdicts[1:] {
		if v.statement.Status != winner.statement.Status {
			disagree = append(disagree, fmt.Sprintf("%s (%s, %s) says %s", v.doc.Name, v.doc.Issuer, v.at.UTC().Format(time.RFC3339), v.statement.Status))
		}
	}
	if len(disagree) > 0 {
		f.VEX.Conflict = gates.Truncate(fmt.Sprintf("%s; %s (%s, %s) wins: the latest statement, then the most trusted issuer",
			strings.Join(disagree, "; "), winner.doc.Name, winner.doc.Issuer, winner.at.UTC().Format(time.RFC3339)), 512)
	}
}

// rank is an issuer's place in the trust order; unlisted issuers come last.
func (r vexRules) rank(issuer string) int {
	if i := slices.Index(r.trust, issuer); i >= 0 {
		return i
	}
	return len(r.trust)
}

func namesVulnerability(v vex.Vulnerability, f *v1alpha1.Finding) bool {
	ids := append([]vex.VulnerabilityID{v.Name}, v.Aliases...)
	return slices.ContainsFunc(ids, func(id vex.VulnerabilityID) bool {
		return string(id) == f.Advisory || slices.Contains(f.Aliases, string(id))
	})
}

// productCovers tells whether a statement's product is the image (by
// digest, in a pkg:oci purl, a repo@digest reference or a sha256 hash), or
// is the package itself; listed subcomponents narrow it to those packages.
func productCovers(pr vex.Product, p Package, image string) bool {
	if componentIsPackage(pr.Component, p) {
		return true
	}
	if !componentIsImage(pr.Component, image) {
		return false
	}
	if len(pr.Subcomponents) == 0 {
		return true
	}
	return slices.ContainsFunc(pr.Subcomponents, func(s vex.Subcomponent) bool { return componentIsPackage(s.Component, p) })
}

func componentIsImage(c vex.Component, image string) bool {
	hexDigest := strings.TrimPrefix(image, "sha256:")
	ids := []string{c.ID}
	for _, id := range c.Identifiers {
		ids = append(ids, id)
	}
	if h, ok := c.Hashes[vex.SHA256]; ok {
		ids = append(ids, "sha256:"+string(h))
	}
	return slices.ContainsFunc(ids, func(id string) bool {
		if id == "" {
			return false
		}
		if rest, ok := strings.CutPrefix(id, "pkg:oci/"); ok {
			_, version, _ := strings.Cut(rest, "@")
			version, _, _ = strings.Cut(version, "?")
			return strings.EqualFold(version, "sha256%3A"+hexDigest) || version == image
		}
		return id == image || strings.HasSuffix(id, "@"+image)
	})
}

func componentIsPackage(c vex.Component, p Package) bool {
	purl := p.PURL()
	ids := []string{c.ID}
	if id, ok := c.Identifiers[vex.PURL]; ok {
		ids = append(ids, id)
	}
	return slices.ContainsFunc(ids, func(id string) bool {
		return strings.HasPrefix(id, "pkg:") && !strings.HasPrefix(id, "pkg:oci/") && vex.PurlMatches(id, purl)
	})
}
