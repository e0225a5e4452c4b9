package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// StrategyType names how a promotion rolls out across an environment's
// targets.
// +kubebuilder:validation:Enum=AllAtOnce;Rolling;Canary
type StrategyType string

const (
	// StrategyAllAtOnce deploys to every target in one batch.
	StrategyAllAtOnce StrategyType = "AllAtOnce"
	// StrategyRolling deploys in batches of at most maxUnavailable targets.
	StrategyRolling StrategyType = "Rolling"
	// StrategyCanary deploys to growing shares of the targets, step by step.
	StrategyCanary StrategyType = "Canary"
)

// EnvironmentSpec declares a stage of the release pipeline.
type EnvironmentSpec struct {
	// order places the environment in the pipeline for display; lower comes
	// first (dev 10, stage 20, prod 30).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	Order int32 `json:"order,omitempty"`

	// promotesFrom names the upstream environments: a release can be promoted
	// here only after it succeeded in one of them. Empty means releases may
	// enter here directly.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	PromotesFrom []string `json:"promotesFrom,omitempty"`

	// gates name the Gates that every promotion into this environment must
	// pass. All must pass; any failing gate rejects the promotion.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Gates []LocalObjectReference `json:"gates,omitempty"`

	// targetSelector selects the Targets of this environment by label. An
	// empty selector selects no targets.
	// +optional
	TargetSelector *metav1.LabelSelector `json:"targetSelector,omitempty"`

	// allowEmpty lets a promotion into this environment succeed when the
	// environment selects no targets. Off by default: such a promotion waits
	// (Ready False, reason NoTargets) until a Target appears, and fails once
	// deployTimeout passed since its decision without one. Set it for an
	// environment that is empty on purpose.
	// +optional
	AllowEmpty bool `json:"allowEmpty,omitempty"`

	// strategy says how a promotion rolls out across the targets. Defaults to
	// AllAtOnce.
	// +optional
	Strategy *DeployStrategy `json:"strategy,omitempty"`

	// rollbackOnFailure: when a target of a rollout fails, the targets the
	// promotion already changed get rollback DeployTasks back to the release
	// they ran before, and the promotion ends RolledBack. Targets that ran
	// nothing before are left as they are.
	// +optional
	RollbackOnFailure bool `json:"rollbackOnFailure,omitempty"`

	// rollbackSkipGateTypes are the gate types that do not apply to rollbacks
	// (promotions with spec.rollback). Defaults to soak: going back to a
	// release that ran here must not wait for it to soak again upstream.
	// +optional
	// +listType=set
	// +kubebuilder:default={soak}
	// +kubebuilder:validation:MaxItems=7
	// +kubebuilder:validation:items:Enum=approval;freezeWindow;soak;securityVerdict;policy;schedule;dependency
	RollbackSkipGateTypes []string `json:"rollbackSkipGateTypes,omitempty"`

	// autoPromote promotes a release here as soon as it succeeded upstream.
	// One promotion is in flight per environment; a newer release supersedes
	// queued older ones.
	// +optional
	AutoPromote bool `json:"autoPromote,omitempty"`

	// requiredSoak is how long a release must have run successfully upstream
	// before it may be promoted here, such as 24h.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	RequiredSoak *metav1.Duration `json:"requiredSoak,omitempty"`

	// deployTimeout bounds how long one DeployTask may run before it fails.
	// Defaults to 15m.
	// +optional
	// +kubebuilder:default="15m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	DeployTimeout metav1.Duration `json:"deployTimeout,omitempty"`

	// historyLimit is how many past releases status.history keeps. Defaults
	// to 10.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	HistoryLimit int32 `json:"historyLimit,omitempty"`

	// promotionRetention says how long finished Promotions stay API objects.
	// Older ones are archived into the evidence store, with their sealed
	// evidence, and deleted from the API together with their DeployTasks,
	// Approvals and EvidencePackets; `stellactl history`, `describe
	// promotion`, `evidence export` and `replay promotion` read them from
	// the archive. Defaults to keep 20, minAge 336h (14 days).
	// +optional
	// +kubebuilder:default={}
	PromotionRetention *PromotionRetention `json:"promotionRetention,omitempty"`
}

// PromotionRetention bounds the finished Promotions an environment keeps in
// the API. A finished promotion is archived only when it is beyond the
// newest keep finished ones AND finished at least minAge ago.
type PromotionRetention struct {
	// keep is how many of the environment's newest finished promotions stay
	// in the API whatever their age. 0 archives every finished promotion
	// once it is minAge old. Defaults to 20.
	// +optional
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	Keep *int32 `json:"keep,omitempty"`

	// minAge is how long a promotion stays in the API after it finished,
	// whatever keep says, such as 336h. 0s archives as soon as keep allows
	// (for benchmarks). Defaults to 336h (14 days).
	// +optional
	// +kubebuilder:default="336h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	MinAge *metav1.Duration `json:"minAge,omitempty"`
}

// Defaults of spec.promotionRetention, for objects the API server did not
// default (written by clients that skip it, or read from fake clients).
const (
	DefaultRetentionKeep   int32 = 20
	DefaultRetentionMinAge       = 14 * 24 * time.Hour
)

