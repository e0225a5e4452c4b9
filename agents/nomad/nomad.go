// Package nomad deploys releases as new versions of an existing Nomad
// service job: each docker task named after a release component gets the
// component's image by digest, and the job's Meta carries the version
// sticker. Nomad's own deployments do the rollout the job's update block
// asks for (canaries, auto_revert); a rollback reverts the job to the
// version that carried the previous sticker.
package nomad

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// blockFor is how long one blocking query waits for a change.
const blockFor = 5 * time.Second

// Driver deploys to Nomad jobs.
type Driver struct {
	secrets agents.SecretReader
}

var _ agents.Driver = &Driver{}

// New returns a driver that reads ACL tokens with secrets.
func New(secrets agents.SecretReader) *Driver {
	return &Driver{secrets: secrets}
}

// Observe reads the job's sticker and the images its running allocations
// run.
func (d *Driver) Observe(ctx context.Context, target *v1alpha1.Target) (agents.Observed, error) {
	c, job, err := d.current(ctx, target)
	if err != nil {
		return agents.Observed{}, err
	}
	deployed, err := c.deployedSticker(ctx, job)
	if err != nil {
		return agents.Observed{}, err
	}
	o := agents.Observed{Deployed: deployed}
	components, err := c.running(ctx, job, deployed)
	if err != nil {
		return agents.Observed{}, err
	}
	o.Components = components
	return o, nil
}

// current connects to the Target's Nomad and reads its job.
func (d *Driver) current(ctx context.Context, target *v1alpha1.Target) (*jobClient, *api.Job, error) {
	c, err := d.client(ctx, target)
	if err != nil {
		return nil, nil, err
	}
	job, err := c.job(ctx)
	if err != nil {
		return nil, nil, err
	}
	return c, job, nil
}

// Apply registers a version of the job pinned to desired and waits for its
// deployment. When the job already runs desired, nothing is registered.
func (d *Driver) Apply(ctx context.Context, target *v1alpha1.Target, desired agents.Desired) error {
	c, job, err := d.current(ctx, target)
	if err != nil {
		return err
	}
	pinned, err := pin(job, target, desired)
	if err != nil {
		return err
	}
	if runsAlready(job, desired) {
		// Registered before, perhaps by a run that stopped: follow it.
		return c.settle(ctx, job, *job.JobModifyIndex)
	}
	resp, _, err := c.nomad.Jobs().RegisterOpts(pinned, &api.RegisterOptions{EnforceIndex: true, ModifyIndex: *job.JobModifyIndex}, c.write(ctx))
	if err != nil {
		return c.explain(fmt.Errorf("register job %s pinned to release %s: %w", c.jobID, desired.Release, err))
	}
	return c.follow(ctx, resp.JobModifyIndex)
}

// Rollback reverts the job to its newest version that carried previous's
// sticker, so that Nomad runs exactly what ran then; when Nomad no longer
// keeps that version, previous is registered again.
func (d *Driver) Rollback(ctx context.Context, target *v1alpha1.Target, previous agents.Desired) error {
	c, job, err := d.current(ctx, target)
	if err != nil {
		return err
	}
	if runsAlready(job, previous) {
		// Nomad's auto_revert may have put it back already: wait for that.
		return c.settle(ctx, job, *job.JobModifyIndex)
	}
	versions, _, _, err := c.nomad.Jobs().Versions(c.jobID, false, c.query(ctx, 0))
	if err != nil {
		return c.explain(fmt.Errorf("list the versions of job %s: %w", c.jobID, err))
	}
	for _, v := range versions { // newest first
		if s, _ := stickerOf(v); s != nil && sameRelease(s, previous) {
			resp, _, err := c.nomad.Jobs().Revert(c.jobID, *v.Version, job.Version, c.write(ctx), "", "")
			if err != nil {
				return c.explain(fmt.Errorf("revert job %s to version %d (release %s): %w", c.jobID, *v.Version, previous.Release, err))
			}
			return c.follow(ctx, resp.JobModifyIndex)
		}
	}
	return d.Apply(ctx, target, previous)
}

