package gates

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// A securityVerdict gate sets thresholds over the ScanReports of every image
// of the release. It fails closed: a missing or stale report never passes.
//
// Matching. Reports are matched to components by image digest (the part after
// "@"), not by repository: the same digest is the same content wherever it was
// pushed. When several reports cover one digest, the most recently scanned
// counts.
//
// Counting. A finding counts unless applyVEX (the default) is set and a VEX
// statement marks it not_affected or fixed; with fixableOnly only findings
// with a fixedIn version count. The gate fails with security.severity-exceeded
// when a counted finding is more severe than maxSeverity (default High).
// Severities rank None < Unknown < Low < Medium < High < Critical, the order of
// the API enum: a finding of unknown severity fails only maxSeverity None. A
// severity the gate does not recognise ranks as Critical.
//
// With applyVEX and without fixableOnly the report's own status.maxSeverity
// (computed by the scanner over every finding) also counts, so a report whose
// findings list was cut still gives an exact verdict. Otherwise the verdict is
// computed from the listed findings; when the list was truncated and the
// findings it dropped could exceed maxSeverity, the gate fails with
// security.report-truncated rather than guess.
//
// Waiting. A report that does not exist yet, or has no scannedAt, is missing;
// one scanned longer than maxReportAge (default 24h) before Now is stale. Both
// are Pending until timeout (default 30m) after the promotion's
// status.startedAt (or its creation, or Now for a dry run), with RetryAt at
// that moment; from then on they fail with security.timeout. A new report
// arrives through the caller's watch, not through RetryAt.

const (
	defaultMaxSeverity  = v1alpha1.SeverityHigh
	defaultMaxReportAge = 24 * time.Hour
	defaultScanTimeout  = 30 * time.Minute
)

// securityPolicy is a validated SecurityVerdictGate with defaults applied.
type securityPolicy struct {
	maxSeverity  v1alpha1.Severity
	fixableOnly  bool
	applyVEX     bool
	maxReportAge time.Duration
	timeout      time.Duration
}

// EvaluateSecurityVerdict judges the ScanReports of in.Release's images.
func EvaluateSecurityVerdict(g *v1alpha1.SecurityVerdictGate, in Inputs) Outcome {
	pol, errs := compileSecurity(g, field.NewPath("spec", TypeSecurityVerdict))
	if len(errs) > 0 {
		return invalid(TypeSecurityVerdict, errs)
	}
	if in.Release == nil {
		return fail(TypeSecurityVerdict, "no release given", ReasonInputMissing)
	}
	reports := LatestReports(in.ScanReports)

	components := slices.Clone(in.Release.Spec.Components)
	slices.SortFunc(components, func(a, b v1alpha1.ReleaseComponent) int { return cmp.Compare(a.Name, b.Name) })

	var codes, exceeded, unknown, missing, stale []string
	worst := 0
	for _, c := range components {
		r := reports[c.Image.Digest()]
		switch {
		case r == nil || r.Status.ScannedAt == nil:
			missing = append(missing, c.Name)
			continue
		case in.Now.Sub(r.Status.ScannedAt.Time) > pol.maxReportAge:
			stale = append(stale, fmt.Sprintf("%s (scanned %s)", c.Name, formatTime(r.Status.ScannedAt.Time, time.UTC)))
			continue
		}
		v := pol.judge(r)
		worst = max(worst, v.worst)
		if v.exceeded != "" {
			exceeded = append(exceeded, c.Name+": "+v.exceeded)
		} else if v.truncated {
			unknown = append(unknown, c.Name)
		}
	}

	var parts []string
	if len(exceeded) > 0 {
		codes = append(codes, ReasonSecuritySeverityExceeded)
		parts = append(parts, fmt.Sprintf("above %s: %s", pol.maxSeverity, strings.Join(exceeded, "; ")))
	}
	if len(unknown) > 0 {
		codes = append(codes, ReasonSecurityReportTruncated)
		parts = append(parts, fmt.Sprintf("truncated reports leave the verdict unknown for %s", strings.Join(unknown, ", ")))
	}
	if len(missing) > 0 {
		codes = append(codes, ReasonSecurityReportMissing)
		parts = append(parts, "no scan report for "+strings.Join(missing, ", "))
	}
	if len(stale) > 0 {
		codes = append(codes, ReasonSecurityReportStale)
		parts = append(parts, fmt.Sprintf("reports older than %s for %s", pol.maxReportAge, strings.Join(stale, ", ")))
	}
	msg := strings.Join(parts, "; ")

	switch {
	case len(exceeded) > 0 || len(unknown) > 0:
		return fail(TypeSecurityVerdict, msg, codes...)
	case len(missing) > 0 || len(stale) > 0:
		deadline := evaluationStart(in).Add(pol.timeout)
		if !in.Now.Before(deadline) {
			return fail(TypeSecurityVerdict, fmt.Sprintf("%s, still after the %s timeout", msg, pol.timeout), append(codes, ReasonSecurityTimeout)...)
		}
		return pending(TypeSecurityVerdict, fmt.Sprintf("%s; waiting until %s", msg, formatTime(deadline, time.UTC)), timePtr(deadline), codes...)
	}
	return pass(TypeSecurityVerdict, fmt.Sprintf("%d image(s) scanned; highest counted severity %s, %s allowed", len(components), v1alpha1.Severities[worst], pol.maxSeverity))
}

