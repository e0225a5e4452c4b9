package v1alpha1

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VEXStatus is an OpenVEX status.
// +kubebuilder:validation:Enum=not_affected;affected;fixed;under_investigation
type VEXStatus string

const (
	VEXNotAffected        VEXStatus = "not_affected"
	VEXAffected           VEXStatus = "affected"
	VEXFixed              VEXStatus = "fixed"
	VEXUnderInvestigation VEXStatus = "under_investigation"
)

// ScanReportSpec names the image scanned and the advisories it was matched to.
type ScanReportSpec struct {
	// image scanned, pinned by digest.
	// +required
	Image ImageDigestRef `json:"image"`

	// advisorySnapshot is the digest of the advisory snapshot to match against;
	// empty means the active snapshot.
	// +optional
	AdvisorySnapshot Digest `json:"advisorySnapshot,omitempty"`
}

// ScanReportStatus holds the findings after VEX.
type ScanReportStatus struct {
	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (scanned), Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// advisorySnapshot is the digest of the snapshot actually matched.
	// +optional
	AdvisorySnapshot Digest `json:"advisorySnapshot,omitempty"`

	// summary counts findings by severity after VEX.
	// +optional
	Summary SeverityCounts `json:"summary,omitempty"`

	// maxSeverity is the highest severity among unsuppressed findings.
	// +optional
	MaxSeverity Severity `json:"maxSeverity,omitempty"`

	// findings, highest severity first. Long lists are cut at maxItems;
	// truncated says so and the full report is in the evidence store.
	// +optional
	// +kubebuilder:validation:MaxItems=1000
	Findings []Finding `json:"findings,omitempty"`

	// truncated says findings was cut.
	// +optional
	Truncated bool `json:"truncated,omitempty"`

	// packages is how many packages were found in the image.
	// +optional
	Packages int32 `json:"packages,omitempty"`

	// sbomDigest is the digest of the CycloneDX SBOM in the evidence store.
	// +optional
	SBOMDigest Digest `json:"sbomDigest,omitempty"`

	// reportDigest is the digest of the whole canonical report.
	// +optional
	ReportDigest Digest `json:"reportDigest,omitempty"`

	// scannedAt is when the image was last matched.
	// +optional
	ScannedAt *metav1.Time `json:"scannedAt,omitempty"`
}

// SeverityCounts counts findings by severity.
type SeverityCounts struct {
	// +optional
	Critical int32 `json:"critical,omitempty"`
	// +optional
	High int32 `json:"high,omitempty"`
	// +optional
	Medium int32 `json:"medium,omitempty"`
	// +optional
	Low int32 `json:"low,omitempty"`
	// +optional
	Unknown int32 `json:"unknown,omitempty"`
	// suppressed counts findings that VEX marked not_affected or fixed.
	// +optional
	Suppressed int32 `json:"suppressed,omitempty"`
}

// Finding is one advisory that matches one installed package.
type Finding struct {
	// package name.
	// +required
	// +kubebuilder:validation:MaxLength=256
	Package string `json:"package"`
	// ecosystem of the package, such as Debian, Alpine, Go or npm.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Ecosystem string `json:"ecosystem,omitempty"`
	// version installed.
	// +required
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version"`
	// advisory ID, such as GHSA-xxxx or CVE-2024-1234.
	// +required
	// +kubebuilder:validation:MaxLength=128
	Advisory string `json:"advisory"`
	// aliases of the advisory.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=128
	Aliases []string `json:"aliases,omitempty"`
	// severity of the advisory.
	// +required
	Severity Severity `json:"severity"`
	// fixedIn is the first fixed version, if any.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	FixedIn string `json:"fixedIn,omitempty"`
	// vex is the status a VEX statement gave this finding.
	// +optional
	VEX *FindingVEX `json:"vex,omitempty"`
}

// FindingVEX is what VEX says about a finding.
type FindingVEX struct {
	// status from the statement.
	// +required
	Status VEXStatus `json:"status"`
	// justification from the statement.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Justification string `json:"justification,omitempty"`
	// statement names the VEXStatement.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Statement string `json:"statement,omitempty"`
	// conflict says that other statements disagreed; the resolution rule is in
	// the message.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Conflict string `json:"conflict,omitempty"`
}

// ScanReport holds the vulnerabilities found in one image digest, matched
// against an offline advisory snapshot, with VEX applied.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=scan,categories=stella
// +kubebuilder:printcolumn:name="Image",type=string,priority=1,JSONPath=`.spec.image`
// +kubebuilder:printcolumn:name="Max",type=string,JSONPath=`.status.maxSeverity`
// +kubebuilder:printcolumn:name="Critical",type=integer,JSONPath=`.status.summary.critical`
// +kubebuilder:printcolumn:name="High",type=integer,JSONPath=`.status.summary.high`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ScanReport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the image.
	// +required
	Spec ScanReportSpec `json:"spec"`

	// status holds the findings.
	// +optional
	Status ScanReportStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ScanReportList is a list of ScanReports.
type ScanReportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ScanReport `json:"items"`
}

// ScanReportName names the ScanReport Stella's scanner keeps for an image
// digest (sha256:<hex> becomes sha256-<hex>): one report per digest and
// namespace, whichever releases pin it.
func ScanReportName(digest string) string {
	return strings.Replace(digest, ":", "-", 1)
}

func init() {
	register(&ScanReport{}, &ScanReportList{})
}
