package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
)

// One test per transition of a Promotion's phase, each on a fake client
// with the reconciler's clock in the test's hand. The e2e stories in test/
// drive the same transitions through real agents.

// step reconciles once and fails the test on an error.
func (ro *rollout) step() *v1alpha1.Promotion {
	ro.t.Helper()
	promo, _, err := ro.reconcile()
	if err != nil {
		ro.t.Fatalf("reconcile: %v", err)
	}
	return promo
}

// report stores phase on the DeployTask of target, as its agent does.
func (ro *rollout) report(task string, phase v1alpha1.DeployTaskPhase) {
	ro.t.Helper()
	ctx := context.Background()
	t := ro.task(client.ObjectKey{Namespace: "ns", Name: task})
	before := t.DeepCopy()
	t.Status.Phase, t.Status.Message = phase, "reported "+string(phase)
	if err := ro.c.Status().Patch(ctx, t, client.MergeFrom(before)); err != nil {
		ro.t.Fatal(err)
	}
}

// tasks are the names of the DeployTasks that exist.
func (ro *rollout) tasks() []string {
	ro.t.Helper()
	var list v1alpha1.DeployTaskList
	if err := ro.c.List(context.Background(), &list); err != nil {
		ro.t.Fatal(err)
	}
	return names(list.Items, func(t *v1alpha1.DeployTask) string { return t.Name })
}

