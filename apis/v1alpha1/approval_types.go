package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ApprovalDecision is an approver's verdict.
// +kubebuilder:validation:Enum=approve;reject
type ApprovalDecision string

const (
	ApprovalApprove ApprovalDecision = "approve"
	ApprovalReject  ApprovalDecision = "reject"
)

// ApprovalSpec is one person's verdict on a promotion. Immutable.
//
// An approval is bound to the very promotion it approves: promotionUID,
// release and components record, at creation, the Promotion as stored and
// the images its release pins. An approval gate counts it only for a
// promotion with that UID whose release still pins those images, so a
// promotion deleted and created again under the same name, or a release
// replaced under the same name, is not approved by it.
// +kubebuilder:validation:XValidation:rule="has(self.promotionUID) == has(self.release) && has(self.release) == has(self.components)",message="spec.promotionUID, spec.release and spec.components bind the approval together: set all three (stellactl approve does) or none (the Stella server fills them)"
type ApprovalSpec struct {
	// promotion being approved or rejected.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Promotion string `json:"promotion"`

	// decision: approve or reject.
	// +required
	Decision ApprovalDecision `json:"decision"`

	// comment explaining the decision, kept in the promotion's evidence.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Comment string `json:"comment,omitempty"`

	// approver is the authenticated user who created the approval. The server
	// sets it from the request's credentials; a value sent by the client is
	// overwritten.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Approver string `json:"approver,omitempty"`

	// approverGroups are the approver's groups at the time of approval, set by
	// the server like approver.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	ApproverGroups []string `json:"approverGroups,omitempty"`

	// promotionUID is the metadata.uid of the Promotion approved, as stored
	// when the approval was created. The Stella server fills it from the
	// stored Promotion and refuses an Approval of a Promotion that does not
	// exist or a value that differs; on another Kubernetes cluster the
	// client sets it (stellactl approve does) and the admission policies
	// require it.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	PromotionUID types.UID `json:"promotionUID,omitempty"`

	// release is the spec.release of the Promotion approved, set like
	// promotionUID.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Release string `json:"release,omitempty"`

	// components are the images of that release, each pinned by digest, as
	// the Release held them when the approval was created; set like
	// promotionUID.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Components []ComponentDigest `json:"components,omitempty"`
}

// ApprovalStatus says whether the approval counted.
type ApprovalStatus struct {
	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// counted says whether an approval gate counted this approval.
	// +optional
	Counted *bool `json:"counted,omitempty"`

	// reason says why the approval was ignored, such as
	// approval.requester-cannot-approve.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Reason string `json:"reason,omitempty"`
}

// Approval is one person's approve or reject of a promotion that waits on an
// approval gate. The approver comes from the authenticated identity.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=appr,categories=stella
// +kubebuilder:selectablefield:JSONPath=`.spec.promotion`
// +kubebuilder:printcolumn:name="Promotion",type=string,JSONPath=`.spec.promotion`
// +kubebuilder:printcolumn:name="Decision",type=string,JSONPath=`.spec.decision`
// +kubebuilder:printcolumn:name="Approver",type=string,JSONPath=`.spec.approver`
// +kubebuilder:printcolumn:name="Counted",type=boolean,JSONPath=`.status.counted`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Approval struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the verdict. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: create a new Approval instead"
	Spec ApprovalSpec `json:"spec"`

	// status says whether the approval counted.
	// +optional
	Status ApprovalStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ApprovalList is a list of Approvals.
type ApprovalList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Approval `json:"items"`
}

func init() {
	register(&Approval{}, &ApprovalList{})
}
