package nomad

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/agents/agentstest"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/images"
	testnomad "github.com/stella-ops/stella/test/nomad"
)

// These tests run a real Nomad v1.6.0 dev agent (built by hack/nomad/build)
// with ACLs on, whose client runs the tasks on this machine's Docker engine.

type fixture struct {
	agent  *testnomad.Agent
	driver *Driver
	target *v1alpha1.Target
	refs   map[string]string
	tokens map[string]string
}

func setUp(t *testing.T) *fixture {
	t.Helper()
	agent := testnomad.Start(t)
	_, refs, _ := images.SetUp(t, "shop/nomad")
	f := &fixture{agent: agent, refs: refs, tokens: map[string]string{"admin": agent.Token}}
	f.driver = New(func(_ context.Context, _, name string) (map[string][]byte, error) {
		if token, ok := f.tokens[name]; ok {
			return map[string][]byte{"token": []byte(token + "\n")}, nil
		}
		return nil, errors.New("no such secret")
	})
	f.target = &v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cluster"},
		Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeNomad, Nomad: &v1alpha1.NomadTarget{
			Address: agent.Address, Job: "shop", TokenSecretRef: &v1alpha1.SecretKeyReference{Name: "admin", Key: "token"},
		}},
	}
	registerJob(t, agent.Client, refs["v1"][:strings.LastIndexByte(refs["v1"], '@')]+":v1", nil)
	t.Cleanup(func() {
		if t.Failed() {
			logTaskEvents(t, agent.Client)
		}
		agent.StopJob(t, "shop")
	})
	return f
}

// registerJob registers the job shop as its owners would, with nomad job
// run, with meta.
func registerJob(t *testing.T, c *api.Client, image string, meta map[string]string) {
	t.Helper()
	job := testnomad.Job("shop", image, 0)
	job.Meta = meta
	if _, _, err := c.Jobs().Register(job, nil); err != nil {
		t.Fatalf("register job shop: %v", err)
	}
}

// logTaskEvents logs what happened to each allocation's tasks, to explain
// a failure.
func logTaskEvents(t *testing.T, c *api.Client) {
	allocs, _, err := c.Jobs().Allocations("shop", true, nil)
	if err != nil {
		t.Logf("list allocations: %v", err)
		return
	}
	for _, a := range allocs {
		for task, state := range a.TaskStates {
			for _, e := range state.Events {
				t.Logf("allocation %s (version %d) task %s: %s %s", a.ID[:8], a.JobVersion, task, e.Type, e.DisplayMessage)
			}
		}
	}
}

