package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/scheme"
)

// rollout is a namespace with a release, an environment selecting
// env=dev, and a promotion of the release into it, driven by a promotion
// reconciler on a clock the test moves.
type rollout struct {
	t     *testing.T
	c     client.Client
	r     *PromotionReconciler
	now   time.Time
	promo client.ObjectKey
}

func newRollout(t *testing.T, promotion string, env v1alpha1.EnvironmentSpec, funcs *interceptor.Funcs, objs ...client.Object) *rollout {
	t.Helper()
	if env.TargetSelector == nil {
		env.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}
	}
	objs = append(objs,
		&v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shop-1"}, Spec: v1alpha1.ReleaseSpec{Version: "1.0.0",
			Components: []v1alpha1.ReleaseComponent{{Name: "api", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@sha256:" + strings.Repeat("ab", 32))}}}},
		&v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "dev"}, Spec: env},
		&v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: promotion}, Spec: v1alpha1.PromotionSpec{Release: "shop-1", Environment: "dev"}},
	)
	b := fake.NewClientBuilder().WithScheme(scheme.New()).
		WithStatusSubresource(&v1alpha1.Promotion{}, &v1alpha1.Target{}, &v1alpha1.DeployTask{}).WithObjects(objs...).
		WithGlobalResourceVersionCounter() // one revision counter for all objects, as the API server has
	b = withFieldIndexes(b)
	ro := &rollout{t: t, now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), promo: client.ObjectKey{Namespace: "ns", Name: promotion}}
	if funcs == nil {
		funcs = &interceptor.Funcs{}
	}
	b = b.WithInterceptorFuncs(ro.stampingCreates(*funcs))
	ro.c = b.Build()
	ro.r = &PromotionReconciler{Client: ro.c, Recorder: record.NewFakeRecorder(100), Now: func() time.Time { return ro.now }}
	return ro
}

// stampingCreates gives each object created through funcs the creation
// time on the test's clock, as the API server does (the fake client
// leaves it zero, which would put every DeployTask's deadline in year 1).
func (ro *rollout) stampingCreates(funcs interceptor.Funcs) interceptor.Funcs {
	create := funcs.Create
	funcs.Create = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if created := obj.GetCreationTimestamp(); created.IsZero() {
			obj.SetCreationTimestamp(metav1.NewTime(ro.now))
		}
		if create != nil {
			return create(ctx, c, obj, opts...)
		}
		return c.Create(ctx, obj, opts...)
	}
	return funcs
}

// reconcile runs one reconcile and returns the promotion as stored.
func (ro *rollout) reconcile() (*v1alpha1.Promotion, ctrl.Result, error) {
	ro.t.Helper()
	res, err := ro.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: ro.promo})
	promo := &v1alpha1.Promotion{}
	if getErr := ro.c.Get(context.Background(), ro.promo, promo); getErr != nil {
		ro.t.Fatal(getErr)
	}
	return promo, res, err
}

func devTarget(name, agent string) *v1alpha1.Target {
	typ := v1alpha1.TargetTypeDocker
	if agent == "" {
		typ = v1alpha1.TargetTypeSSH
	}
	return &v1alpha1.Target{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{"env": "dev"}},
		Spec: v1alpha1.TargetSpec{Type: typ, Agent: agent}}
}

