package gates

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

var (
	apiDigest    = "sha256:" + strings.Repeat("a", 64)
	workerDigest = "sha256:" + strings.Repeat("b", 64)
)

func report(name, image, scannedAt string, findings ...v1alpha1.Finding) v1alpha1.ScanReport {
	r := v1alpha1.ScanReport{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.ScanReportSpec{Image: v1alpha1.ImageDigestRef(image)},
		Status:     v1alpha1.ScanReportStatus{Findings: findings},
	}
	if scannedAt != "" {
		r.Status.ScannedAt = mts(scannedAt)
	}
	return r
}

func finding(sev v1alpha1.Severity, advisory, fixedIn string, vex v1alpha1.VEXStatus) v1alpha1.Finding {
	f := v1alpha1.Finding{Package: "openssl", Version: "3.0.1", Advisory: advisory, Severity: sev, FixedIn: fixedIn}
	if vex != "" {
		f.VEX = &v1alpha1.FindingVEX{Status: vex}
	}
	return f
}

func TestSecurityVerdict(t *testing.T) {
	const started = "2024-06-03T10:00:00Z"
	const fresh = "2024-06-03T09:00:00Z"
	critical := finding(v1alpha1.SeverityCritical, "CVE-2024-0001", "", "")
	criticalNotAffected := finding(v1alpha1.SeverityCritical, "CVE-2024-0001", "", v1alpha1.VEXNotAffected)
	criticalAffected := finding(v1alpha1.SeverityCritical, "CVE-2024-0001", "", v1alpha1.VEXAffected)
	highFixable := finding(v1alpha1.SeverityHigh, "CVE-2024-0002", "3.0.2", "")
	unknown := finding(v1alpha1.SeverityUnknown, "GHSA-xxxx-0003", "", "")
	cleanWorker := report("worker", "reg.example/shop/worker@"+workerDigest, fresh)
	defaults := v1alpha1.SecurityVerdictGate{}

	truncated := report("api", "reg.example/shop/api@"+apiDigest, fresh, critical, critical)
	truncated.Status.Truncated = true
	truncated.Status.MaxSeverity = v1alpha1.SeverityCritical

	scannerMax := report("api", "reg.example/shop/api@"+apiDigest, fresh)
	scannerMax.Status.MaxSeverity = v1alpha1.SeverityCritical
	scannerMax.Status.Truncated = true

	tests := []struct {
		name    string
		gate    v1alpha1.SecurityVerdictGate
		reports []v1alpha1.ScanReport
		now     string
		want    want
	}{
		{
			name: "clean reports pass", gate: defaults, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, fresh, highFixable), cleanWorker},
			want:    want{result: v1alpha1.GatePass},
		},
		{
			name: "a missing report is pending until the timeout", gate: defaults, now: "2024-06-03T10:29:59Z",
			reports: []v1alpha1.ScanReport{cleanWorker},
			want:    want{v1alpha1.GatePending, codes(ReasonSecurityReportMissing), "2024-06-03T10:30:00Z"},
		},
		{
			name: "a missing report fails at the timeout", gate: defaults, now: "2024-06-03T10:30:00Z",
			reports: []v1alpha1.ScanReport{cleanWorker},
			want:    want{result: v1alpha1.GateFail, codes: codes(ReasonSecurityReportMissing, ReasonSecurityTimeout)},
		},
		{
			name: "a report without scannedAt is missing", gate: v1alpha1.SecurityVerdictGate{Timeout: dur("1h")}, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, ""), cleanWorker},
			want:    want{v1alpha1.GatePending, codes(ReasonSecurityReportMissing), "2024-06-03T11:00:00Z"},
		},
		{
			name: "a stale report is pending", gate: defaults, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, "2024-06-02T10:04:59Z"), cleanWorker},
			want:    want{v1alpha1.GatePending, codes(ReasonSecurityReportStale), "2024-06-03T10:30:00Z"},
		},
		{
			name: "a report exactly maxReportAge old is fresh", gate: defaults, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, "2024-06-02T10:05:00Z"), cleanWorker},
			want:    want{result: v1alpha1.GatePass},
		},
		{
			name: "the freshest of several reports of one digest counts", gate: defaults, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{
				report("api-old", "reg.example/shop/api@"+apiDigest, "2024-05-01T00:00:00Z", critical),
				report("api-new", "mirror.example/api@"+apiDigest, fresh), // same digest, other repository
				cleanWorker,
			},
			want: want{result: v1alpha1.GatePass},
		},
		{
			name: "a critical finding exceeds the default High", gate: defaults, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, fresh, critical), cleanWorker},
			want:    want{result: v1alpha1.GateFail, codes: codes(ReasonSecuritySeverityExceeded)},
		},
		{
			name: "a severity failure is final even with another report missing", gate: defaults, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, fresh, critical)},
			want:    want{result: v1alpha1.GateFail, codes: codes(ReasonSecurityReportMissing, ReasonSecuritySeverityExceeded)},
		},
		{
			name: "VEX not_affected suppresses a critical finding", gate: defaults, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, fresh, criticalNotAffected), cleanWorker},
			want:    want{result: v1alpha1.GatePass},
		},
		{
			name: "VEX affected does not", gate: defaults, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, fresh, criticalAffected), cleanWorker},
			want:    want{result: v1alpha1.GateFail, codes: codes(ReasonSecuritySeverityExceeded)},
		},
		{
			name: "with applyVEX false suppressed findings count", gate: v1alpha1.SecurityVerdictGate{ApplyVEX: ptr(false)}, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, fresh, criticalNotAffected), cleanWorker},
			want:    want{result: v1alpha1.GateFail, codes: codes(ReasonSecuritySeverityExceeded)},
		},
		{
			name: "fixableOnly ignores a critical finding without a fix", gate: v1alpha1.SecurityVerdictGate{FixableOnly: true}, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, fresh, critical, highFixable), cleanWorker},
			want:    want{result: v1alpha1.GatePass},
		},
		{
			name: "fixableOnly still counts fixable findings", gate: v1alpha1.SecurityVerdictGate{FixableOnly: true, MaxSeverity: v1alpha1.SeverityMedium}, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, fresh, critical, highFixable), cleanWorker},
			want:    want{result: v1alpha1.GateFail, codes: codes(ReasonSecuritySeverityExceeded)},
		},
		{
			name: "Unknown ranks above None", gate: v1alpha1.SecurityVerdictGate{MaxSeverity: v1alpha1.SeverityNone}, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, fresh, unknown), cleanWorker},
			want:    want{result: v1alpha1.GateFail, codes: codes(ReasonSecuritySeverityExceeded)},
		},
		{
			name: "Unknown ranks below Low", gate: v1alpha1.SecurityVerdictGate{MaxSeverity: v1alpha1.SeverityLow}, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{report("api", "reg.example/shop/api@"+apiDigest, fresh, unknown), cleanWorker},
			want:    want{result: v1alpha1.GatePass},
		},
		{
			name: "the scanner's maxSeverity counts when findings were cut", gate: defaults, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{scannerMax, cleanWorker},
			want:    want{result: v1alpha1.GateFail, codes: codes(ReasonSecuritySeverityExceeded)},
		},
		{
			name: "a truncated report under fixableOnly fails closed", gate: v1alpha1.SecurityVerdictGate{FixableOnly: true}, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{truncated, cleanWorker},
			want:    want{result: v1alpha1.GateFail, codes: codes(ReasonSecurityReportTruncated)},
		},
		{
			name: "an unknown maxSeverity is invalid", gate: v1alpha1.SecurityVerdictGate{MaxSeverity: "Severe"}, now: "2024-06-03T10:05:00Z",
			reports: []v1alpha1.ScanReport{cleanWorker},
			want:    want{result: v1alpha1.GateFail, codes: codes(ReasonInvalid)},
		},
	}
	release := &v1alpha1.Release{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-2.3.1"},
		Spec: v1alpha1.ReleaseSpec{Components: []v1alpha1.ReleaseComponent{
			{Name: "worker", Image: v1alpha1.ImageDigestRef("reg.example/shop/worker@" + workerDigest)},
			{Name: "api", Image: v1alpha1.ImageDigestRef("reg.example/shop/api@" + apiDigest)},
		}},
	}
	promo := &v1alpha1.Promotion{
		ObjectMeta: metav1.ObjectMeta{Name: "promo-1", CreationTimestamp: metav1.NewTime(ts("2024-06-03T09:00:00Z"))},
		Status:     v1alpha1.PromotionStatus{StartedAt: mts(started)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{SecurityVerdict: &tt.gate}}
			check(t, Evaluate(gate, Inputs{Now: ts(tt.now), Promotion: promo, Release: release, ScanReports: tt.reports}), tt.want)
		})
	}
}

