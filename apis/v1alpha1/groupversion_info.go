package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every Stella kind.
	GroupVersion = schema.GroupVersion{Group: "stella-ops.org", Version: "v1alpha1"}

	// SchemeBuilder registers the Stella kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Stella kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
