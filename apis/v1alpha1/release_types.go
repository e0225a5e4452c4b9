package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ComponentRole says what part a component plays in a release.
// +kubebuilder:validation:Enum=primary;sidecar;init;migration
type ComponentRole string

const (
	// ComponentRolePrimary is a long-running service of the release.
	ComponentRolePrimary ComponentRole = "primary"
	// ComponentRoleSidecar runs beside a primary component.
	ComponentRoleSidecar ComponentRole = "sidecar"
	// ComponentRoleInit runs to completion before the primary components start.
	ComponentRoleInit ComponentRole = "init"
	// ComponentRoleMigration runs to completion once per deployment, before the
	// primary components are replaced.
	ComponentRoleMigration ComponentRole = "migration"
)

// ReleaseSpec is an immutable set of image digests that is promoted as one.
type ReleaseSpec struct {
	// version is the release's semantic version, such as 2.3.1 or 2.4.0-rc.1.
	// +required
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^v?(0|[1-9][0-9]*)[.](0|[1-9][0-9]*)[.](0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?$')",message="must be a semantic version such as 2.3.1 or 2.4.0-rc.1"
	Version string `json:"version"`

	// components are the images that make up the release, each pinned by
	// digest. Names are unique.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.exists(c, !has(c.role) || c.role == 'primary')",message="at least one component must have role primary (the default)"
	Components []ReleaseComponent `json:"components"`

	// source says where the release was built from; informational.
	// +optional
	Source *ReleaseSource `json:"source,omitempty"`
}

// ReleaseComponent is one image of a release.
type ReleaseComponent struct {
	// name of the component, unique within the release; targets use it to find
	// the component's deploy template. A DNS label.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// image is the component's image pinned by digest:
	// repository@sha256:<64 lowercase hex>.
	// +required
	Image ImageDigestRef `json:"image"`

	// role of the component in the release. Defaults to primary.
	// +optional
	// +kubebuilder:default=primary
	Role ComponentRole `json:"role,omitempty"`
}

// ReleaseSource records the build a release came from.
type ReleaseSource struct {
	// repository is the source repository URL.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Repository string `json:"repository,omitempty"`
	// commit is the revision the images were built from.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Commit string `json:"commit,omitempty"`
	// buildURL links to the CI run that built the images.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	BuildURL string `json:"buildURL,omitempty"`
}

// ReleaseStatus is what Stella observed about a release.
type ReleaseStatus struct {
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

	// components holds the scan verdict of each component's image.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Components []ReleaseComponentStatus `json:"components,omitempty"`

	// deployments lists the environments where this release currently runs.
	// +optional
	// +listType=map
	// +listMapKey=environment
	// +kubebuilder:validation:MaxItems=64
	Deployments []ReleaseDeployment `json:"deployments,omitempty"`

	// creationRevision is the release's metadata.resourceVersion as the
	// reconciler first read it: the storage revision of its creation, or of
	// a change made before the reconciler saw it. Auto-promotion takes the
	// newest release in the order of this value, compared as integers the
	// way Kubernetes defines resource versions of one resource; unlike
	// creationTimestamp it has no whole-second ties. Releases created before
	// the field existed count as older, by creationTimestamp and then by
	// name. Set once by the reconciler; it never changes.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="creationRevision is set once and never changes: it orders the releases by creation"
	CreationRevision string `json:"creationRevision,omitempty"`
}

// ReleaseComponentStatus is the observed state of one component's image.
type ReleaseComponentStatus struct {
	// name of the component.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// scanReport names the ScanReport of the component's image, once scanned.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ScanReport string `json:"scanReport,omitempty"`
	// maxSeverity is the highest severity among the image's findings after VEX.
	// +optional
	MaxSeverity Severity `json:"maxSeverity,omitempty"`
}

// ReleaseDeployment says that a release runs in an environment.
type ReleaseDeployment struct {
	// environment where the release runs.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Environment string `json:"environment"`
	// promotion that deployed it.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Promotion string `json:"promotion,omitempty"`
	// since is when the deployment succeeded.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// Release is an immutable, digest-pinned set of component images with a
// semantic version: the unit that is promoted from one environment to the
// next.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rel,categories=stella
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Release struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the release's version and images. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: create a new Release instead"
	Spec ReleaseSpec `json:"spec"`

	// status is what Stella observed about the release.
	// +optional
	Status ReleaseStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ReleaseList is a list of Releases.
type ReleaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Release `json:"items"`
}

func init() {
	register(&Release{}, &ReleaseList{})
}
