package scan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	gocvss30 "github.com/pandatix/go-cvss/30"
	gocvss31 "github.com/pandatix/go-cvss/31"
	gocvss40 "github.com/pandatix/go-cvss/40"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Advisory is the part of an OSV document (https://ossf.github.io/osv-schema/)
// that matching reads. The document itself is kept as it came.
type Advisory struct {
	ID        string        `json:"id"`
	Modified  string        `json:"modified"`
	Withdrawn string        `json:"withdrawn,omitempty"`
	Aliases   []string      `json:"aliases,omitempty"`
	Severity  []osvSeverity `json:"severity,omitempty"`
	Affected  []osvAffected `json:"affected,omitempty"`
	// DatabaseSpecific may hold a severity word, as GitHub's advisories do.
	DatabaseSpecific json.RawMessage `json:"database_specific,omitempty"`
}

type osvSeverity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

type osvAffected struct {
	Package          *osvPackage     `json:"package,omitempty"`
	Severity         []osvSeverity   `json:"severity,omitempty"`
	Ranges           []osvRange      `json:"ranges,omitempty"`
	Versions         []string        `json:"versions,omitempty"`
	DatabaseSpecific json.RawMessage `json:"database_specific,omitempty"`
}

type osvPackage struct {
	Ecosystem string `json:"ecosystem"`
	Name      string `json:"name"`
}

type osvRange struct {
	Type   string     `json:"type"`
	Events []osvEvent `json:"events"`
}

type osvEvent struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

var osvID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// ParseAdvisory reads one OSV document and checks what matching relies on;
// its error names the field at fault.
func ParseAdvisory(data []byte) (*Advisory, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var a Advisory
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("not an OSV JSON document: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not an OSV JSON document: more than one JSON value")
	}
	if !osvID.MatchString(a.ID) {
		return nil, fmt.Errorf("id %q: set the advisory's identifier, such as GHSA-xxxx-xxxx-xxxx or CVE-2024-1234", a.ID)
	}
	where := func(format string, args ...any) error {
		return fmt.Errorf("advisory %s: %s", a.ID, fmt.Sprintf(format, args...))
	}
	if _, err := time.Parse(time.RFC3339, a.Modified); err != nil {
		return nil, where("modified %q: set an RFC 3339 time, such as 2024-05-01T00:00:00Z", a.Modified)
	}
	if a.Withdrawn != "" {
		if _, err := time.Parse(time.RFC3339, a.Withdrawn); err != nil {
			return nil, where("withdrawn %q: set an RFC 3339 time, or leave it out", a.Withdrawn)
		}
	}
	if err := checkSeverities(a.Severity); err != nil {
		return nil, where("severity%s", err)
	}
	for i, aff := range a.Affected {
		field := fmt.Sprintf("affected[%d]", i)
		if aff.Package != nil && (aff.Package.Ecosystem == "" || aff.Package.Name == "") {
			return nil, where("%s.package: set both ecosystem and name", field)
		}
		if err := checkSeverities(aff.Severity); err != nil {
			return nil, where("%s.severity%s", field, err)
		}
		for j, r := range aff.Ranges {
			field := fmt.Sprintf("%s.ranges[%d]", field, j)
			switch r.Type {
			case "SEMVER", "ECOSYSTEM", "GIT":
			default:
				return nil, where("%s.type %q: use SEMVER, ECOSYSTEM or GIT", field, r.Type)
			}
			if len(r.Events) == 0 {
				return nil, where("%s.events: a range needs at least an introduced event", field)
			}
			for k, e := range r.Events {
				set := 0
				for _, v := range []string{e.Introduced, e.Fixed, e.LastAffected, e.Limit} {
					if v != "" {
						set++
					}
				}
				if set != 1 {
					return nil, where("%s.events[%d]: set exactly one of introduced, fixed, last_affected and limit", field, k)
				}
			}
		}
	}
	return &a, nil
}

func checkSeverities(severities []osvSeverity) error {
	for i, s := range severities {
		switch s.Type {
		case "CVSS_V2", "CVSS_V3", "CVSS_V4", "Ubuntu":
		default:
			return fmt.Errorf("[%d].type %q: use CVSS_V2, CVSS_V3, CVSS_V4 or Ubuntu", i, s.Type)
		}
		if s.Score == "" {
			return fmt.Errorf("[%d].score: set the vector or rating", i)
		}
	}
	return nil
}

// appliesTo tells whether an affected entry's ecosystem covers a package's:
// an advisory for Debian:12 covers Debian:12 packages, one for
// Ubuntu:22.04:LTS covers Ubuntu:22.04, one for Alpine:v3.20 covers
// Alpine:v3.20 only.
func appliesTo(advisory, pkg string) bool {
	return advisory == pkg || strings.HasPrefix(advisory, pkg+":") && strings.Contains(pkg, ":")
}

// severity is the advisory's severity for an affected entry: from a CVSS
// vector, else from the rating word the database gives.
func (a *Advisory) severity(aff osvAffected) v1alpha1.Severity {
	best := v1alpha1.Severity("")
	for _, s := range append(slices.Clone(aff.Severity), a.Severity...) {
		if sev := severityOfScore(s); sev != "" && (best == "" || sev.Rank() > best.Rank()) {
			best = sev
		}
	}
	if best != "" {
		return best
	}
	for _, raw := range []json.RawMessage{aff.DatabaseSpecific, a.DatabaseSpecific} {
		var specific struct {
			Severity string `json:"severity"`
		}
		if json.Unmarshal(raw, &specific) == nil {
			if sev := severityOfWord(specific.Severity); sev != "" {
				return sev
			}
		}
	}
	return v1alpha1.SeverityUnknown
}

func severityOfScore(s osvSeverity) v1alpha1.Severity {
	var score float64
	switch {
	case s.Type == "Ubuntu":
		return severityOfWord(s.Score)
	case s.Type == "CVSS_V3" && strings.HasPrefix(s.Score, "CVSS:3.0/"):
		c, err := gocvss30.ParseVector(s.Score)
		if err != nil {
			return ""
		}
		score = c.BaseScore()
	case s.Type == "CVSS_V3":
		c, err := gocvss31.ParseVector(s.Score)
		if err != nil {
			return ""
		}
		score = c.BaseScore()
	case s.Type == "CVSS_V4":
		c, err := gocvss40.ParseVector(s.Score)
		if err != nil {
			return ""
		}
		score = c.Score()
	default:
		return ""
	}
	switch {
	case score >= 9:
		return v1alpha1.SeverityCritical
	case score >= 7:
		return v1alpha1.SeverityHigh
	case score >= 4:
		return v1alpha1.SeverityMedium
	case score > 0:
		return v1alpha1.SeverityLow
	}
	return v1alpha1.SeverityNone
}

func severityOfWord(word string) v1alpha1.Severity {
	switch strings.ToLower(word) {
	case "critical":
		return v1alpha1.SeverityCritical
	case "high", "important":
		return v1alpha1.SeverityHigh
	case "medium", "moderate":
		return v1alpha1.SeverityMedium
	case "low", "negligible":
		return v1alpha1.SeverityLow
	}
	return ""
}
