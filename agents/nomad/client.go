package nomad

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// jobClient talks to the Nomad API about one Target's job.
type jobClient struct {
	nomad *api.Client
	jobID string
	// where names the job and its cluster, for messages.
	where string
	// tokenRef names the token's Secret, for messages; nil without one.
	tokenRef *v1alpha1.SecretKeyReference
}

// client connects to the Target's Nomad cluster with its token. Nothing in
// the process's environment (NOMAD_ADDR, NOMAD_TOKEN) is used.
func (d *Driver) client(ctx context.Context, target *v1alpha1.Target) (*jobClient, error) {
	s := target.Spec.Nomad
	if s == nil {
		return nil, errors.New("the Target has no spec.nomad settings")
	}
	cfg := &api.Config{Address: s.Address, Namespace: s.Namespace, Region: s.Region}
	if s.TokenSecretRef != nil {
		token, err := agents.SecretKey(ctx, d.secrets, target.Namespace, *s.TokenSecretRef)
		if err != nil {
			return nil, fmt.Errorf("read the Nomad ACL token (Target spec.nomad.tokenSecretRef): %w", err)
		}
		cfg.SecretID = strings.TrimSpace(string(token))
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("the Nomad address %s (Target spec.nomad.address): %w", s.Address, err)
	}
	ns := s.Namespace
	if ns == "" {
		ns = "default"
	}
	return &jobClient{nomad: c, jobID: s.Job, where: fmt.Sprintf("job %s in namespace %s at %s", s.Job, ns, s.Address), tokenRef: s.TokenSecretRef}, nil
}

func (c *jobClient) query(ctx context.Context, waitIndex uint64) *api.QueryOptions {
	q := &api.QueryOptions{}
	if waitIndex > 0 {
		q.WaitIndex, q.WaitTime = waitIndex, blockFor
	}
	return q.WithContext(ctx)
}

func (c *jobClient) write(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

// job reads the Target's job; it must exist, since Stella pins an existing
// job's images rather than writing jobs.
func (c *jobClient) job(ctx context.Context) (*api.Job, error) {
	job, _, err := c.nomad.Jobs().Info(c.jobID, c.query(ctx, 0))
	if statusOf(err) == http.StatusNotFound {
		return nil, fmt.Errorf("the Nomad cluster has no %s (Target spec.nomad.job): register the job once with 'nomad job run'; Stella then pins its images to each release", c.where)
	}
	if err != nil {
		return nil, c.explain(fmt.Errorf("read %s: %w", c.where, err))
	}
	return job, nil
}

// explain adds the likely cause to an error Nomad returned.
func (c *jobClient) explain(err error) error {
	if statusOf(err) != http.StatusForbidden {
		return err
	}
	token := "no ACL token (Target spec.nomad.tokenSecretRef is unset)"
	if c.tokenRef != nil {
		token = fmt.Sprintf("the ACL token in Secret %s key %s (Target spec.nomad.tokenSecretRef)", c.tokenRef.Name, c.tokenRef.Key)
	}
	return fmt.Errorf("%w: Nomad refused %s; it needs a policy with read-job, submit-job and list-jobs on the job's namespace", err, token)
}

func statusOf(err error) int {
	var unexpected api.UnexpectedResponseError
	if errors.As(err, &unexpected) {
		return unexpected.StatusCode()
	}
	return 0
}

// follow waits for the deployment of the job version that a write at index
// made.
func (c *jobClient) follow(ctx context.Context, index uint64) error {
	job, _, err := c.nomad.Jobs().Info(c.jobID, c.query(ctx, 0))
	if err != nil {
		return c.explain(fmt.Errorf("read %s: %w", c.where, err))
	}
	if *job.JobModifyIndex < index {
		return fmt.Errorf("%s is older than the write at index %d", c.where, index)
	}
	return c.settle(ctx, job, index)
}

// settle waits until a job version runs: through its deployment, or, for a
// job whose update blocks disable deployments (max_parallel 0), until all
// its allocations run.
func (c *jobClient) settle(ctx context.Context, job *api.Job, index uint64) error {
	if slices.ContainsFunc(job.TaskGroups, func(g *api.TaskGroup) bool {
		return g.Update != nil && g.Update.MaxParallel != nil && *g.Update.MaxParallel > 0
	}) {
		return c.waitDeployment(ctx, *job.Version, index)
	}
	return c.waitAllocations(ctx, job, index)
}

// waitAllocations follows a job version's allocations with blocking
// queries until as many as its groups count have run for their group's
// min_healthy_time without a restart, or one fails. Without deployments
// Nomad judges no health, so this is the judgement a deployment with
// health_check "task_states" would make: a task that crashes right after it
// starts is running for a moment, and must not pass for a release that runs.
func (c *jobClient) waitAllocations(ctx context.Context, job *api.Job, index uint64) error {
	want := 0
	minHealthy := map[string]time.Duration{}
	for _, g := range job.TaskGroups {
		if g.Count != nil {
			want += *g.Count
		}
		minHealthy[*g.Name] = defaultMinHealthyTime
		if g.Update != nil && g.Update.MinHealthyTime != nil {
			minHealthy[*g.Name] = *g.Update.MinHealthyTime
		}
	}
	wait := blockFor
	for {
		q := c.query(ctx, index)
		q.WaitTime = wait
		allocs, meta, err := c.nomad.Jobs().Allocations(c.jobID, false, q)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("the allocations of version %d of %s did not all run in time: %w", *job.Version, c.where, context.Cause(ctx))
			}
			return c.explain(fmt.Errorf("follow the allocations of %s: %w", c.where, err))
		}
		index = max(index, meta.LastIndex)
		healthy := 0
		wait = blockFor
		for _, a := range allocs {
			if a.JobVersion != *job.Version {
				continue
			}
			if a.ClientStatus == api.AllocClientStatusFailed || restarted(a) {
				return fmt.Errorf("an allocation of version %d of %s failed%s", *job.Version, c.where, c.taskFailure(ctx, *job.Version))
			}
			if a.ClientStatus != api.AllocClientStatusRunning {
				continue
			}
			switch left := healthyIn(a, minHealthy[a.TaskGroup], time.Now()); {
			case left <= 0:
				healthy++
			case left < wait:
				wait = left // no write will wake the query when it is due
			}
		}
		if healthy >= want {
			return nil
		}
	}
}

