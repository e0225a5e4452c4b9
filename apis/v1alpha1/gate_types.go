package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Severity of a vulnerability finding, in increasing order.
// +kubebuilder:validation:Enum=None;Unknown;Low;Medium;High;Critical
type Severity string

const (
	SeverityNone     Severity = "None"
	SeverityUnknown  Severity = "Unknown"
	SeverityLow      Severity = "Low"
	SeverityMedium   Severity = "Medium"
	SeverityHigh     Severity = "High"
	SeverityCritical Severity = "Critical"
)

// Severities lists the severities in increasing order.
var Severities = []Severity{SeverityNone, SeverityUnknown, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}

// Rank orders severities, None lowest. A severity that is not one of
// Severities ranks as Critical, so that what cannot be judged fails closed.
func (s Severity) Rank() int {
	for i, known := range Severities {
		if s == known {
			return i
		}
	}
	return len(Severities) - 1
}

// GateSpec holds exactly one gate type.
// +kubebuilder:validation:XValidation:rule="[has(self.approval), has(self.freezeWindow), has(self.soak), has(self.securityVerdict), has(self.policy), has(self.schedule), has(self.dependency)].filter(x, x).size() == 1",message="set exactly one gate type: approval, freezeWindow, soak, securityVerdict, policy, schedule or dependency"
type GateSpec struct {
	// approval requires approvals by people before a promotion proceeds.
	// +optional
	Approval *ApprovalGate `json:"approval,omitempty"`

	// freezeWindow blocks promotions during the listed periods.
	// +optional
	FreezeWindow *FreezeWindowGate `json:"freezeWindow,omitempty"`

	// soak requires the release to have run successfully upstream for a time.
	// +optional
	Soak *SoakGate `json:"soak,omitempty"`

	// securityVerdict sets thresholds over the ScanReports of the release's images.
	// +optional
	SecurityVerdict *SecurityVerdictGate `json:"securityVerdict,omitempty"`

	// policy evaluates a CUE program over the promotion's frozen inputs.
	// +optional
	Policy *PolicyGate `json:"policy,omitempty"`

	// schedule allows deployments only inside the listed windows.
	// +optional
	Schedule *ScheduleGate `json:"schedule,omitempty"`

	// dependency requires another environment to be healthy on a release.
	// +optional
	Dependency *DependencyGate `json:"dependency,omitempty"`
}

// ApprovalGate requires N approvals from allowed people.
type ApprovalGate struct {
	// count of distinct approvals required. Defaults to 1.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=20
	Count int32 `json:"count,omitempty"`

	// users allowed to approve. Empty users and groups allows anyone with the
	// approver role.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Users []string `json:"users,omitempty"`

	// groups whose members may approve.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Groups []string `json:"groups,omitempty"`

	// separationOfDuties forbids the requester of a promotion from approving
	// it. Defaults to true.
	// +optional
	// +kubebuilder:default=true
	SeparationOfDuties *bool `json:"separationOfDuties,omitempty"`
}

// FreezeWindowGate blocks promotions during absolute or recurring periods.
// +kubebuilder:validation:XValidation:rule="(has(self.windows) && size(self.windows) > 0) || (has(self.recurring) && size(self.recurring) > 0)",message="set at least one of windows and recurring"
type FreezeWindowGate struct {
	// timeZone is the IANA time zone recurring windows are computed in, such as
	// Europe/Berlin. Defaults to UTC.
	// +optional
	// +kubebuilder:default=UTC
	// +kubebuilder:validation:MaxLength=64
	TimeZone string `json:"timeZone,omitempty"`

	// windows are absolute frozen periods.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Windows []TimeWindow `json:"windows,omitempty"`

	// recurring are frozen periods that repeat by an RFC 5545 RRULE.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Recurring []RecurringWindow `json:"recurring,omitempty"`
}

// TimeWindow is an absolute period [start, end).
// +kubebuilder:validation:XValidation:rule="self.end > self.start",message="end must be after start"
type TimeWindow struct {
	// start of the period.
	// +required
	Start metav1.Time `json:"start"`
	// end of the period, exclusive.
	// +required
	End metav1.Time `json:"end"`
	// reason shown while the window applies.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Reason string `json:"reason,omitempty"`
}

