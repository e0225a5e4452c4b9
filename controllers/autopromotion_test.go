package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/scheme"
)

// supersession is an auto-promoting environment dev with the auto-promotion
// of shop-2 queued behind another promotion, and the newer release shop-3.
type supersession struct {
	t      *testing.T
	c      client.Client
	queued client.ObjectKey
}

func newSupersession(t *testing.T, funcs *interceptor.Funcs) *supersession {
	t.Helper()
	created := metav1.NewTime(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	release := func(name string, age time.Duration) *v1alpha1.Release {
		return &v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: metav1.NewTime(created.Add(age))},
			Spec: v1alpha1.ReleaseSpec{Version: "1.0.0", Components: []v1alpha1.ReleaseComponent{
				{Name: "api", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@sha256:" + strings.Repeat("ab", 32))}}}}
	}
	queued := &v1alpha1.Promotion{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shop-2-to-dev", Labels: map[string]string{v1alpha1.LabelAutoPromotion: "true"}},
		Spec:       v1alpha1.PromotionSpec{Release: "shop-2", Environment: "dev"},
		Status:     v1alpha1.PromotionStatus{Phase: v1alpha1.PromotionPending},
	}
	summarize(queued, waiting(v1alpha1.ReasonQueued, "waiting for promotion shop-1-to-dev to finish in environment dev", 0), nil, time.Time{})
	b := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&v1alpha1.Promotion{}).WithObjects(
		&v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "dev"}, Spec: v1alpha1.EnvironmentSpec{AutoPromote: true}},
		release("shop-2", time.Minute), release("shop-3", 2*time.Minute), queued,
	)
	b = withFieldIndexes(b)
	if funcs != nil {
		b = b.WithInterceptorFuncs(*funcs)
	}
	return &supersession{t: t, c: b.Build(), queued: client.ObjectKeyFromObject(queued)}
}

// autoPromote runs the auto-promotion reconciler on dev once.
func (s *supersession) autoPromote() (ctrl.Result, error) {
	s.t.Helper()
	return (&AutoPromotionReconciler{Client: s.c}).Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKey{Namespace: "ns", Name: "dev"}})
}

func (s *supersession) get(key client.ObjectKey) *v1alpha1.Promotion {
	s.t.Helper()
	p := &v1alpha1.Promotion{}
	if err := s.c.Get(context.Background(), key, p); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// A newer release supersedes the queued auto-promotion of an older one by
// asking for its cancellation, as stellactl promote cancel does: the
// promotion reconciler, which owns the promotion's status, writes
// Cancelled, and says which promotion superseded it.
func TestSupersedingAsksThePromotionReconcilerToCancel(t *testing.T) {
	s := newSupersession(t, nil)
	before := s.get(s.queued)
	if _, err := s.autoPromote(); err != nil {
		t.Fatal(err)
	}
	s.get(client.ObjectKey{Namespace: "ns", Name: "shop-3-to-dev"})
	asked := s.get(s.queued)
	if !equality.Semantic.DeepEqual(asked.Status, before.Status) {
		t.Errorf("the auto-promotion controller wrote the promotion's status:\nbefore %+v\nafter  %+v", before.Status, asked.Status)
	}
	if why := asked.Annotations[v1alpha1.AnnotationCancel]; !strings.Contains(why, "shop-3-to-dev") {
		t.Fatalf("annotation %s = %q; want a cancel request naming shop-3-to-dev", v1alpha1.AnnotationCancel, why)
	}

	r := &PromotionReconciler{Client: s.c, Recorder: record.NewFakeRecorder(10)}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: s.queued}); err != nil {
		t.Fatal(err)
	}
	cancelled := s.get(s.queued)
	ready := meta.FindStatusCondition(cancelled.Status.Conditions, v1alpha1.ConditionReady)
	if cancelled.Status.Phase != v1alpha1.PromotionCancelled || ready == nil ||
		!strings.Contains(ready.Message, "superseded by promotion shop-3-to-dev of the newer release shop-3") {
		t.Errorf("phase %s, Ready %+v; want Cancelled, naming the promotion that superseded it", cancelled.Status.Phase, ready)
	}
}

// The auto-promotion controller judges a promotion queued from its cache;
// when the promotion left the queue since (it started), the cancel request
// meets a conflict and the environment is looked at again, so a promotion
// in flight is never cancelled for being superseded.
func TestSupersedingLeavesAPromotionThatChangedSinceRead(t *testing.T) {
	var s *supersession
	startFirst := &interceptor.Funcs{Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
		if obj.GetName() == "shop-2-to-dev" {
			started := &v1alpha1.Promotion{}
			if err := c.Get(ctx, s.queued, started); err != nil {
				return err
			}
			before := started.DeepCopy()
			started.Status.Phase = v1alpha1.PromotionEvaluating
			meta.RemoveStatusCondition(&started.Status.Conditions, v1alpha1.ConditionReconciling)
			if err := c.Status().Patch(ctx, started, client.MergeFrom(before)); err != nil {
				return err
			}
		}
		return c.Patch(ctx, obj, patch, opts...)
	}}
	s = newSupersession(t, startFirst)
	res, err := s.autoPromote()
	if err != nil || res.RequeueAfter != conflictRetry {
		t.Fatalf("reconcile = %+v, %v; want a look again after %s", res, err, conflictRetry)
	}
	if p := s.get(s.queued); p.Annotations[v1alpha1.AnnotationCancel] != "" || p.Status.Phase != v1alpha1.PromotionEvaluating {
		t.Errorf("the started promotion: annotations %v, phase %s; want no cancel request and Evaluating", p.Annotations, p.Status.Phase)
	}
}