// pin is job with each component's tasks running its digest, the sticker
// labels on their containers, and the sticker in the job's Meta. Every
// docker task must be a component and every component a task, so that
// nothing runs unpinned.
func pin(job *api.Job, target *v1alpha1.Target, desired agents.Desired) (*api.Job, error) {
	if job.Type != nil && *job.Type != api.JobTypeService {
		return nil, fmt.Errorf("job %s is a %s job: Stella deploys service jobs", *job.ID, *job.Type)
	}
	images := map[string]v1alpha1.ImageDigestRef{}
	for _, c := range desired.Components {
		images[c.Name] = c.Image
	}
	pinned := *job
	pinned.TaskGroups = make([]*api.TaskGroup, len(job.TaskGroups))
	found := map[string]bool{}
	for i, g := range job.TaskGroups {
		group := *g
		group.Tasks = make([]*api.Task, len(g.Tasks))
		for j, t := range g.Tasks {
			task := *t
			group.Tasks[j] = &task
			if task.Driver != "docker" {
				continue
			}
			image, ok := images[task.Name]
			if !ok {
				return nil, fmt.Errorf("task %s of job %s is not a component of release %s, so it would run unpinned: name the task after a component, or add it to the release", task.Name, *job.ID, desired.Release)
			}
			found[task.Name] = true
			task.Config = copyMap(t.Config)
			task.Config["image"] = string(image)
			// The docker driver takes labels as a list of maps (HCL's
			// block form); the job's own labels are kept.
			labels := map[string]any{}
			if existing, ok := task.Config["labels"].([]any); ok {
				for _, l := range existing {
					if m, ok := l.(map[string]any); ok {
						maps.Copy(labels, m)
					}
				}
			}
			for k, v := range agents.Labels(target, desired, v1alpha1.ComponentDigest{Name: task.Name, Image: image}) {
				labels[k] = v
			}
			task.Config["labels"] = []any{labels}
		}
		pinned.TaskGroups[i] = &group
	}
	for _, c := range desired.Components {
		if !found[c.Name] {
			return nil, fmt.Errorf("component %s of release %s has no docker task in job %s: add a task named %s", c.Name, desired.Release, *job.ID, c.Name)
		}
	}
	sticker, err := agents.MarshalSticker(target, desired.Sticker(time.Now()))
	if err != nil {
		return nil, err
	}
	pinned.Meta = maps.Clone(job.Meta)
	if pinned.Meta == nil {
		pinned.Meta = map[string]string{}
	}
	pinned.Meta[agents.LabelSticker] = string(sticker)
	pinned.Meta[agents.LabelRelease] = desired.Release
	return &pinned, nil
}

// stickerOf is the sticker in a job version's Meta, nil when Stella did not
// register that version.
func stickerOf(job *api.Job) (*v1alpha1.VersionSticker, error) {
	data, ok := job.Meta[agents.LabelSticker]
	if !ok {
		return nil, nil
	}
	s, err := agents.UnmarshalSticker([]byte(data))
	if err != nil {
		return nil, fmt.Errorf("the job's Meta %s does not parse: %w", agents.LabelSticker, err)
	}
	return s, nil
}

// sameRelease says whether a sticker records the release d, by digest.
func sameRelease(s *v1alpha1.VersionSticker, d agents.Desired) bool {
	return s.Release == d.Release && slices.Equal(s.Components, d.Components)
}

// runsAlready says whether a job version is d as Stella registered it: its
// sticker records d and every component's tasks name d's digest.
func runsAlready(job *api.Job, d agents.Desired) bool {
	if s, _ := stickerOf(job); s == nil || !sameRelease(s, d) {
		return false
	}
	for _, c := range d.Components {
		for _, g := range job.TaskGroups {
			for _, t := range g.Tasks {
				if t.Name == c.Name && imageOf(t) != string(c.Image) {
					return false
				}
			}
		}
	}
	return true
}

func copyMap(m map[string]any) map[string]any {
	return maps.Clone(m)
}

// imageOf is the image a docker task's config names.
func imageOf(t *api.Task) string {
	image, _ := t.Config["image"].(string)
	return image
}

// digestRef is image when it is pinned by digest, else empty.
func digestRef(image string) v1alpha1.ImageDigestRef {
	if strings.Contains(image, "@sha256:") {
		return v1alpha1.ImageDigestRef(image)
	}
	return ""
}
