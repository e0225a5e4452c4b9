package e2e

import (
	"crypto/sha256"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// digest is the sha256 digest of seed, a stand-in for an image digest.
func digest(seed string) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(seed)))
}

func release(ns, name, version string) *v1alpha1.Release {
	return &v1alpha1.Release{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ReleaseSpec{
			Version: version,
			Components: []v1alpha1.ReleaseComponent{
				{Name: "api", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@" + digest(name+"api"))},
				{Name: "worker", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/worker@" + digest(name+"worker")), Role: v1alpha1.ComponentRoleSidecar},
			},
		},
	}
}

// environment selects no targets: the stories that use it are about gates
// and the order of promotions, and allowEmpty lets a promotion there
// succeed without deploying anything.
func environment(ns, name string, promotesFrom ...string) *v1alpha1.Environment {
	return &v1alpha1.Environment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.EnvironmentSpec{Order: 10, PromotesFrom: promotesFrom, AllowEmpty: true},
	}
}

func approvalGate(ns, name string) *v1alpha1.Gate {
	return &v1alpha1.Gate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{Count: 2}},
	}
}

func promotion(ns, name, rel, env string) *v1alpha1.Promotion {
	return &v1alpha1.Promotion{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.PromotionSpec{Release: rel, Environment: env, Reason: "e2e"},
	}
}

// generated has the server pick obj's name.
func generated[T client.Object](obj T) T {
	obj.SetName("")
	obj.SetGenerateName("e2e-")
	return obj
}
