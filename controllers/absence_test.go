package controllers

import (
	"context"
	"testing"
	"time"

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

// The server judges an agent absent from a Target read before the agent,
// back after a silence, reported on it: the agent's report stands (the
// server's write meets a conflict), and the absence is judged again.
func TestAnAbsenceNeverReplacesAnAgentsReport(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	silent := &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "host-1"},
		Status: v1alpha1.AgentStatus{LastHeartbeat: &metav1.Time{Time: now.Add(-time.Hour)}}}
	var beforeReport *v1alpha1.Target
	fromCache := interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if target, ok := obj.(*v1alpha1.Target); ok && beforeReport != nil {
			beforeReport.DeepCopyInto(target)
			return nil
		}
		return c.Get(ctx, key, obj, opts...)
	}}
	b := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&v1alpha1.Target{}).
		WithObjects(devTarget("web", "host-1"), silent).WithInterceptorFuncs(fromCache)
	b = withFieldIndexes(b)
	c := b.Build()
	key := client.ObjectKey{Namespace: "ns", Name: "web"}
	target := &v1alpha1.Target{}
	if err := c.Get(ctx, key, target); err != nil {
		t.Fatal(err)
	}
	beforeReport = target.DeepCopy()
	target.Status.Drift, target.Status.Health = v1alpha1.DriftInSync, v1alpha1.HealthHealthy
	target.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "InSync",
		Message: "release shop-1 runs", LastTransitionTime: metav1.NewTime(now)}}
	if err := c.Status().Patch(ctx, target, client.MergeFrom(beforeReport)); err != nil {
		t.Fatal(err)
	}

	r := &TargetReconciler{Client: c, Now: func() time.Time { return now }}
	res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key})
	if err != nil || res.RequeueAfter != conflictRetry {
		t.Fatalf("reconcile from the stale copy = %+v, %v; want a look again after %s", res, err, conflictRetry)
	}
	beforeReport = nil
	stored := &v1alpha1.Target{}
	if err := c.Get(ctx, key, stored); err != nil {
		t.Fatal(err)
	}
	if rd := ready(stored.Status.Conditions); rd.Reason != "InSync" || stored.Status.Drift != v1alpha1.DriftInSync {
		t.Errorf("Ready %s %q, drift %s; want the agent's report to stand", rd.Reason, rd.Message, stored.Status.Drift)
	}
}

// The server judges an agent silent from a copy read before the agent said
// it stopped: the agent's word stands, since silence says less.
func TestSilenceNeverReplacesAnAgentsStop(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	heartbeating := &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "host-1"},
		Status: v1alpha1.AgentStatus{LastHeartbeat: &metav1.Time{Time: now.Add(-time.Hour)}, Conditions: []metav1.Condition{{
			Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Heartbeating", Message: "stella-agent on build-1", LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}}}}
	var beforeStop *v1alpha1.Agent
	fromCache := interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if agent, ok := obj.(*v1alpha1.Agent); ok && beforeStop != nil {
			beforeStop.DeepCopyInto(agent)
			return nil
		}
		return c.Get(ctx, key, obj, opts...)
	}}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&v1alpha1.Agent{}).
		WithObjects(heartbeating).WithInterceptorFuncs(fromCache).Build()
	key := client.ObjectKeyFromObject(heartbeating)
	agent := &v1alpha1.Agent{}
	if err := c.Get(ctx, key, agent); err != nil {
		t.Fatal(err)
	}
	beforeStop = agent.DeepCopy()
	stopped := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: "Stopped", Message: "stella-agent on build-1 was stopped"}
	meta.SetStatusCondition(&agent.Status.Conditions, stopped)
	if err := c.Status().Patch(ctx, agent, client.MergeFrom(beforeStop)); err != nil {
		t.Fatal(err)
	}

	r := &AgentReconciler{Client: c, Recorder: record.NewFakeRecorder(10), Now: func() time.Time { return now }}
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	beforeStop = nil
	if err := c.Get(ctx, key, agent); err != nil {
		t.Fatal(err)
	}
	if rd := ready(agent.Status.Conditions); rd.Reason != "Stopped" {
		t.Errorf("Ready %s %q; want the agent's Stopped to stand", rd.Reason, rd.Message)
	}
}
