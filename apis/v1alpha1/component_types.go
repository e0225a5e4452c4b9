package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ComponentSpec says which image repository to watch for new builds.
// +kubebuilder:validation:XValidation:rule="!(has(self.tagPattern) && has(self.semver))",message="set at most one of tagPattern and semver"
type ComponentSpec struct {
	// repository is the image repository to watch, without tag or digest,
	// such as registry.example.com/shop/api.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="!self.contains('@') && !self.matches(':[^/]*$')",message="must be a repository without tag or digest, such as registry.example.com/shop/api"
	Repository string `json:"repository"`

	// tagPattern is an RE2 regular expression; only matching tags are
	// considered. Mutually exclusive with semver.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	TagPattern string `json:"tagPattern,omitempty"`

	// semver is a semantic version constraint such as ">=2.0.0 <3.0.0"; the
	// highest matching tag is taken. Mutually exclusive with tagPattern.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Semver string `json:"semver,omitempty"`

	// interval between two looks at the registry. Defaults to 5m.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Interval metav1.Duration `json:"interval,omitempty"`

	// suspend stops watching the repository while true.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// ComponentStatus is what the last look at the registry found.
type ComponentStatus struct {
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

	// lastSeenTag is the newest tag that matched.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	LastSeenTag string `json:"lastSeenTag,omitempty"`

	// lastSeenDigest is the digest that tag resolved to.
	// +optional
	LastSeenDigest Digest `json:"lastSeenDigest,omitempty"`

	// lastCheckedAt is when the registry was last read.
	// +optional
	LastCheckedAt *metav1.Time `json:"lastCheckedAt,omitempty"`

	// lastRelease names the Release created for the last seen digest.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	LastRelease string `json:"lastRelease,omitempty"`
}

// Component watches an image repository and creates a Release for each new
// digest that matches its tag pattern or semver constraint.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=comp,categories=stella
// +kubebuilder:printcolumn:name="Repository",type=string,JSONPath=`.spec.repository`
// +kubebuilder:printcolumn:name="Tag",type=string,JSONPath=`.status.lastSeenTag`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Component struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which repository to watch.
	// +required
	Spec ComponentSpec `json:"spec"`

	// status is what the last look at the registry found.
	// +optional
	Status ComponentStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ComponentList is a list of Components.
type ComponentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Component `json:"items"`
}

func init() {
	register(&Component{}, &ComponentList{})
}