// events drains the events the reconciler recorded so far.
func (ro *rollout) events() []string {
	ro.t.Helper()
	var out []string
	for {
		select {
		case e := <-ro.r.Recorder.(*record.FakeRecorder).Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func wantPhase(t *testing.T, promo *v1alpha1.Promotion, phase v1alpha1.PromotionPhase, reason, message string) {
	t.Helper()
	r := ready(promo.Status.Conditions)
	if promo.Status.Phase != phase || r.Reason != reason || !strings.Contains(r.Message, message) {
		t.Fatalf("phase %s, Ready %s %q; want %s, %s, a message with %q", promo.Status.Phase, r.Reason, r.Message, phase, reason, message)
	}
	reconciling := meta.FindStatusCondition(promo.Status.Conditions, v1alpha1.ConditionReconciling) != nil
	if terminal := phase.IsTerminal(); terminal == reconciling || (terminal && promo.Status.FinishedAt == nil) {
		t.Errorf("phase %s: Reconciling present %v, finishedAt %v; want Reconciling only while open, and a finish time once ended", phase, reconciling, promo.Status.FinishedAt)
	}
}

func withStrategy(s v1alpha1.DeployStrategy) v1alpha1.EnvironmentSpec {
	return v1alpha1.EnvironmentSpec{Strategy: &s}
}

func oneAtATime() v1alpha1.EnvironmentSpec {
	one := intstr.FromInt32(1)
	return withStrategy(v1alpha1.DeployStrategy{Type: v1alpha1.StrategyRolling, Rolling: &v1alpha1.RollingStrategy{MaxUnavailable: &one}})
}

// Pending → Deploying → Succeeded, one batch at a time: the next batch's
// task exists only once the one before succeeded.
func TestPromotionRollsOutBatchByBatch(t *testing.T) {
	ro := newRollout(t, "p1", oneAtATime(), nil, devTarget("a", ""), devTarget("b", ""))
	promo := ro.step()
	wantPhase(t, promo, v1alpha1.PromotionDeploying, v1alpha1.ReasonDeploying, "batch 1 of 2: 0 of 2 target(s) done")
	if got := ro.tasks(); strings.Join(got, ",") != "p1-a" {
		t.Fatalf("tasks %v; want only batch 1's, p1-a", got)
	}
	if promo.Status.Decision == nil || promo.Status.Decision.Result != v1alpha1.DecisionAllow || promo.Status.CreationRevision == "" {
		t.Fatalf("decision %+v, creationRevision %q; want an allow and the queue's revision", promo.Status.Decision, promo.Status.CreationRevision)
	}

	ro.report("p1-a", v1alpha1.DeployTaskSucceeded)
	wantPhase(t, ro.step(), v1alpha1.PromotionDeploying, v1alpha1.ReasonDeploying, "batch 2 of 2: 1 of 2 target(s) done")
	if got := ro.tasks(); strings.Join(got, ",") != "p1-a,p1-b" {
		t.Fatalf("tasks %v; want batch 2's p1-b added", got)
	}
	if events := ro.events(); len(events) != 0 {
		t.Errorf("events %q on the way; want none until the promotion ends", events)
	}
	ro.report("p1-b", v1alpha1.DeployTaskSucceeded)
	wantPhase(t, ro.step(), v1alpha1.PromotionSucceeded, v1alpha1.ReasonSucceeded, "release shop-1 runs on all 2 target(s) of dev")
	if events := ro.events(); len(events) != 1 || !strings.HasPrefix(events[0], "Normal Succeeded release shop-1 runs") {
		t.Errorf("events %q; want one Normal Succeeded", events)
	}
	if ready(ro.step().Status.Conditions).Status != metav1.ConditionTrue {
		t.Error("a succeeded promotion is not Ready=True")
	}
}

// The decision and the rollout plan are stored before the first DeployTask
// exists: a crash between the two can never lead to deciding again with
// tasks already out.
func TestPromotionStoresItsDecisionBeforeDeploying(t *testing.T) {
	var ro *rollout
	checked := false
	funcs := &interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if _, ok := obj.(*v1alpha1.DeployTask); ok {
			stored := &v1alpha1.Promotion{}
			if err := c.Get(ctx, ro.promo, stored); err != nil {
				return err
			}
			if !decided(stored) || len(stored.Status.Targets) == 0 {
				t.Errorf("DeployTask %s created while the stored promotion has decision %+v and targets %+v", obj.GetName(), stored.Status.Decision, stored.Status.Targets)
			}
			checked = true
		}
		return c.Create(ctx, obj, opts...)
	}}
	ro = newRollout(t, "p1", v1alpha1.EnvironmentSpec{}, funcs, devTarget("a", ""))
	ro.step()
	if !checked {
		t.Fatal("no DeployTask was created")
	}
}

// A reconciler that starts afresh in the middle of a rollout (a restart,
// or another replica taking over) resumes it: the same decision, the same
// plan, no second task for a target, and the next batch once it is due.
func TestPromotionResumesAfterARestartMidRollout(t *testing.T) {
	ro := newRollout(t, "p1", oneAtATime(), nil, devTarget("a", ""), devTarget("b", ""))
	first := ro.step()
	ro.report("p1-a", v1alpha1.DeployTaskSucceeded)

	ro.now = ro.now.Add(time.Minute) // a new decision would differ in decidedAt
	ro.r = &PromotionReconciler{Client: ro.c, Recorder: record.NewFakeRecorder(100), Now: func() time.Time { return ro.now }}
	promo := ro.step()
	if promo.Status.Decision.DeterminismHash != first.Status.Decision.DeterminismHash || !promo.Status.Decision.DecidedAt.Equal(first.Status.Decision.DecidedAt) {
		t.Errorf("decision changed across the restart: %+v, was %+v", promo.Status.Decision, first.Status.Decision)
	}
	if got := ro.tasks(); strings.Join(got, ",") != "p1-a,p1-b" {
		t.Errorf("tasks %v; want p1-a kept and p1-b added", got)
	}
	wantPhase(t, promo, v1alpha1.PromotionDeploying, v1alpha1.ReasonDeploying, "batch 2 of 2: 1 of 2 target(s) done")
}

// Pending → Pending (Queued): a promotion waits behind the one in flight
// in its environment and goes once that one ended.
func TestPromotionQueuesBehindTheOneInFlight(t *testing.T) {
	inFlight := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p0"},
		Spec:   v1alpha1.PromotionSpec{Release: "shop-1", Environment: "dev"},
		Status: v1alpha1.PromotionStatus{Phase: v1alpha1.PromotionDeploying, Decision: &v1alpha1.Decision{Result: v1alpha1.DecisionAllow}}}
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{}, nil, inFlight, devTarget("a", ""))
	wantPhase(t, ro.step(), v1alpha1.PromotionPending, v1alpha1.ReasonQueued, "waiting for promotion p0 to finish in environment dev")

	ctx := context.Background()
	done := inFlight.DeepCopy()
	if err := ro.c.Get(ctx, client.ObjectKeyFromObject(inFlight), done); err != nil {
		t.Fatal(err)
	}
	before := done.DeepCopy()
	done.Status.Phase = v1alpha1.PromotionSucceeded
	if err := ro.c.Status().Patch(ctx, done, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, ro.step(), v1alpha1.PromotionDeploying, v1alpha1.ReasonDeploying, "batch 1 of 1")
}