// Without status.startedAt the timeout runs from the promotion's creation;
// without a promotion (a dry run) from Now.
func TestSecurityTimeoutStart(t *testing.T) {
	release := &v1alpha1.Release{Spec: v1alpha1.ReleaseSpec{Components: []v1alpha1.ReleaseComponent{
		{Name: "api", Image: v1alpha1.ImageDigestRef("reg.example/shop/api@" + apiDigest)},
	}}}
	gate := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{SecurityVerdict: &v1alpha1.SecurityVerdictGate{}}}
	created := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(ts("2024-06-03T09:00:00Z"))}}

	check(t, Evaluate(gate, Inputs{Now: ts("2024-06-03T09:10:00Z"), Promotion: created, Release: release}),
		want{v1alpha1.GatePending, codes(ReasonSecurityReportMissing), "2024-06-03T09:30:00Z"})
	check(t, Evaluate(gate, Inputs{Now: ts("2024-06-03T09:10:00Z"), Release: release}),
		want{v1alpha1.GatePending, codes(ReasonSecurityReportMissing), "2024-06-03T09:40:00Z"})
}

func TestSecurityMessageNamesTheFinding(t *testing.T) {
	release := &v1alpha1.Release{Spec: v1alpha1.ReleaseSpec{Components: []v1alpha1.ReleaseComponent{
		{Name: "api", Image: v1alpha1.ImageDigestRef("reg.example/shop/api@" + apiDigest)},
	}}}
	gate := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{SecurityVerdict: &v1alpha1.SecurityVerdictGate{}}}
	got := Evaluate(gate, Inputs{Now: ts("2024-06-03T10:00:00Z"), Release: release, ScanReports: []v1alpha1.ScanReport{
		report("api", "reg.example/shop/api@"+apiDigest, "2024-06-03T09:00:00Z", finding(v1alpha1.SeverityCritical, "CVE-2024-0001", "3.0.2", "")),
	}})
	if want := "above High: api: Critical CVE-2024-0001 in openssl 3.0.1"; got.Message != want {
		t.Errorf("message = %q, want %q", got.Message, want)
	}
}
