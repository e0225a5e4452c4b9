package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every Stella kind.
	GroupVersion = schema.GroupVersion{Group: "stella-ops.org", Version: "v1alpha1"}

	// SchemeBuilder registers the Stella kinds with a runtime.Scheme. It is
	// apimachinery's, so that programs importing the types need nothing of
	// controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the Stella kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// knownTypes are the kinds and lists each kind's file registers.
var knownTypes []runtime.Object

// register records a kind and its list for AddToScheme.
func register(objs ...runtime.Object) {
	knownTypes = append(knownTypes, objs...)
}

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, knownTypes...)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
