package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PromotionPhase is where a promotion is in its life.
// +kubebuilder:validation:Enum=Pending;Evaluating;AwaitingApproval;Approved;Deploying;Verifying;Succeeded;Rejected;Failed;RolledBack;Cancelled
type PromotionPhase string

const (
	PromotionPending          PromotionPhase = "Pending"
	PromotionEvaluating       PromotionPhase = "Evaluating"
	PromotionAwaitingApproval PromotionPhase = "AwaitingApproval"
	PromotionApproved         PromotionPhase = "Approved"
	PromotionDeploying        PromotionPhase = "Deploying"
	PromotionVerifying        PromotionPhase = "Verifying"
	PromotionSucceeded        PromotionPhase = "Succeeded"
	PromotionRejected         PromotionPhase = "Rejected"
	PromotionFailed           PromotionPhase = "Failed"
	PromotionRolledBack       PromotionPhase = "RolledBack"
	PromotionCancelled        PromotionPhase = "Cancelled"
)

// IsTerminal reports whether a promotion in this phase is finished for good.
func (p PromotionPhase) IsTerminal() bool {
	switch p {
	case PromotionSucceeded, PromotionRejected, PromotionFailed, PromotionRolledBack, PromotionCancelled:
		return true
	}
	return false
}

// GateResult is the outcome of one gate evaluation.
// +kubebuilder:validation:Enum=Pass;Fail;Pending
type GateResult string

const (
	GatePass    GateResult = "Pass"
	GateFail    GateResult = "Fail"
	GatePending GateResult = "Pending"
)

// DecisionResult is the overall outcome of a promotion's gates.
// +kubebuilder:validation:Enum=allow;deny;pending
type DecisionResult string

const (
	DecisionAllow   DecisionResult = "allow"
	DecisionDeny    DecisionResult = "deny"
	DecisionPending DecisionResult = "pending"
)

// PromotionSpec asks for a release to enter an environment. Immutable.
type PromotionSpec struct {
	// release to promote.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Release string `json:"release"`

	// environment to promote into.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Environment string `json:"environment"`

	// reason for the promotion, kept in its evidence.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`

	// rollback marks a promotion that returns the environment to a release
	// that succeeded there before: the environment's promotesFrom does not
	// apply, and gates of the types in its rollbackSkipGateTypes are skipped.
	// +optional
	Rollback bool `json:"rollback,omitempty"`

	// requestedBy is the authenticated user who created the promotion. The
	// server sets it from the request's credentials; a value sent by the
	// client is overwritten.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RequestedBy string `json:"requestedBy,omitempty"`
}

// MaxRolloutTargets is how many targets one promotion rolls out to, the
// bound of status.targets (its MaxItems marker must say the same). A
// promotion into an environment that selects more stalls with
// ReasonTooManyTargets until the selection is narrowed.
const MaxRolloutTargets = 256

// PromotionStatus is the promotion's progress and decision.
type PromotionStatus struct {
	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the promotion succeeded), Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// phase of the promotion.
	// +optional
	Phase PromotionPhase `json:"phase,omitempty"`

	// gates holds the result of each gate of the environment.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Gates []GateEvaluation `json:"gates,omitempty"`

	// decision is the combined outcome of the gates.
	// +optional
	Decision *Decision `json:"decision,omitempty"`

	// targets holds the deployment progress per target, at most 256: a
	// promotion into an environment that selects more stalls with reason
	// TooManyTargets.
	// +optional
	// +listType=map
	// +listMapKey=target
	// +kubebuilder:validation:MaxItems=256
	Targets []TargetProgress `json:"targets,omitempty"`

	// evidencePacket names the EvidencePacket that seals the decision.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	EvidencePacket string `json:"evidencePacket,omitempty"`

	// startedAt is when evaluation began.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// finishedAt is when the promotion reached a terminal phase.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`

	// creationRevision is the promotion's metadata.resourceVersion as the
	// reconciler first read it: the storage revision of its creation, or of
	// a change made before the reconciler saw it. Promotions into one
	// environment run one at a time in the order of this value, compared as
	// integers the way Kubernetes defines resource versions of one resource;
	// unlike creationTimestamp it has no whole-second ties, and it does not
	// depend on any server's clock. Promotions created before the field
	// existed go first, by creationTimestamp and then by name. Set once by
	// the reconciler; it never changes.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="creationRevision is set once and never changes: it is the promotion's place in its environment's queue"
	CreationRevision string `json:"creationRevision,omitempty"`
}

