// Package docker deploys releases to a Docker Engine: one container per
// component, replaced one at a time, the new one started and found healthy
// before the old one is stopped.
package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// stopTimeout is how long a replaced container gets to stop before it is
// killed.
const stopTimeout = 10

// pollInterval is how often a starting container is inspected.
const pollInterval = 100 * time.Millisecond

// Driver deploys to the Docker Engine its client talks to.
type Driver struct {
	docker *client.Client
	// host is the machine of that engine, where the stickers are kept.
	host agents.Host
	// keychain finds registry credentials, by default in the Docker config
	// of the user running the agent.
	keychain authn.Keychain
	stateDir string
}

var _ agents.Driver = &Driver{}

// New returns a driver over a Docker client, keeping version stickers on
// host under stateDir unless a Target says where.
func New(docker *client.Client, host agents.Host, stateDir string) *Driver {
	return &Driver{docker: docker, host: host, keychain: authn.DefaultKeychain, stateDir: stateDir}
}

// Observe inspects the container of every component the target was last
// deployed with, and of every component its template names.
func (d *Driver) Observe(ctx context.Context, target *v1alpha1.Target) (agents.Observed, error) {
	deployed, err := agents.ReadSticker(ctx, d.host, agents.StickerPath(target, d.stateDir))
	if err != nil {
		return agents.Observed{}, err
	}
	o := agents.Observed{Deployed: deployed}
	var names []string
	if deployed != nil {
		for _, c := range deployed.Components {
			names = append(names, c.Name)
		}
	}
	for _, t := range target.Spec.Components {
		if !slices.Contains(names, t.Name) {
			names = append(names, t.Name)
		}
	}
	for _, component := range names {
		c, err := ObserveContainer(ctx, d.docker, containerName(target, templateOf(target, component)), component)
		if err != nil {
			return agents.Observed{}, err
		}
		if c != nil {
			o.Components = append(o.Components, *c)
		}
	}
	return o, nil
}

// ObserveContainer reads the container of a component, nil when there is
// none.
func ObserveContainer(ctx context.Context, docker *client.Client, containerName, component string) (*agents.ObservedComponent, error) {
	res, err := docker.ContainerInspect(ctx, containerName, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inspect container %s: %w", containerName, err)
	}
	ctr := res.Container
	c := &agents.ObservedComponent{Name: component, Health: v1alpha1.HealthUnknown}
	if ctr.Config != nil {
		c.Release, c.Promotion = ctr.Config.Labels[agents.LabelRelease], ctr.Config.Labels[v1alpha1.LabelPromotion]
	}
	img, err := docker.ImageInspect(ctx, ctr.Image)
	switch {
	case cerrdefs.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("inspect the image of container %s: %w", containerName, err)
	default:
		c.Image = runningImage(img.RepoDigests, ctr.Config)
	}
	if ctr.State == nil {
		return c, nil
	}
	c.Running = ctr.State.Running
	switch {
	case !ctr.State.Running:
		c.Health, c.Problem = v1alpha1.HealthDegraded, fmt.Sprintf("container %s is %s (exit code %d)", containerName, ctr.State.Status, ctr.State.ExitCode)
	case ctr.State.Health == nil:
		c.Health = v1alpha1.HealthHealthy
	case ctr.State.Health.Status == container.Healthy:
		c.Health = v1alpha1.HealthHealthy
	case ctr.State.Health.Status == container.Unhealthy:
		c.Health, c.Problem = v1alpha1.HealthDegraded, fmt.Sprintf("container %s is unhealthy: %s", containerName, lastCheck(ctr.State.Health))
	}
	return c, nil
}

// runningImage is the repository@digest of a container's image: the one
// of its image's repository digests that the container was created with,
// else the first.
func runningImage(repoDigests []string, cfg *container.Config) v1alpha1.ImageDigestRef {
	if len(repoDigests) == 0 {
		return ""
	}
	if cfg != nil {
		for _, rd := range repoDigests {
			if rd == cfg.Image {
				return v1alpha1.ImageDigestRef(rd)
			}
		}
	}
	return v1alpha1.ImageDigestRef(repoDigests[0])
}

// Apply replaces the container of each component that does not run its
// desired digest and template, one at a time, then writes the sticker.
func (d *Driver) Apply(ctx context.Context, target *v1alpha1.Target, desired agents.Desired) error {
	specs := make([]spec, 0, len(desired.Components))
	for _, c := range desired.Components {
		s, err := specOf(target, templateOf(target, c.Name), c, desired)
		if err != nil {
			return err
		}
		specs = append(specs, s)
	}
	if _, err := d.docker.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("reach the Docker daemon: %w", err)
	}
	for i, s := range specs {
		if err := d.replace(ctx, desired.Components[i], s); err != nil {
			return fmt.Errorf("component %s: %w", desired.Components[i].Name, err)
		}
	}
	return Succeeded(ctx, d.docker, d.host, target, agents.StickerPath(target, d.stateDir), desired)
}

// Rollback applies a release the target ran before. Its images are still
// on the host unless someone removed them, in which case they are pulled.
func (d *Driver) Rollback(ctx context.Context, target *v1alpha1.Target, previous agents.Desired) error {
	return d.Apply(ctx, target, previous)
}

