// Package compose deploys releases as Docker Compose projects: it pins every
// service of the Target's compose file to the release's digest, writes the
// result as compose.stella.lock.yml next to it, and brings the project up
// with the compose CLI that is installed (docker compose or docker-compose).
package compose

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/moby/client"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/agents/docker"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// LockFile is the pinned project written next to the Target's compose file.
const LockFile = "compose.stella.lock.yml"

// Labels the compose CLI puts on the containers of a project.
const (
	labelProject = "com.docker.compose.project"
	labelService = "com.docker.compose.service"
)

// Driver deploys compose projects on the Docker Engine its client talks to.
type Driver struct {
	docker *client.Client
	// host is the machine of that engine, where the compose file, the
	// compose CLI and the stickers are.
	host     agents.Host
	keychain authn.Keychain
	stateDir string
	// cli is the compose command: docker compose, or docker-compose.
	cli []string
}

var _ agents.Driver = &Driver{}

// New returns a driver using whichever compose CLI is installed on host; it
// is an error when none is.
func New(ctx context.Context, engine *client.Client, host agents.Host, stateDir string) (*Driver, error) {
	cmd, err := findCLI(ctx, host)
	if err != nil {
		return nil, err
	}
	return &Driver{docker: engine, host: host, keychain: authn.DefaultKeychain, stateDir: stateDir, cli: cmd}, nil
}

// findCLI prefers the compose plugin of the docker CLI and falls back to the
// standalone docker-compose.
func findCLI(ctx context.Context, host agents.Host) ([]string, error) {
	for _, cli := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		if _, err := host.Run(ctx, "", append(cli, "version")...); err == nil {
			return cli, nil
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("neither 'docker compose' nor 'docker-compose' is installed on %s: install one to deploy compose targets", host.Name())
}

// CLI is the compose command the driver runs.
func (d *Driver) CLI() string { return strings.Join(d.cli, " ") }

// Observe reads the containers of the target's project, by service.
func (d *Driver) Observe(ctx context.Context, target *v1alpha1.Target) (agents.Observed, error) {
	deployed, err := agents.ReadSticker(ctx, d.host, agents.StickerPath(target, d.stateDir))
	if err != nil {
		return agents.Observed{}, err
	}
	o := agents.Observed{Deployed: deployed}
	list, err := d.docker.ContainerList(ctx, client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", labelProject+"="+target.Spec.Compose.ProjectName),
	})
	if err != nil {
		return agents.Observed{}, fmt.Errorf("list the containers of compose project %s: %w", target.Spec.Compose.ProjectName, err)
	}
	// One container per service: the running one when there are several.
	byService := map[string]string{}
	for _, c := range list.Items {
		svc := c.Labels[labelService]
		if _, seen := byService[svc]; !seen || c.State == "running" {
			byService[svc] = c.ID
		}
	}
	for _, svc := range slices.Sorted(maps.Keys(byService)) {
		c, err := docker.ObserveContainer(ctx, d.docker, byService[svc], svc)
		if err != nil {
			return agents.Observed{}, err
		}
		if c != nil {
			o.Components = append(o.Components, *c)
		}
	}
	return o, nil
}

// Apply pins the project to desired, brings it up and waits until every
// service is healthy. Services whose image and settings did not change are
// left running by the compose CLI.
func (d *Driver) Apply(ctx context.Context, target *v1alpha1.Target, desired agents.Desired) error {
	project, err := d.pinned(ctx, target, desired)
	if err != nil {
		return err
	}
	lock, err := d.writeLock(ctx, target, project)
	if err != nil {
		return err
	}
	for _, c := range desired.Components {
		if err := docker.Pull(ctx, d.docker, d.keychain, string(c.Image)); err != nil {
			return fmt.Errorf("component %s: %w", c.Name, err)
		}
	}
	if err := d.run(ctx, target, lock, "up", "-d", "--remove-orphans", "--no-build"); err != nil {
		return err
	}
	if err := d.waitHealthy(ctx, target, project); err != nil {
		return err
	}
	return docker.Succeeded(ctx, d.docker, d.host, target, agents.StickerPath(target, d.stateDir), desired)
}

// Rollback brings the project up pinned to a release it ran before.
func (d *Driver) Rollback(ctx context.Context, target *v1alpha1.Target, previous agents.Desired) error {
	return d.Apply(ctx, target, previous)
}