// verdict is one report judged against the policy.
type verdict struct {
	worst     int    // rank of the most severe counted finding
	exceeded  string // the worst finding above the threshold, described
	truncated bool   // dropped findings could exceed the threshold
}

func (p *securityPolicy) judge(r *v1alpha1.ScanReport) verdict {
	limit := p.maxSeverity.Rank()
	var v verdict
	var worst *v1alpha1.Finding
	lowestListed := len(v1alpha1.Severities) - 1
	for i := range r.Status.Findings {
		f := &r.Status.Findings[i]
		lowestListed = min(lowestListed, f.Severity.Rank())
		if !p.counts(f) {
			continue
		}
		if worst == nil || f.Severity.Rank() > worst.Severity.Rank() {
			worst = f
		}
	}
	if worst != nil {
		v.worst = worst.Severity.Rank()
	}
	exact := p.applyVEX && !p.fixableOnly
	if exact && r.Status.MaxSeverity != "" {
		v.worst = max(v.worst, r.Status.MaxSeverity.Rank())
	}
	if v.worst > limit {
		if worst != nil && worst.Severity.Rank() == v.worst {
			v.exceeded = fmt.Sprintf("%s %s in %s %s", worst.Severity, worst.Advisory, worst.Package, worst.Version)
		} else {
			v.exceeded = fmt.Sprintf("report maxSeverity %s", r.Status.MaxSeverity)
		}
		return v
	}
	// Findings are listed highest severity first, so the ones a truncated
	// list dropped are at most as severe as the least severe one listed.
	if r.Status.Truncated && !exact && lowestListed > limit {
		v.truncated = true
	}
	return v
}

// counts says whether a finding counts under the policy.
func (p *securityPolicy) counts(f *v1alpha1.Finding) bool {
	if p.fixableOnly && f.FixedIn == "" {
		return false
	}
	if p.applyVEX && f.VEX != nil && (f.VEX.Status == v1alpha1.VEXNotAffected || f.VEX.Status == v1alpha1.VEXFixed) {
		return false
	}
	return true
}

// compileSecurity validates a securityVerdict gate and applies its defaults
// (zero durations and an empty maxSeverity mean the defaults, as the CRD's
// defaulting would have set them).
func compileSecurity(g *v1alpha1.SecurityVerdictGate, path *field.Path) (*securityPolicy, field.ErrorList) {
	if g == nil {
		return nil, field.ErrorList{field.Required(path, "set the security verdict gate")}
	}
	var errs field.ErrorList
	p := &securityPolicy{
		maxSeverity:  cmp.Or(g.MaxSeverity, defaultMaxSeverity),
		fixableOnly:  g.FixableOnly,
		applyVEX:     g.ApplyVEX == nil || *g.ApplyVEX,
		maxReportAge: cmp.Or(g.MaxReportAge.Duration, defaultMaxReportAge),
		timeout:      cmp.Or(g.Timeout.Duration, defaultScanTimeout),
	}
	if !slices.Contains(v1alpha1.Severities, p.maxSeverity) {
		errs = append(errs, field.NotSupported(path.Child("maxSeverity"), g.MaxSeverity, v1alpha1.Severities))
	}
	if p.maxReportAge < 0 {
		errs = append(errs, field.Invalid(path.Child("maxReportAge"), g.MaxReportAge.Duration.String(), "must be positive, such as 24h"))
	}
	if p.timeout < 0 {
		errs = append(errs, field.Invalid(path.Child("timeout"), g.Timeout.Duration.String(), "must be positive, such as 30m"))
	}
	return p, errs
}

// LatestReports indexes reports by image digest, keeping the most recently
// scanned report of each digest (ties broken by name, for determinism).
func LatestReports(reports []v1alpha1.ScanReport) map[string]*v1alpha1.ScanReport {
	out := make(map[string]*v1alpha1.ScanReport, len(reports))
	for i := range reports {
		r := &reports[i]
		d := r.Spec.Image.Digest()
		if cur, ok := out[d]; !ok || newerReport(r, cur) {
			out[d] = r
		}
	}
	return out
}

func newerReport(a, b *v1alpha1.ScanReport) bool {
	var at, bt time.Time
	if a.Status.ScannedAt != nil {
		at = a.Status.ScannedAt.Time
	}
	if b.Status.ScannedAt != nil {
		bt = b.Status.ScannedAt.Time
	}
	if c := at.Compare(bt); c != 0 {
		return c > 0
	}
	return a.Name < b.Name
}

// evaluationStart is when the promotion began to be evaluated: its
// status.startedAt, else its creation, else (a dry run) Now.
func evaluationStart(in Inputs) time.Time {
	if p := in.Promotion; p != nil {
		if p.Status.StartedAt != nil {
			return p.Status.StartedAt.Time
		}
		if !p.CreationTimestamp.IsZero() {
			return p.CreationTimestamp.Time
		}
	}
	return in.Now
}