// replace starts the new container next to the old one under a temporary
// name, and only once it is healthy stops and removes the old one and
// takes over its name. When the new one fails it is removed and the old
// one keeps running.
func (d *Driver) replace(ctx context.Context, c v1alpha1.ComponentDigest, s spec) error {
	current, err := d.docker.ContainerInspect(ctx, s.name, client.ContainerInspectOptions{})
	switch {
	case cerrdefs.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("inspect container %s: %w", s.name, err)
	case runsAlready(current.Container, s):
		return nil
	}
	if err := Pull(ctx, d.docker, d.keychain, string(c.Image)); err != nil {
		return err
	}
	next := s.name + "-next"
	if err := d.remove(ctx, next); err != nil {
		return err
	}
	created, err := d.docker.ContainerCreate(ctx, client.ContainerCreateOptions{Name: next, Config: s.config, HostConfig: s.host, NetworkingConfig: s.networking})
	if err != nil {
		return fmt.Errorf("create container %s: %w", next, err)
	}
	if err := d.start(ctx, created.ID, s.name, s.runningFor); err != nil {
		// The new container goes, even when the deadline that failed the
		// start has passed; the old one, if any, was not touched.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rmErr := d.remove(cleanup, created.ID); rmErr != nil {
			return errors.Join(err, rmErr)
		}
		if current.Container.ID != "" {
			return fmt.Errorf("%w; the old container keeps running", err)
		}
		return err
	}
	if current.Container.ID != "" {
		timeout := stopTimeout
		if _, err := d.docker.ContainerStop(ctx, current.Container.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("stop the old container %s: %w", s.name, err)
		}
		if err := d.remove(ctx, current.Container.ID); err != nil {
			return err
		}
	}
	if _, err := d.docker.ContainerRename(ctx, created.ID, client.ContainerRenameOptions{NewName: s.name}); err != nil {
		return fmt.Errorf("rename container %s to %s: %w", next, s.name, err)
	}
	return nil
}

// runsAlready says whether a container is running the desired image with
// the desired template, so that applying again changes nothing.
func runsAlready(ctr container.InspectResponse, s spec) bool {
	if ctr.Config == nil || ctr.State == nil || !ctr.State.Running {
		return false
	}
	labels := ctr.Config.Labels
	return labels[agents.LabelDigest] == s.config.Labels[agents.LabelDigest] && labels[agents.LabelConfig] == s.config.Labels[agents.LabelConfig]
}

// Pull fetches an image by digest unless the host has it, with the
// credentials the keychain has for its registry.
func Pull(ctx context.Context, docker *client.Client, keychain authn.Keychain, ref string) error {
	if _, err := docker.ImageInspect(ctx, ref); err == nil {
		return nil
	}
	auth, err := registryAuth(keychain, ref)
	if err != nil {
		return err
	}
	resp, err := docker.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: auth})
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := resp.Wait(ctx); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

// registryAuth encodes the credentials the keychain has for ref's registry,
// as the Engine API wants them; empty for anonymous access.
func registryAuth(keychain authn.Keychain, ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", ref, err)
	}
	authenticator, err := keychain.Resolve(r.Context())
	if err != nil {
		return "", fmt.Errorf("find credentials for %s: %w", r.Context().RegistryStr(), err)
	}
	if authenticator == authn.Anonymous {
		return "", nil
	}
	cfg, err := authenticator.Authorization()
	if err != nil {
		return "", fmt.Errorf("find credentials for %s: %w", r.Context().RegistryStr(), err)
	}
	data, err := json.Marshal(registry.AuthConfig{
		Username: cfg.Username, Password: cfg.Password, Auth: cfg.Auth, ServerAddress: r.Context().RegistryStr(),
		IdentityToken: cfg.IdentityToken, RegistryToken: cfg.RegistryToken,
	})
	if err != nil {
		return "", err
	}
	return base64.URLEncoding.EncodeToString(data), nil
}

// start runs a created container and waits until it is healthy.
func (d *Driver) start(ctx context.Context, id, name string, runningFor time.Duration) error {
	if _, err := d.docker.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", name, err)
	}
	return WaitHealthy(ctx, d.docker, id, runningFor)
}

// WaitHealthy waits until a started container is healthy: its health check
// passes, or, when it has none, it kept running for runningFor.
func WaitHealthy(ctx context.Context, docker *client.Client, id string, runningFor time.Duration) error {
	started := time.Now()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		res, err := docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect the new container: %w", err)
		}
		state := res.Container.State
		switch {
		case state == nil:
		case !state.Running && !state.Restarting:
			return fmt.Errorf("the new container exited with code %d before it was healthy", state.ExitCode)
		case state.Health != nil && state.Health.Status == container.Healthy:
			return nil
		case state.Health != nil && state.Health.Status == container.Unhealthy:
			return fmt.Errorf("the new container failed its health check (%s)", lastCheck(state.Health))
		case state.Health == nil && time.Since(started) >= runningFor:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the new container was not healthy in time: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// lastCheck is the output of the latest health check, trimmed.
func lastCheck(h *container.Health) string {
	if len(h.Log) == 0 {
		return "no check ran"
	}
	last := h.Log[len(h.Log)-1]
	out := strings.TrimSpace(last.Output)
	if len(out) > 200 {
		out = out[:200] + "…"
	}
	return fmt.Sprintf("exit code %d: %s", last.ExitCode, out)
}

// remove deletes a container, running or not; a missing one is fine.
func (d *Driver) remove(ctx context.Context, nameOrID string) error {
	if _, err := d.docker.ContainerRemove(ctx, nameOrID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", nameOrID, err)
	}
	return nil
}