// RecurringWindow is a period that starts at each occurrence of an RRULE.
type RecurringWindow struct {
	// rrule is an RFC 5545 recurrence rule, with an optional DTSTART line, such
	// as "FREQ=WEEKLY;BYDAY=FR;BYHOUR=16;BYMINUTE=0".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	RRule string `json:"rrule"`
	// duration of each occurrence, such as 64h.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Duration metav1.Duration `json:"duration"`
	// reason shown while the window applies.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Reason string `json:"reason,omitempty"`
}

// SoakGate requires time upstream.
type SoakGate struct {
	// environment where the release must have run successfully.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Environment string `json:"environment"`
	// duration it must have run there, such as 24h.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Duration metav1.Duration `json:"duration"`
}

// SecurityVerdictGate sets thresholds over scan findings.
type SecurityVerdictGate struct {
	// maxSeverity is the highest severity allowed among findings after VEX.
	// Defaults to High (Critical findings deny).
	// +optional
	// +kubebuilder:default=High
	MaxSeverity Severity `json:"maxSeverity,omitempty"`
	// fixableOnly counts only findings that have a fixed version.
	// +optional
	FixableOnly bool `json:"fixableOnly,omitempty"`
	// applyVEX suppresses findings that VEX statements mark not_affected or
	// fixed. Defaults to true.
	// +optional
	// +kubebuilder:default=true
	ApplyVEX *bool `json:"applyVEX,omitempty"`
	// maxReportAge: an older ScanReport counts as missing. Defaults to 24h.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	MaxReportAge metav1.Duration `json:"maxReportAge,omitempty"`
	// timeout: a report still missing after this long denies. Defaults to 30m.
	// +optional
	// +kubebuilder:default="30m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Timeout metav1.Duration `json:"timeout,omitempty"`
}

// PolicyGate evaluates a CUE program.
type PolicyGate struct {
	// source is the CUE program. It receives the promotion's frozen inputs as
	// `input` and must produce `allow: bool` and `reasons: [...string]`.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	Source string `json:"source"`
}

// ScheduleGate allows deployments only inside recurring windows.
type ScheduleGate struct {
	// timeZone is the IANA time zone the windows are computed in. Defaults to UTC.
	// +optional
	// +kubebuilder:default=UTC
	// +kubebuilder:validation:MaxLength=64
	TimeZone string `json:"timeZone,omitempty"`
	// allowed are the windows in which deployment may start.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Allowed []RecurringWindow `json:"allowed"`
}

// DependencyGate requires another environment to be healthy on a release.
type DependencyGate struct {
	// environment that must be healthy.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Environment string `json:"environment"`
	// component of that environment's release that must be deployed; empty
	// means the whole release.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Component string `json:"component,omitempty"`
	// release that must run there; empty means the release being promoted.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Release string `json:"release,omitempty"`
}

// GateStatus says whether the gate's configuration is usable.
type GateStatus struct {
	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the configuration is valid), Reconciling, and Stalled
	// (the configuration is invalid, such as a CUE program that does not
	// compile; the message holds the error).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// type is the gate type that is set, for display.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Type string `json:"type,omitempty"`

	// closed says whether a time-based gate blocks promotions now.
	// +optional
	Closed *bool `json:"closed,omitempty"`

	// nextOpenAt is when a closed time-based gate opens next.
	// +optional
	NextOpenAt *metav1.Time `json:"nextOpenAt,omitempty"`

	// policyDigest is the sha256 of the policy source that compiled.
	// +optional
	PolicyDigest Digest `json:"policyDigest,omitempty"`
}

// Gate is a check that a promotion must pass to enter an environment:
// approvals, a freeze window, a soak time, a security verdict, a CUE policy,
// a deploy schedule or a dependency on another environment.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=gt,categories=stella
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.status.type`
// +kubebuilder:printcolumn:name="Closed",type=boolean,JSONPath=`.status.closed`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Gate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec holds the gate's one type and its settings.
	// +required
	Spec GateSpec `json:"spec"`

	// status says whether the configuration is usable.
	// +optional
	Status GateStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// GateList is a list of Gates.
type GateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Gate `json:"items"`
}

func init() {
	register(&Gate{}, &GateList{})
}