// Any open phase → Cancelled on the cancel annotation; its value says why,
// as an auto-promotion that supersedes a queued one writes it. Nothing is
// deployed after.
func TestPromotionCancelsOnRequest(t *testing.T) {
	for _, tc := range []struct {
		name, why, message string
		deploying          bool
	}{
		{"by hand while pending", "true", "cancelled on request in phase Pending", false},
		{"superseded while pending", "superseded by promotion shop-3-to-dev", "cancelled on request in phase Pending: superseded by promotion shop-3-to-dev", false},
		{"by hand while deploying", "true", "cancelled on request in phase Deploying", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := newRollout(t, "p1", oneAtATime(), nil, devTarget("a", ""), devTarget("b", ""))
			if tc.deploying {
				ro.step()
			}
			ctx := context.Background()
			promo := &v1alpha1.Promotion{}
			if err := ro.c.Get(ctx, ro.promo, promo); err != nil {
				t.Fatal(err)
			}
			before := promo.DeepCopy()
			promo.Annotations = map[string]string{v1alpha1.AnnotationCancel: tc.why}
			if err := ro.c.Patch(ctx, promo, client.MergeFrom(before)); err != nil {
				t.Fatal(err)
			}
			if tc.deploying {
				ro.report("p1-a", v1alpha1.DeployTaskSucceeded) // batch 2 would be due
			}
			wantPhase(t, ro.step(), v1alpha1.PromotionCancelled, v1alpha1.ReasonCancelled, tc.message)
			if n := len(ro.tasks()); n > 1 {
				t.Errorf("%d tasks; want none created after the cancel", n)
			}
		})
	}
}

// Pending → Stalled while the release is missing, naming the field; the
// promotion goes on once it exists.
func TestPromotionStallsOnAMissingReleaseUntilItExists(t *testing.T) {
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{}, nil, devTarget("a", ""))
	ctx := context.Background()
	rel := &v1alpha1.Release{}
	if err := ro.c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "shop-1"}, rel); err != nil {
		t.Fatal(err)
	}
	if err := ro.c.Delete(ctx, rel); err != nil {
		t.Fatal(err)
	}
	promo := ro.step()
	stalled := meta.FindStatusCondition(promo.Status.Conditions, v1alpha1.ConditionStalled)
	if stalled == nil || stalled.Reason != v1alpha1.ReasonReleaseNotFound || !strings.HasPrefix(stalled.Message, "spec.release: Release shop-1 does not exist") ||
		ready(promo.Status.Conditions).Reason != v1alpha1.ReasonReleaseNotFound || promo.Status.Phase != v1alpha1.PromotionPending {
		t.Fatalf("phase %s, conditions %+v; want Pending, Stalled and Ready False with ReleaseNotFound naming spec.release", promo.Status.Phase, promo.Status.Conditions)
	}

	rel.ResourceVersion = ""
	if err := ro.c.Create(ctx, rel); err != nil {
		t.Fatal(err)
	}
	promo = ro.step()
	wantPhase(t, promo, v1alpha1.PromotionDeploying, v1alpha1.ReasonDeploying, "batch 1 of 1")
	if meta.FindStatusCondition(promo.Status.Conditions, v1alpha1.ConditionStalled) != nil {
		t.Error("Stalled stayed after the release was created")
	}
}