// Retention is the environment's promotion retention with its defaults
// filled in: how many finished promotions stay, and for how long at least.
func (s *EnvironmentSpec) Retention() (keep int, minAge time.Duration) {
	keep, minAge = int(DefaultRetentionKeep), DefaultRetentionMinAge
	if r := s.PromotionRetention; r != nil {
		if r.Keep != nil {
			keep = int(*r.Keep)
		}
		if r.MinAge != nil {
			minAge = r.MinAge.Duration
		}
	}
	return max(keep, 0), max(minAge, 0)
}

// DeployStrategy says how a promotion rolls out across targets.
// +kubebuilder:validation:XValidation:rule="self.type == 'Rolling' || !has(self.rolling)",message="rolling is only allowed when type is Rolling"
// +kubebuilder:validation:XValidation:rule="self.type == 'Canary' ? has(self.canary) : !has(self.canary)",message="canary is required when type is Canary, and not allowed otherwise"
type DeployStrategy struct {
	// type of the rollout: AllAtOnce, Rolling or Canary.
	// +required
	Type StrategyType `json:"type"`

	// rolling settings, for type Rolling. Without them a rolling rollout
	// updates one target at a time.
	// +optional
	Rolling *RollingStrategy `json:"rolling,omitempty"`

	// canary settings, for type Canary.
	// +optional
	Canary *CanaryStrategy `json:"canary,omitempty"`
}

// RollingStrategy deploys in batches.
type RollingStrategy struct {
	// maxUnavailable is how many targets (a count, or a percentage such as
	// 25%) may be updating at once. Defaults to 1.
	// +optional
	// +kubebuilder:validation:XIntOrString
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
}

// CanaryStrategy deploys to a growing share of the targets.
type CanaryStrategy struct {
	// steps in order; the last step should reach 100 percent.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10
	Steps []CanaryStep `json:"steps"`
}

// CanaryStep is one stage of a canary rollout.
type CanaryStep struct {
	// percent of the environment's targets that run the new release once this
	// step is done.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent"`

	// pause is how long to watch the step's targets before the next step.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Pause *metav1.Duration `json:"pause,omitempty"`
}

// EnvironmentStatus is what runs in the environment.
type EnvironmentStatus struct {
	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Reconciling and Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// currentRelease names the release that last succeeded here.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	CurrentRelease string `json:"currentRelease,omitempty"`

	// currentPromotion names the promotion in flight, if any.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	CurrentPromotion string `json:"currentPromotion,omitempty"`

	// history lists past releases, newest first, at most spec.historyLimit.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	History []EnvironmentHistoryEntry `json:"history,omitempty"`

	// targets counts the environment's targets by observed state.
	// +optional
	Targets TargetCounts `json:"targets,omitempty"`
}

// EnvironmentHistoryEntry records one release that ran in an environment.
type EnvironmentHistoryEntry struct {
	// release that was deployed.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Release string `json:"release"`
	// version of that release.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version,omitempty"`
	// promotion that deployed it.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Promotion string `json:"promotion,omitempty"`
	// phase the promotion ended in.
	// +optional
	Phase PromotionPhase `json:"phase,omitempty"`
	// finishedAt is when the promotion ended.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// creationRevision is the promotion's status.creationRevision. History
	// lists the newest entry first in the order of this value, which is the
	// order the environment's promotions ran in; entries without it (written
	// before the field existed) come last, by finishedAt and then by
	// promotion name.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	CreationRevision string `json:"creationRevision,omitempty"`
}

// TargetCounts counts targets by their observed state.
type TargetCounts struct {
	// total number of selected targets.
	// +optional
	Total int32 `json:"total,omitempty"`
	// healthy targets run the current release and pass their health checks.
	// +optional
	Healthy int32 `json:"healthy,omitempty"`
	// drifted targets run something other than what was deployed.
	// +optional
	Drifted int32 `json:"drifted,omitempty"`
	// unknown targets have not been observed within their agent's grace period.
	// +optional
	Unknown int32 `json:"unknown,omitempty"`
}

// Environment is a stage of the release pipeline (dev, stage, prod): the
// targets it selects, the gates a promotion must pass to enter it, and the
// rollout strategy.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=env,categories=stella
// +kubebuilder:validation:XValidation:rule="!has(self.spec.promotesFrom) || !(self.metadata.name in self.spec.promotesFrom)",message="spec.promotesFrom: an environment cannot promote from itself"
// +kubebuilder:printcolumn:name="Order",type=integer,JSONPath=`.spec.order`
// +kubebuilder:printcolumn:name="Release",type=string,JSONPath=`.status.currentRelease`
// +kubebuilder:printcolumn:name="Targets",type=integer,JSONPath=`.status.targets.total`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Environment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the environment.
	// +required
	Spec EnvironmentSpec `json:"spec"`

	// status is what runs in the environment.
	// +optional
	Status EnvironmentStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// EnvironmentList is a list of Environments.
type EnvironmentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Environment `json:"items"`
}

func init() {
	register(&Environment{}, &EnvironmentList{})
}