// GateEvaluation is one gate's result.
type GateEvaluation struct {
	// name of the Gate.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// type of the gate.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Type string `json:"type,omitempty"`
	// result: Pass, Fail or Pending.
	// +required
	Result GateResult `json:"result"`
	// reasonCodes are stable, sortable codes such as approval.insufficient.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=128
	ReasonCodes []string `json:"reasonCodes,omitempty"`
	// message explains the result to a person.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// retryAt is when a pending gate should be evaluated again.
	// +optional
	RetryAt *metav1.Time `json:"retryAt,omitempty"`
}

// Decision is the outcome of all gates, sealed into evidence.
type Decision struct {
	// result: allow, deny or pending.
	// +required
	Result DecisionResult `json:"result"`
	// reasonCodes of the gates that did not pass, sorted.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	ReasonCodes []string `json:"reasonCodes,omitempty"`
	// policyDigest is the digest of the policy sources evaluated.
	// +optional
	PolicyDigest Digest `json:"policyDigest,omitempty"`
	// inputsDigest is the sha256 of the RFC 8785 canonical JSON of the frozen
	// inputs alone.
	// +optional
	InputsDigest Digest `json:"inputsDigest,omitempty"`
	// determinismHash is the sha256 of the RFC 8785 canonical JSON of the
	// frozen inputs and the outputs; a replay must reproduce it.
	// +optional
	DeterminismHash Digest `json:"determinismHash,omitempty"`
	// decidedAt is the frozen clock of the evaluation.
	// +optional
	DecidedAt *metav1.Time `json:"decidedAt,omitempty"`
	// statementDigest is the sha256 of the decision's in-toto statement
	// (RFC 8785 canonical JSON) in the evidence store: the content of the
	// EvidencePacket that seals it. Empty when the server keeps no evidence.
	// +optional
	StatementDigest Digest `json:"statementDigest,omitempty"`
}

// TargetProgress is the deployment of a promotion to one target.
type TargetProgress struct {
	// target name.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Target string `json:"target"`
	// deployTask that deploys to it.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	DeployTask string `json:"deployTask,omitempty"`
	// batch is the rollout step the target belongs to, from 0.
	// +optional
	Batch int32 `json:"batch,omitempty"`
	// phase of the DeployTask.
	// +optional
	Phase DeployTaskPhase `json:"phase,omitempty"`
	// message from the DeployTask.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// Promotion asks for a release to be promoted into an environment: its gates
// are evaluated on frozen inputs, the decision is recorded with reason codes,
// and on allow the release is deployed target by target. Only the promotion
// reconciler writes its status (a cancel is asked for by annotation), and a
// terminal phase never changes.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=promo,categories=stella
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.phase) || !(oldSelf.status.phase in ['Succeeded', 'Rejected', 'Failed', 'RolledBack', 'Cancelled']) || (has(self.status) && has(self.status.phase) && self.status.phase == oldSelf.status.phase)",fieldPath=".status.phase",reason=FieldValueForbidden,message="the promotion ended (Succeeded, Rejected, Failed, RolledBack or Cancelled) and its outcome stands; promote the release again with a new Promotion"
// +kubebuilder:printcolumn:name="Release",type=string,JSONPath=`.spec.release`
// +kubebuilder:printcolumn:name="Environment",type=string,JSONPath=`.spec.environment`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Decision",type=string,JSONPath=`.status.decision.result`
// +kubebuilder:printcolumn:name="Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Promotion struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the release and the environment. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: create a new Promotion instead"
	Spec PromotionSpec `json:"spec"`

	// status is the promotion's progress and decision.
	// +optional
	Status PromotionStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// PromotionList is a list of Promotions.
type PromotionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Promotion `json:"items"`
}

func init() {
	register(&Promotion{}, &PromotionList{})
}