// Pending → Evaluating while a freeze window holds the gates, with a look
// again when it ends; → Deploying once it has.
func TestPromotionWaitsOutAFreezeWindow(t *testing.T) {
	start := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	freeze := &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "freeze"}, Spec: v1alpha1.GateSpec{FreezeWindow: &v1alpha1.FreezeWindowGate{
		Windows: []v1alpha1.TimeWindow{{Start: metav1.NewTime(start), End: metav1.NewTime(start.Add(2 * time.Hour)), Reason: "year-end freeze"}}}}}
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{Gates: []v1alpha1.LocalObjectReference{{Name: "freeze"}}}, nil, freeze, devTarget("a", ""))
	promo, res, err := ro.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	wantPhase(t, promo, v1alpha1.PromotionEvaluating, v1alpha1.ReasonAwaitingGates, "waiting for the gates")
	if want := time.Hour; res.RequeueAfter != want {
		t.Errorf("requeue after %s; want %s, when the window ends", res.RequeueAfter, want)
	}
	if len(ro.tasks()) != 0 {
		t.Fatal("a task was created while the gates were pending")
	}
	ro.now = start.Add(2 * time.Hour)
	wantPhase(t, ro.step(), v1alpha1.PromotionDeploying, v1alpha1.ReasonDeploying, "batch 1 of 1")
}

// Pending → AwaitingApproval when only approvals are missing.
func TestPromotionAwaitsApproval(t *testing.T) {
	gate := &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "one-approval"}, Spec: v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{Count: 1}}}
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{Gates: []v1alpha1.LocalObjectReference{{Name: "one-approval"}}}, nil, gate, devTarget("a", ""))
	wantPhase(t, ro.step(), v1alpha1.PromotionAwaitingApproval, v1alpha1.ReasonAwaitingGates, "waiting for the gates")
}

// Pending → Rejected when a gate denies; the decision is kept and nothing
// is deployed.
func TestPromotionIsRejectedByAGate(t *testing.T) {
	gate := &v1alpha1.Gate{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "never"}, Spec: v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{
		Source: "allow: false\nreasons: [\"policy.never\"]\n"}}}
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{Gates: []v1alpha1.LocalObjectReference{{Name: "never"}}}, nil, gate, devTarget("a", ""))
	promo := ro.step()
	wantPhase(t, promo, v1alpha1.PromotionRejected, v1alpha1.ReasonRejected, "rejected by the gates")
	if promo.Status.Decision == nil || promo.Status.Decision.Result != v1alpha1.DecisionDeny || len(ro.tasks()) != 0 {
		t.Errorf("decision %+v, tasks %v; want a stored deny and no task", promo.Status.Decision, ro.tasks())
	}
}

// Deploying → Failed when a target's task fails, naming it; the next
// batch is never started.
func TestPromotionFailsWithAFailedBatch(t *testing.T) {
	ro := newRollout(t, "p1", oneAtATime(), nil, devTarget("a", ""), devTarget("b", ""))
	ro.step()
	ro.report("p1-a", v1alpha1.DeployTaskFailed)
	wantPhase(t, ro.step(), v1alpha1.PromotionFailed, v1alpha1.ReasonFailed, "target a: Failed reported Failed; the rollout stopped")
	if events := ro.events(); len(events) != 1 || !strings.HasPrefix(events[0], "Warning Failed target a") {
		t.Errorf("events %q; want one Warning Failed", events)
	}
	if got := ro.tasks(); strings.Join(got, ",") != "p1-a" {
		t.Errorf("tasks %v; want batch 2 never started", got)
	}
}

// Deploying → Failed when a task's agent stays silent past the deploy
// timeout: the task is timed out, and the promotion says so.
func TestPromotionFailsWhenATaskTimesOut(t *testing.T) {
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{DeployTimeout: metav1.Duration{Duration: 5 * time.Minute}}, nil, devTarget("a", "host-1"))
	promo, res, err := ro.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != 5*time.Minute {
		t.Errorf("requeue after %s; want the deploy timeout, 5m", res.RequeueAfter)
	}
	wantPhase(t, promo, v1alpha1.PromotionDeploying, v1alpha1.ReasonDeploying, "batch 1 of 1")

	ro.now = ro.now.Add(4 * time.Minute)
	wantPhase(t, ro.step(), v1alpha1.PromotionDeploying, v1alpha1.ReasonDeploying, "batch 1 of 1")
	ro.now = ro.now.Add(time.Minute)
	wantPhase(t, ro.step(), v1alpha1.PromotionFailed, v1alpha1.ReasonFailed, "target a: TimedOut no result within 5m0s")
	if task := ro.task(client.ObjectKey{Namespace: "ns", Name: "p1-a"}); task.Status.Phase != v1alpha1.DeployTaskTimedOut {
		t.Errorf("task phase %s; want TimedOut", task.Status.Phase)
	}
}