// taskRunning is the State of a task that runs; the api package names no
// constant for it.
const taskRunning = "running"

// defaultMinHealthyTime is Nomad's default for an update block's
// min_healthy_time.
const defaultMinHealthyTime = 10 * time.Second

// restarted tells whether a task of the allocation failed or was restarted.
func restarted(a *api.AllocationListStub) bool {
	for _, s := range a.TaskStates {
		if s.Failed || s.Restarts > 0 {
			return true
		}
	}
	return false
}

// healthyIn is how long until every task of the allocation has been running
// for minHealthy; a task that does not run yet keeps it at minHealthy.
func healthyIn(a *api.AllocationListStub, minHealthy time.Duration, now time.Time) time.Duration {
	left := time.Duration(0)
	for _, s := range a.TaskStates {
		if s.State != taskRunning {
			return minHealthy
		}
		left = max(left, s.StartedAt.Add(minHealthy).Sub(now))
	}
	if len(a.TaskStates) == 0 {
		return minHealthy
	}
	return left
}

// waitDeployment follows the deployment of a job version with blocking
// queries until it succeeds or fails, promoting its canaries once they are
// healthy: whether to go on is decided by the promotion, not by hand.
func (c *jobClient) waitDeployment(ctx context.Context, version, index uint64) error {
	for {
		deployments, meta, err := c.nomad.Jobs().Deployments(c.jobID, true, c.query(ctx, index))
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("the deployment of version %d of %s did not finish in time: %w", version, c.where, context.Cause(ctx))
			}
			return c.explain(fmt.Errorf("follow the deployments of %s: %w", c.where, err))
		}
		index = max(index, meta.LastIndex)
		i := slices.IndexFunc(deployments, func(d *api.Deployment) bool { return d.JobVersion == version })
		if i < 0 {
			continue // not created yet
		}
		d := deployments[i]
		switch d.Status {
		case api.DeploymentStatusSuccessful:
			return nil
		case api.DeploymentStatusFailed, api.DeploymentStatusCancelled:
			return fmt.Errorf("the Nomad deployment %s of version %d of %s %s: %s%s", shortID(d.ID), version, c.where, d.Status, d.StatusDescription, c.taskFailure(ctx, version))
		}
		if canariesHealthy(d) {
			if _, _, err := c.nomad.Deployments().PromoteAll(d.ID, c.write(ctx)); err != nil {
				return c.explain(fmt.Errorf("promote the healthy canaries of deployment %s: %w", shortID(d.ID), err))
			}
		}
	}
}

// taskFailure is why a task of the version failed, as Nomad's task events
// tell it, or empty when they do not.
func (c *jobClient) taskFailure(ctx context.Context, version uint64) string {
	allocs, _, err := c.nomad.Jobs().Allocations(c.jobID, true, c.query(ctx, 0))
	if err != nil {
		return ""
	}
	for _, a := range allocs {
		if a.JobVersion != version {
			continue
		}
		for _, task := range slices.Sorted(maps.Keys(a.TaskStates)) {
			for _, e := range a.TaskStates[task].Events {
				if e.FailsTask || e.Type == api.TaskDriverFailure || e.Type == api.TaskFailedValidation || e.Type == api.TaskTerminated {
					return fmt.Sprintf(" (task %s of allocation %s: %s: %s)", task, shortID(a.ID), e.Type, e.DisplayMessage)
				}
			}
		}
	}
	return ""
}