func ready(conds []metav1.Condition) metav1.Condition {
	if c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// A promotion into an environment that selects no targets waits, saying
// why, and goes on once a Target appears.
func TestPromotionWaitsForAFirstTarget(t *testing.T) {
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{}, nil)
	promo, res, err := ro.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	r := ready(promo.Status.Conditions)
	if promo.Status.Phase != v1alpha1.PromotionApproved || r.Reason != v1alpha1.ReasonNoTargets || !strings.Contains(r.Message, "environment dev selects none") {
		t.Fatalf("phase %s, Ready %s %q; want Approved, waiting with reason NoTargets", promo.Status.Phase, r.Reason, r.Message)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > defaultDeployTimeout+time.Second {
		t.Errorf("requeue after %s; want it back by the deploy timeout %s", res.RequeueAfter, defaultDeployTimeout)
	}

	ro.now = ro.now.Add(time.Minute)
	if err := ro.c.Create(context.Background(), devTarget("web", "")); err != nil {
		t.Fatal(err)
	}
	promo, _, err = ro.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	if promo.Status.Phase != v1alpha1.PromotionDeploying || len(promo.Status.Targets) != 1 {
		t.Fatalf("after a Target appeared: phase %s, targets %+v; want Deploying to web", promo.Status.Phase, promo.Status.Targets)
	}
	var tasks v1alpha1.DeployTaskList
	if err := ro.c.List(context.Background(), &tasks); err != nil || len(tasks.Items) != 1 {
		t.Fatalf("DeployTasks: %d, %v; want one", len(tasks.Items), err)
	}
}

// Without a Target within the deploy timeout, the promotion fails and says
// how to fix it; an environment that allows being empty succeeds at once.
func TestPromotionIntoAnEmptyEnvironmentEnds(t *testing.T) {
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{DeployTimeout: metav1.Duration{Duration: 5 * time.Minute}}, nil)
	if _, _, err := ro.reconcile(); err != nil {
		t.Fatal(err)
	}
	ro.now = ro.now.Add(5 * time.Minute)
	promo, _, err := ro.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	if r := ready(promo.Status.Conditions); promo.Status.Phase != v1alpha1.PromotionFailed || !strings.Contains(r.Message, "spec.allowEmpty") {
		t.Errorf("after the timeout: phase %s, Ready %q; want Failed naming spec.allowEmpty", promo.Status.Phase, r.Message)
	}

	empty := newRollout(t, "p2", v1alpha1.EnvironmentSpec{AllowEmpty: true}, nil)
	promo, _, err = empty.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	if promo.Status.Phase != v1alpha1.PromotionSucceeded {
		t.Errorf("with allowEmpty: phase %s, want Succeeded", promo.Status.Phase)
	}
}

// A promotion whose name is longer than a label value gets its DeployTask,
// with every label a valid value and the full name in the spec.
func TestLongPromotionNameGetsBoundedLabels(t *testing.T) {
	name := strings.Repeat("shop-api-", 11) + "to-dev" // 105 characters
	ro := newRollout(t, name, v1alpha1.EnvironmentSpec{}, nil, devTarget("web", "host-1"))
	promo, _, err := ro.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	if promo.Status.Phase != v1alpha1.PromotionDeploying {
		t.Fatalf("phase %s, want Deploying", promo.Status.Phase)
	}
	var tasks v1alpha1.DeployTaskList
	if err := ro.c.List(context.Background(), &tasks, client.MatchingLabels{v1alpha1.LabelPromotion: v1alpha1.LabelValue(name)}); err != nil || len(tasks.Items) != 1 {
		t.Fatalf("DeployTasks selected by the promotion label: %d, %v; want one", len(tasks.Items), err)
	}
	task := tasks.Items[0]
	for k, v := range task.Labels {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("label %s=%q: %v", k, v, errs)
		}
	}
	if task.Spec.Promotion != name || task.Labels[v1alpha1.LabelAgent] != "host-1" {
		t.Errorf("spec.promotion %q, agent label %q; want the full name and host-1", task.Spec.Promotion, task.Labels[v1alpha1.LabelAgent])
	}
}

// While deploying, the promotion's Ready names the agents it waits for
// that have not joined.
func TestDeployingNamesAbsentAgents(t *testing.T) {
	web := devTarget("web", "host-1")
	web.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonAgentNotJoined,
		Message: "agent host-1 has not joined", LastTransitionTime: metav1.Now()}}
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{}, nil, web, devTarget("db", "host-2"))
	promo, _, err := ro.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	r := ready(promo.Status.Conditions)
	if !strings.Contains(r.Message, "waiting for agent host-1 has not joined (target web)") || strings.Contains(r.Message, "host-2") {
		t.Errorf("Ready %q; want it to name agent host-1 of target web, and not host-2", r.Message)
	}
}

// An error that stops the rollout shows in Ready, not only in the log.
func TestBlockingErrorShowsInReady(t *testing.T) {
	refuse := &interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if _, ok := obj.(*v1alpha1.DeployTask); ok {
			return errors.New("admission refused the task")
		}
		return c.Create(ctx, obj, opts...)
	}}
	ro := newRollout(t, "p1", v1alpha1.EnvironmentSpec{}, refuse, devTarget("web", ""))
	promo, _, err := ro.reconcile()
	if err == nil {
		t.Fatal("the reconcile hid the error")
	}
	if r := ready(promo.Status.Conditions); r.Reason != v1alpha1.ReasonRetrying || !strings.Contains(r.Message, "admission refused the task") {
		t.Errorf("Ready %s %q; want Retrying with the error", r.Reason, r.Message)
	}
}