// Deploying → RollingBack → RolledBack: with spec.rollbackOnFailure, a
// failed target sends every changed target back to what it ran before;
// one that ran nothing known is left alone. → Failed when a rollback fails.
func TestPromotionRollsBackAFailedRollout(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rollback v1alpha1.DeployTaskPhase
		phase    v1alpha1.PromotionPhase
		reason   string
		message  string
	}{
		{"rollback succeeds", v1alpha1.DeployTaskSucceeded, v1alpha1.PromotionRolledBack, v1alpha1.ReasonRolledBack,
			"rolled back 1 target(s) to what they ran before, 1 had nothing to roll back to"},
		{"rollback fails", v1alpha1.DeployTaskFailed, v1alpha1.PromotionFailed, v1alpha1.ReasonFailed, "the rollback failed on 1 target(s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ran := devTarget("a", "")
			ran.Status.Observed = &v1alpha1.VersionSticker{Release: "shop-0", Version: "0.9.0", Components: []v1alpha1.ComponentDigest{
				{Name: "api", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@sha256:" + strings.Repeat("cd", 32))}}}
			ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{RollbackOnFailure: true}, nil, ran, devTarget("b", ""))
			ro.step()
			ro.report("p1-a", v1alpha1.DeployTaskSucceeded)
			ro.report("p1-b", v1alpha1.DeployTaskFailed)
			wantPhase(t, ro.step(), v1alpha1.PromotionDeploying, v1alpha1.ReasonRollingBack, "target b: Failed reported Failed; the rollout stopped; rolling back: 0 of 1")
			rb := ro.task(client.ObjectKey{Namespace: "ns", Name: "p1-a-rollback"})
			if rb.Spec.Action != v1alpha1.DeployActionRollback || rb.Spec.Release != "shop-0" {
				t.Fatalf("rollback task %+v; want target a sent back to shop-0", rb.Spec)
			}
			ro.report("p1-a-rollback", tc.rollback)
			wantPhase(t, ro.step(), tc.phase, tc.reason, tc.message)
		})
	}
}

// A status the API refuses still leaves the refusal in Ready: the write
// of the whole status fails, and Ready alone is written with the cause.
func TestARefusedStatusShowsInReady(t *testing.T) {
	refuseTargets := &interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
		data, err := patch.Data(obj)
		if err != nil {
			return err
		}
		if _, ok := obj.(*v1alpha1.Promotion); ok && strings.Contains(string(data), `"targets"`) {
			return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("Promotion").GroupKind(), obj.GetName(), field.ErrorList{
				field.TooMany(field.NewPath("status", "targets"), 300, 256)})
		}
		return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
	}}
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{}, refuseTargets, devTarget("a", ""))
	promo, _, err := ro.reconcile()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("reconcile error %v; want the refusal", err)
	}
	if r := ready(promo.Status.Conditions); r.Reason != v1alpha1.ReasonRetrying || !strings.Contains(r.Message, "status.targets: Too many: 300") {
		t.Errorf("Ready %s %q; want Retrying with the API's refusal", r.Reason, r.Message)
	}
	if promo.Status.Phase != v1alpha1.PromotionPending || promo.Status.CreationRevision == "" {
		t.Errorf("phase %q, creationRevision %q; want the refusal stored with the start, so the queue keeps its order", promo.Status.Phase, promo.Status.CreationRevision)
	}
	if len(ro.tasks()) != 0 {
		t.Error("a task was created although the decision and plan were not stored")
	}
}

