package controllers

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/scheme"
)

// An environment's status is written when what it shows changes, and only
// then: not on a pass that finds it as it was, nor when a promotion it
// shows in its history leaves the API (as archived ones do).
func TestEnvironmentStatusIsWrittenOnlyWhenItChanges(t *testing.T) {
	ctx := context.Background()
	finished := metav1.NewTime(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	promo := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p1"},
		Spec:   v1alpha1.PromotionSpec{Release: "shop-1", Environment: "prod"},
		Status: v1alpha1.PromotionStatus{Phase: v1alpha1.PromotionSucceeded, CreationRevision: "10", FinishedAt: &finished}}
	writes := 0
	b := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&v1alpha1.Environment{}).WithObjects(
		&v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "prod"}},
		&v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shop-1"}, Spec: v1alpha1.ReleaseSpec{Version: "1.0.0"}},
		promo,
	).WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, subResource string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
		writes++
		return c.SubResource(subResource).Patch(ctx, obj, patch, opts...)
	}})
	c := withFieldIndexes(b).Build()
	r := &EnvironmentReconciler{Client: c, Recorder: record.NewFakeRecorder(10)}
	reconcile := func() {
		t.Helper()
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "prod"}}); err != nil {
			t.Fatal(err)
		}
	}
	reconcile()
	if writes != 1 {
		t.Fatalf("%d status writes on the first pass, want 1", writes)
	}
	reconcile()
	if writes != 1 {
		t.Errorf("%d status writes after a pass that changed nothing, want still 1", writes)
	}
	if err := c.Delete(ctx, promo); err != nil {
		t.Fatal(err)
	}
	reconcile()
	if writes != 1 {
		t.Errorf("%d status writes after the promotion left the API, want still 1", writes)
	}
	env := &v1alpha1.Environment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "prod"}, env); err != nil {
		t.Fatal(err)
	}
	if env.Status.CurrentRelease != "shop-1" || len(env.Status.History) != 1 || env.Status.History[0].Promotion != "p1" {
		t.Errorf("status after the promotion left: current %q, history %+v; want shop-1 from p1", env.Status.CurrentRelease, env.Status.History)
	}
}
