package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/scheme"
)

// ownTask is agent host-1 with a DeployTask of its own in status st, as
// the agent read it.
func ownTask(t *testing.T, st v1alpha1.DeployTaskStatus) (taskRunner, *record.FakeRecorder, client.Client, *v1alpha1.DeployTask) {
	t.Helper()
	task := &v1alpha1.DeployTask{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p1-web", Labels: map[string]string{v1alpha1.LabelAgent: "host-1"}},
		Spec: v1alpha1.DeployTaskSpec{Promotion: "p1", Target: "web", Release: "shop-1", Timeout: &metav1.Duration{Duration: time.Minute},
			Components: []v1alpha1.ComponentDigest{{Name: "api", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@sha256:" + strings.Repeat("ab", 32))}}},
		Status: st,
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&v1alpha1.DeployTask{}).
		WithIndex(&v1alpha1.DeployTask{}, "metadata.name", func(o client.Object) []string { return []string{o.GetName()} }).
		WithObjects(task).Build()
	read := &v1alpha1.DeployTask{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(task), read); err != nil {
		t.Fatal(err)
	}
	events := record.NewFakeRecorder(10)
	r := taskRunner{&agent{Options: Options{Name: "host-1", Namespace: "ns"}, hostname: "build-1", client: c, reader: c, events: events, log: logr.Discard()}}
	return r, events, c, read
}

// timedOut is agent host-1 with a running DeployTask that the server timed
// out after the agent read it.
func timedOut(t *testing.T) (taskRunner, *record.FakeRecorder, client.Client, *v1alpha1.DeployTask) {
	t.Helper()
	r, events, c, read := ownTask(t, v1alpha1.DeployTaskStatus{Phase: v1alpha1.DeployTaskRunning, Attempts: 1})
	server := read.DeepCopy()
	server.Status.Phase, server.Status.Message = v1alpha1.DeployTaskTimedOut, "no result within 1m0s"
	if err := c.Status().Patch(context.Background(), server, client.MergeFrom(read)); err != nil {
		t.Fatal(err)
	}
	return r, events, c, read
}

func stored(t *testing.T, c client.Client, task *v1alpha1.DeployTask) *v1alpha1.DeployTask {
	t.Helper()
	out := &v1alpha1.DeployTask{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(task), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// The agent's result comes after the server timed the task out: TimedOut
// stands, the result is refused for good (finish returns no error, so the
// task is not retried), and the agent says so on the task.
func TestALateResultIsNotRecorded(t *testing.T) {
	r, events, c, late := timedOut(t)
	if err := r.finish(context.Background(), late, v1alpha1.DeployTaskSucceeded, "release shop-1 runs", nil); err != nil {
		t.Fatalf("finish = %v; want the late result dropped without a retry", err)
	}
	if got := stored(t, c, late); got.Status.Phase != v1alpha1.DeployTaskTimedOut || got.Status.Message != "no result within 1m0s" {
		t.Errorf("task %s %q; want the server's TimedOut to stand", got.Status.Phase, got.Status.Message)
	}
	select {
	case e := <-events.Events:
		for _, want := range []string{"Warning " + v1alpha1.ReasonResultNotRecorded, "the result Succeeded", "already ended TimedOut", "not recorded"} {
			if !strings.Contains(e, want) {
				t.Errorf("event %q does not say %q", e, want)
			}
		}
	default:
		t.Error("no event tells of the late result")
	}
}

// An agent whose cache still shows a task running that the server timed
// out does not report it started again.
func TestAStartAfterTheTimeoutIsNotRecorded(t *testing.T) {
	r, _, c, late := timedOut(t)
	err := r.start(context.Background(), late)
	if ended := (taskEnded{}); !errors.As(err, &ended) || ended.phase != v1alpha1.DeployTaskTimedOut {
		t.Fatalf("start = %v; want it refused because the task ended TimedOut", err)
	}
	if got := stored(t, c, late); got.Status.Phase != v1alpha1.DeployTaskTimedOut || got.Status.Attempts != 1 {
		t.Errorf("task %s after %d attempts; want TimedOut after 1", got.Status.Phase, got.Status.Attempts)
	}
}

// A task the agent's cache holds at an older version than stored, still
// unfinished, takes the agent's result: the agent reads it again and
// writes over what is stored.
func TestAResultOverAStaleCopyIsRecorded(t *testing.T) {
	r, _, c, stale := ownTask(t, v1alpha1.DeployTaskStatus{})
	ctx := context.Background()
	if err := r.start(ctx, stale.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	if err := r.finish(ctx, stale, v1alpha1.DeployTaskSucceeded, "release shop-1 runs", nil); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, c, stale); got.Status.Phase != v1alpha1.DeployTaskSucceeded || got.Status.Attempts != 1 {
		t.Errorf("task %s after %d attempts; want Succeeded after 1", got.Status.Phase, got.Status.Attempts)
	}
}