// pinned loads the Target's compose file and sets every service's image to
// its component's digest, with the sticker labels. Every service must be a
// component of the release and every component a service, so that nothing
// runs unpinned.
func (d *Driver) pinned(ctx context.Context, target *v1alpha1.Target, desired agents.Desired) (*types.Project, error) {
	file := target.Spec.Compose.File
	project, err := d.load(ctx, file, target.Spec.Compose.ProjectName)
	if err != nil {
		return nil, fmt.Errorf("load compose file %s on %s (Target spec.compose.file): %w", file, d.host.Name(), err)
	}
	images := map[string]v1alpha1.ImageDigestRef{}
	for _, c := range desired.Components {
		if _, ok := project.Services[c.Name]; !ok {
			return nil, fmt.Errorf("component %s of release %s has no service in %s: add a service named %s", c.Name, desired.Release, file, c.Name)
		}
		images[c.Name] = c.Image
	}
	return project.WithServicesTransform(func(name string, s types.ServiceConfig) (types.ServiceConfig, error) {
		image, ok := images[name]
		if !ok {
			return s, fmt.Errorf("service %s of %s is not a component of release %s, so it would run unpinned: add it to the release (stellactl release create --from-compose) or remove it from the file", name, file, desired.Release)
		}
		s.Image = string(image)
		s.Build = nil
		if s.Labels == nil {
			s.Labels = types.Labels{}
		}
		maps.Copy(s.Labels, agents.Labels(target, desired, v1alpha1.ComponentDigest{Name: name, Image: image}))
		return s, nil
	})
}

// load reads a compose file from the host and interpolates it as the compose
// CLI would there: with the environment of that host, overridden by the
// .env file next to the compose file.
func (d *Driver) load(ctx context.Context, file, projectName string) (*types.Project, error) {
	content, err := d.host.ReadFile(ctx, file)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(file)
	env, err := d.environment(ctx, dir)
	if err != nil {
		return nil, err
	}
	details := types.ConfigDetails{WorkingDir: dir, ConfigFiles: []types.ConfigFile{{Filename: file, Content: content}}, Environment: env}
	return loader.LoadWithContext(ctx, details, func(o *loader.Options) { o.SetProjectName(projectName, true) })
}

// environment is the host's environment with the .env file in dir applied.
func (d *Driver) environment(ctx context.Context, dir string) (types.Mapping, error) {
	out, err := d.host.Run(ctx, dir, "env", "-0")
	if err != nil {
		return nil, fmt.Errorf("read the environment: %w: %s", err, lastLines(string(out), 3))
	}
	env := types.Mapping{}
	for _, kv := range strings.Split(string(out), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			env[k] = v
		}
	}
	dotEnv, err := agents.ReadOptional(ctx, d.host, filepath.Join(dir, ".env"))
	if err != nil || dotEnv == nil {
		return env, err
	}
	vars, err := dotenv.UnmarshalBytesWithLookup(dotEnv, env.Resolve)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, ".env"), err)
	}
	maps.Copy(env, vars)
	return env, nil
}

// writeLock writes the pinned project next to the compose file. The
// project's name is left out, because docker-compose 1.x refuses a
// top-level name; the CLI gets it with -p instead.
func (d *Driver) writeLock(ctx context.Context, target *v1alpha1.Target, project *types.Project) (string, error) {
	unnamed := *project
	unnamed.Name = ""
	data, err := unnamed.MarshalYAML()
	if err != nil {
		return "", fmt.Errorf("write %s: %w", LockFile, err)
	}
	path := filepath.Join(filepath.Dir(target.Spec.Compose.File), LockFile)
	if err := d.host.WriteFile(ctx, path, data); err != nil {
		return "", fmt.Errorf("write %s on %s: %w", path, d.host.Name(), err)
	}
	return path, nil
}

// run runs the compose CLI on the lock file, with its output in the error.
func (d *Driver) run(ctx context.Context, target *v1alpha1.Target, lock string, args ...string) error {
	argv := append(append(slices.Clone(d.cli), "-p", target.Spec.Compose.ProjectName, "-f", lock), args...)
	if out, err := d.host.Run(ctx, filepath.Dir(lock), argv...); err != nil {
		return fmt.Errorf("%s %s on %s: %w: %s", d.CLI(), strings.Join(args, " "), d.host.Name(), err, lastLines(string(out), 5))
	}
	return nil
}

// waitHealthy waits for each service's running container to be healthy.
func (d *Driver) waitHealthy(ctx context.Context, target *v1alpha1.Target, project *types.Project) error {
	for _, name := range slices.Sorted(maps.Keys(project.Services)) {
		list, err := d.docker.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).
			Add("label", labelProject+"="+target.Spec.Compose.ProjectName).Add("label", labelService+"="+name)})
		if err != nil {
			return fmt.Errorf("list the containers of service %s: %w", name, err)
		}
		if len(list.Items) == 0 {
			return fmt.Errorf("service %s: no container runs after %s up", name, d.CLI())
		}
		for _, c := range list.Items {
			if err := docker.WaitHealthy(ctx, d.docker, c.ID, docker.DefaultRunningFor); err != nil {
				return fmt.Errorf("service %s: %w", name, err)
			}
		}
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
