package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/scheme"
)

// staleReads serves one promotion as it was once read, the way a cache
// that has not seen the latest write yet does.
type staleReads struct {
	client.Client
	stale *v1alpha1.Promotion
}

func (s staleReads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if p, ok := obj.(*v1alpha1.Promotion); ok && key == client.ObjectKeyFromObject(s.stale) {
		s.stale.DeepCopyInto(p)
		return nil
	}
	return s.Client.Get(ctx, key, obj, opts...)
}

// A reconcile working from a copy read before the promotion was decided
// must neither decide again nor overwrite the stored decision: its write
// meets a conflict and the promotion is read again a moment later.
func TestAStaleReadNeverDecidesTwice(t *testing.T) {
	ctx := context.Background()
	b := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&v1alpha1.Promotion{}).WithObjects(
		&v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shop-1"}, Spec: v1alpha1.ReleaseSpec{Version: "1.0.0",
			Components: []v1alpha1.ReleaseComponent{{Name: "api", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@sha256:" + strings.Repeat("ab", 32))}}}},
		&v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "dev"}, Spec: v1alpha1.EnvironmentSpec{AllowEmpty: true}},
		&v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p1"}, Spec: v1alpha1.PromotionSpec{Release: "shop-1", Environment: "dev"}},
	)
	b = withFieldIndexes(b)
	c := b.Build()
	key := client.ObjectKey{Namespace: "ns", Name: "p1"}
	undecided := &v1alpha1.Promotion{}
	if err := c.Get(ctx, key, undecided); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	r := &PromotionReconciler{Client: staleReads{Client: c, stale: undecided}, Recorder: record.NewFakeRecorder(10), Now: func() time.Time { return now }}

	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatalf("first reconcile: %v", err)
	}
	decided := &v1alpha1.Promotion{}
	if err := c.Get(ctx, key, decided); err != nil {
		t.Fatal(err)
	}
	if decided.Status.Decision == nil || decided.Status.Phase != v1alpha1.PromotionSucceeded {
		t.Fatalf("after the first reconcile: phase %q, decision %+v; want Succeeded with a decision", decided.Status.Phase, decided.Status.Decision)
	}

	now = now.Add(time.Hour) // a second decision would differ in decidedAt
	res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key})
	if err != nil || res.RequeueAfter != conflictRetry {
		t.Fatalf("reconcile from the stale copy = %+v, %v; want a retry after %s and no error", res, err, conflictRetry)
	}
	after := &v1alpha1.Promotion{}
	if err := c.Get(ctx, key, after); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(after.Status, decided.Status) {
		t.Errorf("the stored status changed:\nbefore %+v\nafter  %+v", decided.Status, after.Status)
	}
}

// A reconcile working from a copy read while the promotion was deploying,
// after it had ended, must not end it a second time (with another finish
// time, and a second event): its write meets a conflict.
func TestAStaleReadNeverEndsTwice(t *testing.T) {
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{}, nil, devTarget("web", "host-1"))
	deploying, _, err := ro.reconcile()
	if err != nil || deploying.Status.Phase != v1alpha1.PromotionDeploying {
		t.Fatalf("first reconcile: %s, %v; want Deploying", deploying.Status.Phase, err)
	}
	ctx := context.Background()
	task := &v1alpha1.DeployTask{}
	if err := ro.c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: deploying.Status.Targets[0].DeployTask}, task); err != nil {
		t.Fatal(err)
	}
	before := task.DeepCopy()
	task.Status.Phase = v1alpha1.DeployTaskSucceeded
	if err := ro.c.Status().Patch(ctx, task, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	ended, _, err := ro.reconcile()
	if err != nil || ended.Status.Phase != v1alpha1.PromotionSucceeded {
		t.Fatalf("second reconcile: %s, %v; want Succeeded", ended.Status.Phase, err)
	}

	ro.r.Client = staleReads{Client: ro.c, stale: deploying}
	ro.now = ro.now.Add(time.Hour)
	after, res, err := ro.reconcile()
	if err != nil || res.RequeueAfter != conflictRetry {
		t.Fatalf("reconcile from the stale copy = %+v, %v; want a retry after %s and no error", res, err, conflictRetry)
	}
	if !equality.Semantic.DeepEqual(after.Status, ended.Status) {
		t.Errorf("the stored status changed:\nbefore %+v\nafter  %+v", ended.Status, after.Status)
	}
}
