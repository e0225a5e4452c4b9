package gates

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func apiEnv(current string, ready metav1.ConditionStatus, drifted, unknown int32) v1alpha1.Environment {
	return v1alpha1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: "api-prod"},
		Status: v1alpha1.EnvironmentStatus{
			CurrentRelease: current,
			Conditions:     []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: ready, Reason: "Test", Message: "targets are reporting"}},
			Targets:        v1alpha1.TargetCounts{Total: 3, Healthy: 3 - drifted - unknown, Drifted: drifted, Unknown: unknown},
		},
	}
}

func rel(name string, components ...string) v1alpha1.Release {
	r := v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for i := 0; i+1 < len(components); i += 2 {
		r.Spec.Components = append(r.Spec.Components, v1alpha1.ReleaseComponent{Name: components[i], Image: v1alpha1.ImageDigestRef(components[i+1])})
	}
	return r
}

func TestDependency(t *testing.T) {
	apiImg := "reg.example/shop/api@" + apiDigest
	otherImg := "reg.example/shop/api@" + workerDigest
	ours := rel("shop-2.3.1", "api", apiImg, "web", "reg.example/shop/web@"+workerDigest)
	hotfix := rel("shop-2.3.1-hotfix", "api", "mirror.example/api@"+apiDigest) // same api digest
	older := rel("shop-2.3.0", "api", otherImg)
	same := v1alpha1.DependencyGate{Environment: "api-prod"}
	apiOnly := v1alpha1.DependencyGate{Environment: "api-prod", Component: "api"}
	const True, False = metav1.ConditionTrue, metav1.ConditionFalse

	tests := []struct {
		name string
		gate v1alpha1.DependencyGate
		env  v1alpha1.Environment
		want want
	}{
		{"healthy on the release being promoted", same, apiEnv("shop-2.3.1", True, 0, 0), want{result: v1alpha1.GatePass}},
		{"runs another release", same, apiEnv("shop-2.3.0", True, 0, 0), want{result: v1alpha1.GatePending, codes: codes(ReasonDependencyNotDeployed)}},
		{"not ready", same, apiEnv("shop-2.3.1", False, 0, 0), want{result: v1alpha1.GatePending, codes: codes(ReasonDependencyNotHealthy)}},
		{"drifted and unknown targets", same, apiEnv("shop-2.3.1", True, 1, 1),
			want{result: v1alpha1.GatePending, codes: codes(ReasonDependencyDrifted, ReasonDependencyTargetsUnknown)}},
		{"everything wrong at once", same, apiEnv("", False, 2, 1),
			want{result: v1alpha1.GatePending, codes: codes(ReasonDependencyDrifted, ReasonDependencyNotDeployed, ReasonDependencyNotHealthy, ReasonDependencyTargetsUnknown)}},
		{"a named release", v1alpha1.DependencyGate{Environment: "api-prod", Release: "shop-2.3.0"}, apiEnv("shop-2.3.0", True, 0, 0), want{result: v1alpha1.GatePass}},
		{"component: another release with the same digest", apiOnly, apiEnv("shop-2.3.1-hotfix", True, 0, 0), want{result: v1alpha1.GatePass}},
		{"component: a different digest", apiOnly, apiEnv("shop-2.3.0", True, 0, 0), want{result: v1alpha1.GatePending, codes: codes(ReasonDependencyNotDeployed)}},
		{"component: the running release is not among the inputs", apiOnly, apiEnv("shop-1.0.0", True, 0, 0), want{result: v1alpha1.GatePending, codes: codes(ReasonDependencyNotDeployed)}},
		{"component the release does not have", v1alpha1.DependencyGate{Environment: "api-prod", Component: "db"}, apiEnv("shop-2.3.1", True, 0, 0),
			want{result: v1alpha1.GateFail, codes: codes(ReasonDependencyComponentNotFound)}},
		{"named release that is unknown, with a component", v1alpha1.DependencyGate{Environment: "api-prod", Component: "api", Release: "shop-9"}, apiEnv("shop-2.3.1", True, 0, 0),
			want{result: v1alpha1.GateFail, codes: codes(ReasonDependencyReleaseNotFound)}},
		{"unknown environment", v1alpha1.DependencyGate{Environment: "db-prod"}, apiEnv("shop-2.3.1", True, 0, 0),
			want{result: v1alpha1.GateFail, codes: codes(ReasonDependencyEnvironmentNotFound)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Dependency: &tt.gate}}
			in := Inputs{
				Now:          ts("2024-06-03T10:00:00Z"),
				Release:      &ours,
				Releases:     []v1alpha1.Release{older, hotfix},
				Environments: []v1alpha1.Environment{tt.env},
			}
			check(t, Evaluate(gate, in), tt.want)
		})
	}
}

func TestDependencyWithoutReadyCondition(t *testing.T) {
	env := apiEnv("shop-2.3.1", metav1.ConditionTrue, 0, 0)
	env.Status.Conditions = nil
	gate := &v1alpha1.Gate{Spec: v1alpha1.GateSpec{Dependency: &v1alpha1.DependencyGate{Environment: "api-prod"}}}
	ours := rel("shop-2.3.1")
	got := Evaluate(gate, Inputs{Now: ts("2024-06-03T10:00:00Z"), Release: &ours, Environments: []v1alpha1.Environment{env}})
	check(t, got, want{result: v1alpha1.GatePending, codes: codes(ReasonDependencyNotHealthy)})
}