// Approved → Stalled while the environment selects more targets than one
// promotion rolls out to, saying how many and what to change; the decision
// is kept, nothing is deployed, and narrowing the selection lets it go on.
func TestPromotionStallsOverTooManyTargets(t *testing.T) {
	var objs []client.Object
	for i := range v1alpha1.MaxRolloutTargets + 1 {
		objs = append(objs, devTarget(fmt.Sprintf("t%03d", i), ""))
	}
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{}, nil, objs...)
	promo := ro.step()
	stalled := meta.FindStatusCondition(promo.Status.Conditions, v1alpha1.ConditionStalled)
	if stalled == nil || stalled.Reason != v1alpha1.ReasonTooManyTargets || !strings.Contains(stalled.Message, "selects 257 targets, more than the 256") ||
		!decided(promo) || len(ro.tasks()) != 0 {
		t.Fatalf("Stalled %+v, decision %+v, %d tasks; want TooManyTargets with the counts, the decision kept, no task", stalled, promo.Status.Decision, len(ro.tasks()))
	}

	// What the message asks for wakes it: a change of its environment
	// (a narrower selector), or a Target deleted.
	ctx := context.Background()
	env := &v1alpha1.Environment{}
	if err := ro.c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "dev"}, env); err != nil {
		t.Fatal(err)
	}
	woken := func() []string {
		return names(ro.r.waitingOnEnvironment(ctx, env), func(r *reconcile.Request) string { return r.Name })
	}
	if got := woken(); strings.Join(got, ",") != "p1" {
		t.Errorf("a change of environment dev wakes %v; want p1, decided and waiting for a plan", got)
	}
	last := &v1alpha1.Target{}
	if err := ro.c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "t256"}, last); err != nil {
		t.Fatal(err)
	}
	if !targetPresenceChanged.Delete(event.DeleteEvent{Object: last}) {
		t.Error("a deleted Target does not wake the promotions of its environment")
	}
	if err := ro.c.Delete(ctx, last); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, ro.step(), v1alpha1.PromotionDeploying, v1alpha1.ReasonDeploying, "batch 1 of 1: 0 of 256 target(s) done")
	if got := woken(); len(got) != 0 {
		t.Errorf("a change of environment dev wakes %v; want none once p1 has its plan", got)
	}
}

// A deny stored by a run that did not get to end the promotion (an older
// server stored a final decision before its statement) ends it Rejected;
// it is never planned nor deployed.
func TestPromotionWithAStoredDenyEndsRejected(t *testing.T) {
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{}, nil, devTarget("a", ""))
	ctx := context.Background()
	promo := &v1alpha1.Promotion{}
	if err := ro.c.Get(ctx, ro.promo, promo); err != nil {
		t.Fatal(err)
	}
	before := promo.DeepCopy()
	promo.Status.Phase = v1alpha1.PromotionEvaluating
	promo.Status.Decision = &v1alpha1.Decision{Result: v1alpha1.DecisionDeny, ReasonCodes: []string{"policy.never"}}
	if err := ro.c.Status().Patch(ctx, promo, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, ro.step(), v1alpha1.PromotionRejected, v1alpha1.ReasonRejected, "rejected by the gates: [policy.never]")
	if len(ro.tasks()) != 0 {
		t.Error("a denied promotion was deployed")
	}
}

// promotesFrom counts a release that succeeded upstream in a promotion
// that has since left the API for the archive, and the upstream's history.
func TestPromotesFromCountsAnArchivedUpstreamSuccess(t *testing.T) {
	upstream := func() client.Object {
		return &v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "stage"}}
	}
	intoProd := v1alpha1.EnvironmentSpec{PromotesFrom: []string{"stage"}}

	without := newRollout(t, "p1", intoProd, nil, upstream(), devTarget("a", ""))
	if promo := without.step(); promo.Status.Phase == v1alpha1.PromotionDeploying {
		t.Fatalf("without the archive the release never succeeded in stage, yet the promotion is %s", promo.Status.Phase)
	}

	promotions := emptyArchive(t)
	finished := metav1.NewTime(time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC))
	record := archive.NewRecord(&v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shop-1-to-stage", UID: "u-stage"},
		Spec:   v1alpha1.PromotionSpec{Release: "shop-1", Environment: "stage"},
		Status: v1alpha1.PromotionStatus{Phase: v1alpha1.PromotionSucceeded, CreationRevision: "5", FinishedAt: &finished}}, nil, nil)
	if _, err := promotions.Put(&record); err != nil {
		t.Fatal(err)
	}
	with := newRollout(t, "p1", intoProd, nil, upstream(), devTarget("a", ""))
	with.r.Archive = promotions
	wantPhase(t, with.step(), v1alpha1.PromotionDeploying, v1alpha1.ReasonDeploying, "batch 1 of 1")
}