func TestAgentAbsence(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	agent := func(grace time.Duration, revoked bool) *v1alpha1.Agent {
		return &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Name: "host-1"}, Spec: v1alpha1.AgentSpec{HeartbeatGracePeriod: metav1.Duration{Duration: grace}, Revoked: revoked}}
	}
	for _, tc := range []struct {
		name    string
		agent   *v1alpha1.Agent
		last    time.Time
		reason  string
		message string
		recheck time.Duration
	}{
		{"no Agent", nil, time.Time{}, v1alpha1.ReasonAgentNotJoined, "agent host-1 has not joined: no Agent host-1 exists", 0},
		{"never reported", agent(0, false), time.Time{}, v1alpha1.ReasonAgentNotJoined, "agent host-1 has not joined: start stella-agent", 0},
		{"revoked", agent(0, true), now, v1alpha1.ReasonAgentRevoked, "agent host-1 is revoked", 0},
		{"within the default grace", agent(0, false), now.Add(-time.Minute), "", "", time.Minute + time.Second},
		{"within its own grace", agent(10*time.Second, false), now.Add(-4 * time.Second), "", "", 7 * time.Second},
		{"past its grace", agent(10*time.Second, false), now.Add(-10 * time.Second), v1alpha1.ReasonAgentNotSeen,
			"agent host-1 has not been seen since 2026-12-01T08:59:50Z (grace period 10s)", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := agentAbsence("host-1", tc.agent, tc.last, now)
			if got.reason != tc.reason || !strings.HasPrefix(got.message, tc.message) || got.recheck != tc.recheck {
				t.Errorf("agentAbsence = %+v; want reason %q, message starting %q, recheck %s", got, tc.reason, tc.message, tc.recheck)
			}
		})
	}
}

// The server marks the Targets of an absent agent Unknown, and leaves the
// Targets of a reporting agent, and those without an agent, alone.
func TestTargetReconcilerMarksAbsentAgents(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	inSync := []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "InSync", Message: "release shop-1 runs", LastTransitionTime: metav1.Now()}}
	live := devTarget("live", "host-live")
	live.Status.Conditions, live.Status.Drift = inSync, v1alpha1.DriftInSync
	b := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&v1alpha1.Target{}).WithObjects(
		devTarget("web", "host-1"), live, devTarget("ssh", ""),
		&v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "host-live"},
			Status: v1alpha1.AgentStatus{LastHeartbeat: &metav1.Time{Time: now.Add(-time.Minute)}}},
	)
	b = withFieldIndexes(b)
	c := b.Build()
	r := &TargetReconciler{Client: c, Now: func() time.Time { return now }}
	reconcile := func(name string) (*v1alpha1.Target, ctrl.Result) {
		t.Helper()
		res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: "ns", Name: name}})
		if err != nil {
			t.Fatal(err)
		}
		got := &v1alpha1.Target{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: name}, got); err != nil {
			t.Fatal(err)
		}
		return got, res
	}

	web, _ := reconcile("web")
	if rd := ready(web.Status.Conditions); rd.Status != metav1.ConditionUnknown || rd.Reason != v1alpha1.ReasonAgentNotJoined ||
		!strings.HasPrefix(rd.Message, "agent host-1 has not joined") || web.Status.Drift != v1alpha1.DriftUnknown {
		t.Errorf("web: Ready %s %s %q, drift %q; want Unknown AgentNotJoined and drift Unknown", rd.Status, rd.Reason, rd.Message, web.Status.Drift)
	}
	got, res := reconcile("live")
	if rd := ready(got.Status.Conditions); rd.Reason != "InSync" || res.RequeueAfter != time.Minute+time.Second {
		t.Errorf("live: Ready %s, requeue %s; want the agent's InSync kept and a look when its grace ends", rd.Reason, res.RequeueAfter)
	}
	if got, _ := reconcile("ssh"); len(got.Status.Conditions) != 0 {
		t.Errorf("ssh (no agent): conditions %+v; want none", got.Status.Conditions)
	}

	now = now.Add(2 * time.Minute)
	got, _ = reconcile("live")
	if rd := ready(got.Status.Conditions); rd.Status != metav1.ConditionUnknown || rd.Reason != v1alpha1.ReasonAgentNotSeen ||
		!strings.Contains(rd.Message, "agent host-live has not been seen since 2026-12-01T08:59:00Z") {
		t.Errorf("live after its grace: Ready %s %s %q; want Unknown AgentNotSeen", rd.Status, rd.Reason, rd.Message)
	}
}
