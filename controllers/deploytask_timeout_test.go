package controllers

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// reportedAfterCache is a rollout to target web with a one-minute deploy
// timeout, whose DeployTask the agent then reports phase and message on;
// the reconciler's cache still holds the task as created, and its clock is
// past the task's deadline.
func reportedAfterCache(t *testing.T, phase v1alpha1.DeployTaskPhase, message string) (*rollout, *v1alpha1.DeployTask) {
	t.Helper()
	var cached *v1alpha1.DeployTaskList
	fromCache := &interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		if tasks, ok := list.(*v1alpha1.DeployTaskList); ok && cached != nil {
			cached.DeepCopyInto(tasks)
			return nil
		}
		return c.List(ctx, list, opts...)
	}}
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{DeployTimeout: metav1.Duration{Duration: time.Minute}}, fromCache, devTarget("web", "host-1"))
	if _, _, err := ro.reconcile(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var tasks v1alpha1.DeployTaskList
	if err := ro.c.List(ctx, &tasks); err != nil || len(tasks.Items) != 1 {
		t.Fatalf("tasks %d, %v; want the one of target web", len(tasks.Items), err)
	}
	cached = tasks.DeepCopy()
	task := tasks.Items[0].DeepCopy()
	before := task.DeepCopy()
	task.Status.Phase, task.Status.Message = phase, message
	if err := ro.c.Status().Patch(ctx, task, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	ro.now = task.CreationTimestamp.Add(time.Hour)
	return ro, task
}

func (ro *rollout) task(key client.ObjectKey) *v1alpha1.DeployTask {
	ro.t.Helper()
	task := &v1alpha1.DeployTask{}
	if err := ro.c.Get(context.Background(), key, task); err != nil {
		ro.t.Fatal(err)
	}
	return task
}

// The agent stores a task's result just as its deadline passes, and the
// promotion reconciler, reading its cache from before that write, goes to
// time the task out: the result stored first stands, and the promotion
// goes on with it.
func TestATimeoutNeverReplacesAStoredResult(t *testing.T) {
	ro, task := reportedAfterCache(t, v1alpha1.DeployTaskSucceeded, "release shop-1 runs")
	promo, _, err := ro.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	if stored := ro.task(client.ObjectKeyFromObject(task)); stored.Status.Phase != v1alpha1.DeployTaskSucceeded || stored.Status.Message != "release shop-1 runs" {
		t.Errorf("task %s %q; want the agent's Succeeded to stand", stored.Status.Phase, stored.Status.Message)
	}
	if promo.Status.Phase != v1alpha1.PromotionSucceeded {
		t.Errorf("promotion %s (%s); want Succeeded on the agent's result", promo.Status.Phase, ready(promo.Status.Conditions).Message)
	}
}

// A task still running at its deadline times out, even when the cache lags
// behind the agent's last report on it.
func TestARunningTaskTimesOutFromAStaleRead(t *testing.T) {
	ro, task := reportedAfterCache(t, v1alpha1.DeployTaskRunning, "stella-agent host-1 is deploying (attempt 1)")
	promo, _, err := ro.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	if stored := ro.task(client.ObjectKeyFromObject(task)); stored.Status.Phase != v1alpha1.DeployTaskTimedOut || promo.Status.Phase != v1alpha1.PromotionFailed {
		t.Errorf("task %s, promotion %s; want TimedOut and Failed", stored.Status.Phase, promo.Status.Phase)
	}
}