// canariesHealthy says whether a deployment waits for the promotion of
// canaries that are all placed and healthy.
func canariesHealthy(d *api.Deployment) bool {
	waiting := false
	for _, g := range d.TaskGroups {
		if g.DesiredCanaries == 0 || g.Promoted {
			continue
		}
		if g.HealthyAllocs < g.DesiredCanaries {
			return false
		}
		waiting = true
	}
	return waiting
}

// deployedSticker is the sticker of the job version Stella registered
// last: the current version's, or, when someone registered the job since,
// the newest version that carries one.
func (c *jobClient) deployedSticker(ctx context.Context, job *api.Job) (*v1alpha1.VersionSticker, error) {
	if _, ok := job.Meta[agents.LabelSticker]; ok {
		return stickerOf(job)
	}
	versions, _, _, err := c.nomad.Jobs().Versions(c.jobID, false, c.query(ctx, 0))
	if err != nil {
		return nil, c.explain(fmt.Errorf("list the versions of %s: %w", c.where, err))
	}
	for _, v := range versions {
		if _, ok := v.Meta[agents.LabelSticker]; ok {
			return stickerOf(v)
		}
	}
	return nil, nil
}

// running reads what the job's live allocations run, by component: for
// each, the allocation that differs from the deployed release if any does,
// so that drift on one allocation is seen.
func (c *jobClient) running(ctx context.Context, job *api.Job, deployed *v1alpha1.VersionSticker) ([]agents.ObservedComponent, error) {
	allocs, _, err := c.nomad.Jobs().Allocations(c.jobID, false, c.query(ctx, 0))
	if err != nil {
		return nil, c.explain(fmt.Errorf("list the allocations of %s: %w", c.where, err))
	}
	versions := map[uint64]*api.Job{*job.Version: job}
	want := map[string]string{}
	var order []string
	if deployed != nil {
		for _, comp := range deployed.Components {
			want[comp.Name] = string(comp.Image)
			order = append(order, comp.Name)
		}
	}
	seen := map[string]agents.ObservedComponent{}
	for _, a := range allocs {
		// An allocation Nomad is stopping, replaced or rolled back, no
		// longer says what the job runs.
		if a.DesiredStatus != api.AllocDesiredStatusRun || (a.ClientStatus != api.AllocClientStatusRunning && a.ClientStatus != api.AllocClientStatusPending) {
			continue
		}
		spec, err := c.version(ctx, versions, a.JobVersion)
		if err != nil {
			return nil, err
		}
		for _, t := range tasksOf(spec, a.TaskGroup) {
			if t.Driver != "docker" {
				continue
			}
			observed := observeTask(spec, a, t)
			if prev, ok := seen[t.Name]; ok && (string(prev.Image) != want[t.Name] || string(observed.Image) == want[t.Name]) {
				continue // keep the first that differs
			}
			seen[t.Name] = observed
			if !slices.Contains(order, t.Name) {
				order = append(order, t.Name)
			}
		}
	}
	var out []agents.ObservedComponent
	for _, name := range order {
		if o, ok := seen[name]; ok {
			out = append(out, o)
		}
	}
	return out, nil
}

// version is a version of the job, read once per observation.
func (c *jobClient) version(ctx context.Context, versions map[uint64]*api.Job, v uint64) (*api.Job, error) {
	if job, ok := versions[v]; ok {
		return job, nil
	}
	all, _, _, err := c.nomad.Jobs().Versions(c.jobID, false, c.query(ctx, 0))
	if err != nil {
		return nil, c.explain(fmt.Errorf("list the versions of %s: %w", c.where, err))
	}
	for _, job := range all {
		versions[*job.Version] = job
	}
	if job, ok := versions[v]; ok {
		return job, nil
	}
	return nil, fmt.Errorf("an allocation of %s runs version %d, which Nomad no longer keeps", c.where, v)
}

func tasksOf(job *api.Job, group string) []*api.Task {
	for _, g := range job.TaskGroups {
		if g.Name != nil && *g.Name == group {
			return g.Tasks
		}
	}
	return nil
}

// observeTask is one task of one allocation as it runs.
func observeTask(spec *api.Job, a *api.AllocationListStub, t *api.Task) agents.ObservedComponent {
	o := agents.ObservedComponent{Name: t.Name, Image: digestRef(imageOf(t)), Health: v1alpha1.HealthUnknown}
	if s, _ := stickerOf(spec); s != nil {
		o.Release, o.Promotion = s.Release, s.Promotion
	}
	state := a.TaskStates[t.Name]
	o.Running = state != nil && state.State == "running"
	switch {
	case !o.Running:
		o.Health, o.Problem = v1alpha1.HealthDegraded, fmt.Sprintf("task %s of allocation %s is not running (%s)", t.Name, shortID(a.ID), a.ClientStatus)
	case a.DeploymentStatus != nil && a.DeploymentStatus.Healthy != nil && !*a.DeploymentStatus.Healthy:
		o.Health, o.Problem = v1alpha1.HealthDegraded, fmt.Sprintf("allocation %s is unhealthy", shortID(a.ID))
	default:
		o.Health = v1alpha1.HealthHealthy
	}
	return o
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
