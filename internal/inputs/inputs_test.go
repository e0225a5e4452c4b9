package inputs

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func TestSucceededIn(t *testing.T) {
	stage := v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Name: "stage"}}
	if succeededIn("r1", stage) {
		t.Error("r1 never ran in stage")
	}
	stage.Status.History = []v1alpha1.EnvironmentHistoryEntry{{Release: "r1", Phase: v1alpha1.PromotionFailed}}
	if succeededIn("r1", stage) {
		t.Error("r1 failed in stage")
	}
	stage.Status.History = append(stage.Status.History, v1alpha1.EnvironmentHistoryEntry{Release: "r1", Phase: v1alpha1.PromotionSucceeded})
	if !succeededIn("r1", stage) {
		t.Error("r1 succeeded in stage")
	}
	if !succeededIn("r2", v1alpha1.Environment{Status: v1alpha1.EnvironmentStatus{CurrentRelease: "r2"}}) {
		t.Error("r2 runs there now")
	}
}