func currentJob(t *testing.T, c *api.Client) *api.Job {
	t.Helper()
	job, _, err := c.Jobs().Info("shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

func TestNomadRollsOutAutoRevertsRollsBackAndSeesDrift(t *testing.T) {
	f := setUp(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.refs, "v1")); err != nil {
		t.Fatalf("apply v1: %v", err)
	}
	job := currentJob(t, f.agent.Client)
	if job.Meta[agents.LabelRelease] != "shop-v1" || !strings.Contains(job.Meta[agents.LabelSticker], agentstest.DigestOf(f.refs["v1"])) {
		t.Fatalf("the job's Meta after v1: %v", job.Meta)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Health != v1alpha1.HealthHealthy || a.Running.Release != "shop-v1" {
		t.Fatalf("after v1: %+v", a)
	}
	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.refs, "v1")); err != nil {
		t.Fatalf("apply v1 again: %v", err)
	}
	if again := currentJob(t, f.agent.Client); *again.Version != *job.Version {
		t.Fatalf("applying v1 again registered version %d", *again.Version)
	}

	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.refs, "v2")); err != nil {
		t.Fatalf("apply v2: %v", err)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Running.Release != "shop-v2" {
		t.Fatalf("after v2: %+v", a)
	}

	err := f.driver.Apply(ctx, f.target, agentstest.Release(f.refs, "crash"))
	if err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("apply of a release that crashes: %v, want Nomad's deployment failure", err)
	}
	t.Logf("the failed deployment: %v", err)
	if err := f.driver.Rollback(ctx, f.target, agentstest.Release(f.refs, "v2")); err != nil {
		t.Fatalf("rollback to v2 after Nomad's auto-revert: %v", err)
	}
	if job := currentJob(t, f.agent.Client); job.Meta[agents.LabelRelease] != "shop-v2" {
		t.Fatalf("after the failed release the job carries %q, want shop-v2 put back by auto_revert", job.Meta[agents.LabelRelease])
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Running.Release != "shop-v2" {
		t.Fatalf("after the failed release: %+v", a)
	}

	before := *currentJob(t, f.agent.Client).Version
	if err := f.driver.Rollback(ctx, f.target, agentstest.Release(f.refs, "v1")); err != nil {
		t.Fatalf("rollback to v1: %v", err)
	}
	job = currentJob(t, f.agent.Client)
	if job.Meta[agents.LabelRelease] != "shop-v1" || *job.Version <= before {
		t.Fatalf("after the rollback to v1 the job is version %d carrying %q", *job.Version, job.Meta[agents.LabelRelease])
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Running.Release != "shop-v1" {
		t.Fatalf("after the rollback to v1: %+v", a)
	}

	// Someone runs their own job file with v2, without Stella's Meta.
	registerJob(t, f.agent.Client, f.refs["v2"], nil)
	deadline := time.Now().Add(time.Minute)
	for {
		a := agentstest.Assess(t, f.driver, f.target)
		if a.Drift == v1alpha1.DriftDrifted && strings.Contains(a.Message, agentstest.DigestOf(f.refs["v2"])) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a job run by hand: %+v, want Drifted naming the v2 digest", a)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestNomadRefusesBadTargetsAndChangesNothing(t *testing.T) {
	f := setUp(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	version := *currentJob(t, f.agent.Client).Version

	missing := f.target.DeepCopy()
	missing.Spec.Nomad.Job = "no-such-job"
	if err := f.driver.Apply(ctx, missing, agentstest.Release(f.refs, "v1")); err == nil || !strings.Contains(err.Error(), "the Nomad cluster has no job no-such-job") {
		t.Fatalf("a missing job: %v", err)
	}

	f.tokens["reader"] = f.agent.ReadOnlyToken(t)
	reader := f.target.DeepCopy()
	reader.Spec.Nomad.TokenSecretRef.Name = "reader"
	err := f.driver.Apply(ctx, reader, agentstest.Release(f.refs, "v1"))
	if err == nil || !strings.Contains(err.Error(), "Nomad refused the ACL token in Secret reader") {
		t.Fatalf("a token that may not submit jobs: %v", err)
	}

	noToken := f.target.DeepCopy()
	noToken.Spec.Nomad.TokenSecretRef = nil
	if _, err := f.driver.Observe(ctx, noToken); err == nil || !strings.Contains(err.Error(), "spec.nomad.tokenSecretRef is unset") {
		t.Fatalf("no token: %v", err)
	}

	otherTask := agentstest.Release(f.refs, "v1")
	otherTask.Components[0].Name = "worker"
	if err := f.driver.Apply(ctx, f.target, otherTask); err == nil || !strings.Contains(err.Error(), "task api of job shop is not a component") {
		t.Fatalf("a job task that is not a component: %v", err)
	}
	if now := *currentJob(t, f.agent.Client).Version; now != version {
		t.Fatalf("refused deployments registered version %d", now)
	}
}

func TestNomadWithoutDeploymentsWaitsForTheAllocations(t *testing.T) {
	f := setUp(t)
	job := testnomad.Job("shop", f.refs["v1"], 0)
	job.TaskGroups[0].Update.MaxParallel = ptr.To(0) // no deployments
	if _, _, err := f.agent.Client.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.refs, "v2")); err != nil {
		t.Fatalf("apply v2 to a job without deployments: %v", err)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Running.Release != "shop-v2" {
		t.Fatalf("after v2: %+v", a)
	}
	err := f.driver.Apply(ctx, f.target, agentstest.Release(f.refs, "crash"))
	if err == nil || !strings.Contains(err.Error(), "exited with non-zero exit code") {
		t.Fatalf("apply of a release that crashes, without deployments: %v", err)
	}
}
