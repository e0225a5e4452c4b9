package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// EvidenceType is what an evidence packet records.
// +kubebuilder:validation:Enum=release_decision;deployment;rollback
type EvidenceType string

const (
	EvidenceReleaseDecision EvidenceType = "release_decision"
	EvidenceDeployment      EvidenceType = "deployment"
	EvidenceRollback        EvidenceType = "rollback"
)

// EvidencePhase is where a packet is in sealing.
// +kubebuilder:validation:Enum=Pending;Sealed;Failed
type EvidencePhase string

const (
	EvidencePending EvidencePhase = "Pending"
	EvidenceSealed  EvidencePhase = "Sealed"
	EvidenceFailed  EvidencePhase = "Failed"
)

// IsTerminal reports whether a packet in this phase is finished for good.
func (p EvidencePhase) IsTerminal() bool {
	return p == EvidenceSealed || p == EvidenceFailed
}

// EvidencePacketSpec says what is sealed. Immutable.
type EvidencePacketSpec struct {
	// type of record: release_decision, deployment or rollback.
	// +required
	Type EvidenceType `json:"type"`

	// promotion the record is about.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Promotion string `json:"promotion"`

	// promotionUID is the metadata.uid of the Promotion the record is about.
	// A Promotion deleted and created again under the same name is another
	// promotion with its own records; this tells them apart. Packets sealed
	// before it existed have none.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	PromotionUID types.UID `json:"promotionUID,omitempty"`

	// deployTask the record is about, for deployment and rollback records.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	DeployTask string `json:"deployTask,omitempty"`

	// subjects are the image digests the record is about.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Subjects []ComponentDigest `json:"subjects"`

	// contentDigest is the sha256 of the canonical JSON content sealed.
	// +required
	ContentDigest Digest `json:"contentDigest"`
}

// EvidencePacketStatus is the sealing result.
type EvidencePacketStatus struct {
	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (sealed and verified), Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// phase of sealing.
	// +optional
	Phase EvidencePhase `json:"phase,omitempty"`

	// keyID identifies the key that signed the envelope.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	KeyID string `json:"keyID,omitempty"`

	// logIndex is the entry's index in the transparency log, as a decimal
	// string (indexes may exceed 2^53).
	// +optional
	// +kubebuilder:validation:MaxLength=20
	// +kubebuilder:validation:Pattern=`^[0-9]+$`
	LogIndex string `json:"logIndex,omitempty"`

	// inclusionProof are the hex hashes proving the entry is in the log at
	// checkpoint.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	InclusionProof []string `json:"inclusionProof,omitempty"`

	// checkpoint is the signed log checkpoint the proof is against.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Checkpoint string `json:"checkpoint,omitempty"`

	// envelopeDigest is the sha256 of the DSSE envelope in the evidence
	// store, served at /evidence/v1/blobs/sha256/<hex>.
	// +optional
	EnvelopeDigest Digest `json:"envelopeDigest,omitempty"`
	// storageURI says where the envelope and its blobs are stored.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	StorageURI string `json:"storageURI,omitempty"`

	// verified says whether the stored packet verified after sealing.
	// +optional
	Verified bool `json:"verified,omitempty"`

	// sealedAt is when the packet was sealed.
	// +optional
	SealedAt *metav1.Time `json:"sealedAt,omitempty"`
}

// EvidencePacket seals a decision, deployment or rollback record: canonical
// content in a signed DSSE envelope, appended to the transparency log and
// stored by content digest.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=evp,categories=stella
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Promotion",type=string,JSONPath=`.spec.promotion`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="LogIndex",type=string,JSONPath=`.status.logIndex`
// +kubebuilder:printcolumn:name="Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type EvidencePacket struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says what is sealed. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable"
	Spec EvidencePacketSpec `json:"spec"`

	// status is the sealing result.
	// +optional
	Status EvidencePacketStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// EvidencePacketList is a list of EvidencePackets.
type EvidencePacketList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EvidencePacket `json:"items"`
}

func init() {
	register(&EvidencePacket{}, &EvidencePacketList{})
}
