package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VEXStatementSpec holds an OpenVEX document.
type VEXStatementSpec struct {
	// document is an OpenVEX JSON document.
	// +required
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=262144
	Document string `json:"document"`

	// issuer overrides the document's author for the scanner's trust order.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Issuer string `json:"issuer,omitempty"`
}

// VEXStatementStatus says whether the document was accepted.
type VEXStatementStatus struct {
	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (accepted), Reconciling, Stalled (rejected; the message
	// says why).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// statements is how many statements the document holds.
	// +optional
	Statements int32 `json:"statements,omitempty"`

	// documentDigest is the sha256 of spec.document.
	// +optional
	DocumentDigest Digest `json:"documentDigest,omitempty"`
}

// VEXStatement holds an OpenVEX document whose statements suppress or
// confirm scan findings for the products they name.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vex,categories=stella
// +kubebuilder:printcolumn:name="Statements",type=integer,JSONPath=`.status.statements`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VEXStatement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec holds the document.
	// +required
	Spec VEXStatementSpec `json:"spec"`

	// status says whether it was accepted.
	// +optional
	Status VEXStatementStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// VEXStatementList is a list of VEXStatements.
type VEXStatementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VEXStatement `json:"items"`
}

func init() {
	register(&VEXStatement{}, &VEXStatementList{})
}
