// Package scheme is the runtime.Scheme every Stella client and manager
// uses: the built-in Kubernetes kinds and Stella's. It lives outside apis,
// which depends on apimachinery alone, so that the API types stay
// importable without client-go.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// New returns a scheme that knows the built-in kinds and Stella's.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}
