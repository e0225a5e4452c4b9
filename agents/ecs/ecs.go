// Package ecs deploys releases to an existing AWS ECS service: it registers
// a revision of the service's task definition with every container named
// after a release component running the component's digest, the version
// sticker in the containers' Docker labels, and updates the service with
// the deployment circuit breaker on, so that ECS itself rolls back a
// deployment whose tasks do not start.
package ecs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Keys of the credentials Secret, named as AWS's environment variables.
const (
	SecretAccessKeyID     = "AWS_ACCESS_KEY_ID"
	SecretSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	SecretSessionToken    = "AWS_SESSION_TOKEN"
)

// revisionsSearched bounds how far back a rollback looks for the task
// definition revision of a release.
const revisionsSearched = 20

// Driver deploys to ECS services.
type Driver struct {
	secrets agents.SecretReader
	// pollEvery is the least time between two looks at a deploying
	// service (the SDK waiter's MinDelay).
	pollEvery time.Duration
}

var _ agents.Driver = &Driver{}

// New returns a driver that reads AWS credentials with secrets and looks
// at a deploying service every pollEvery (ECS's own waiter uses 15s).
func New(secrets agents.SecretReader, pollEvery time.Duration) *Driver {
	return &Driver{secrets: secrets, pollEvery: pollEvery}
}

// Observe reads the task definition the service runs.
func (d *Driver) Observe(ctx context.Context, target *v1alpha1.Target) (agents.Observed, error) {
	c, svc, running, err := d.current(ctx, target)
	if err != nil {
		return agents.Observed{}, err
	}
	deployed, err := c.deployedSticker(ctx, running)
	if err != nil {
		return agents.Observed{}, err
	}
	return agents.Observed{Deployed: deployed, Components: observe(svc, running)}, nil
}

// current connects to the Target's ECS and reads its service and the task
// definition the service runs.
func (d *Driver) current(ctx context.Context, target *v1alpha1.Target) (*serviceClient, *types.Service, *types.TaskDefinition, error) {
	c, err := d.client(ctx, target)
	if err != nil {
		return nil, nil, nil, err
	}
	svc, err := c.describe(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	td, err := c.taskDefinition(ctx, aws.ToString(svc.TaskDefinition))
	if err != nil {
		return nil, nil, nil, err
	}
	return c, svc, td, nil
}

// Apply registers a task definition revision pinned to desired, updates
// the service to it and waits until the service is stable on it.
func (d *Driver) Apply(ctx context.Context, target *v1alpha1.Target, desired agents.Desired) error {
	c, svc, current, err := d.current(ctx, target)
	if err != nil {
		return err
	}
	if runsAlready(current, desired) {
		return c.waitStable(ctx, aws.ToString(current.TaskDefinitionArn))
	}
	return c.register(ctx, svc, current, target, desired)
}

// Rollback makes the service run previous again: when the circuit breaker
// already put it back, it waits for that; otherwise it registers the newest
// revision that carried previous's sticker again (or the current one,
// pinned to previous, when none is kept) and updates the service to it, so
// that the newest revision with a sticker is always what Stella deployed
// last.
func (d *Driver) Rollback(ctx context.Context, target *v1alpha1.Target, previous agents.Desired) error {
	c, svc, current, err := d.current(ctx, target)
	if err != nil {
		return err
	}
	if runsAlready(current, previous) {
		return c.waitStable(ctx, aws.ToString(current.TaskDefinitionArn))
	}
	base, err := c.revisionOf(ctx, aws.ToString(current.Family), func(td *types.TaskDefinition) bool { return runsAlready(td, previous) })
	if err != nil {
		return err
	}
	if base == nil {
		base = current
	}
	return c.register(ctx, svc, base, target, previous)
}

// pin is the registration of current with each component's container
// running its digest and carrying the sticker labels. Every container must
// be a component and every component a container, so that nothing runs
// unpinned.
func pin(current *types.TaskDefinition, target *v1alpha1.Target, desired agents.Desired) (*ecs.RegisterTaskDefinitionInput, error) {
	family := aws.ToString(current.Family)
	images := map[string]v1alpha1.ImageDigestRef{}
	for _, c := range desired.Components {
		images[c.Name] = c.Image
	}
	sticker, err := agents.MarshalSticker(target, desired.Sticker(time.Now()))
	if err != nil {
		return nil, err
	}
	containers := make([]types.ContainerDefinition, len(current.ContainerDefinitions))
	found := map[string]bool{}
	for i, def := range current.ContainerDefinitions {
		name := aws.ToString(def.Name)
		image, ok := images[name]
		if !ok {
			return nil, fmt.Errorf("container %s of task definition %s is not a component of release %s, so it would run unpinned: add it to the release (as a sidecar component) or remove it", name, family, desired.Release)
		}
		found[name] = true
		def.Image = aws.String(string(image))
		def.DockerLabels = maps.Clone(def.DockerLabels)
		if def.DockerLabels == nil {
			def.DockerLabels = map[string]string{}
		}
		maps.Copy(def.DockerLabels, agents.Labels(target, desired, v1alpha1.ComponentDigest{Name: name, Image: image}))
		def.DockerLabels[agents.LabelSticker] = strings.TrimSpace(string(sticker))
		containers[i] = def
	}
	for _, c := range desired.Components {
		if !found[c.Name] {
			return nil, fmt.Errorf("component %s of release %s has no container in task definition %s: add a container named %s", c.Name, desired.Release, family, c.Name)
		}
	}
	return &ecs.RegisterTaskDefinitionInput{
		Family: current.Family, ContainerDefinitions: containers, Cpu: current.Cpu, Memory: current.Memory,
		EphemeralStorage: current.EphemeralStorage, ExecutionRoleArn: current.ExecutionRoleArn, TaskRoleArn: current.TaskRoleArn,
		IpcMode: current.IpcMode, PidMode: current.PidMode,
		NetworkMode: current.NetworkMode, PlacementConstraints: current.PlacementConstraints, ProxyConfiguration: current.ProxyConfiguration,
		RequiresCompatibilities: current.RequiresCompatibilities, RuntimePlatform: current.RuntimePlatform, Volumes: current.Volumes,
		EnableFaultInjection: current.EnableFaultInjection, TrustedExecutionConfiguration: current.TrustedExecutionConfiguration,
	}, nil
}

// stickerOf is the sticker a task definition's containers carry, nil when
// Stella did not register it.
func stickerOf(td *types.TaskDefinition) (*v1alpha1.VersionSticker, error) {
	for _, c := range td.ContainerDefinitions {
		if data, ok := c.DockerLabels[agents.LabelSticker]; ok {
			s, err := agents.UnmarshalSticker([]byte(data))
			if err != nil {
				return nil, fmt.Errorf("the Docker label %s of task definition %s does not parse: %w", agents.LabelSticker, aws.ToString(td.TaskDefinitionArn), err)
			}
			return s, nil
		}
	}
	return nil, nil
}

// runsAlready says whether a task definition is d as Stella registered it.
func runsAlready(td *types.TaskDefinition, d agents.Desired) bool {
	s, _ := stickerOf(td)
	if s == nil || s.Release != d.Release || !slices.Equal(s.Components, d.Components) {
		return false
	}
	for _, c := range d.Components {
		for _, def := range td.ContainerDefinitions {
			if aws.ToString(def.Name) == c.Name && aws.ToString(def.Image) != string(c.Image) {
				return false
			}
		}
	}
	return true
}

// observe is what the service's tasks run: the containers of its task
// definition, healthy when its primary deployment completed with every
// task running.
func observe(svc *types.Service, td *types.TaskDefinition) []agents.ObservedComponent {
	release, promotion := "", ""
	if s, _ := stickerOf(td); s != nil {
		release, promotion = s.Release, s.Promotion
	}
	primary := primaryDeployment(svc)
	var out []agents.ObservedComponent
	for _, def := range td.ContainerDefinitions {
		o := agents.ObservedComponent{Name: aws.ToString(def.Name), Release: release, Promotion: promotion, Health: v1alpha1.HealthHealthy}
		if image := aws.ToString(def.Image); strings.Contains(image, "@sha256:") {
			o.Image = v1alpha1.ImageDigestRef(image)
		}
		o.Running = svc.RunningCount > 0
		switch {
		case svc.RunningCount < svc.DesiredCount:
			o.Health, o.Problem = v1alpha1.HealthDegraded, fmt.Sprintf("%d of %d tasks run", svc.RunningCount, svc.DesiredCount)
		case primary != nil && primary.RolloutState == types.DeploymentRolloutStateInProgress:
			o.Health = v1alpha1.HealthUnknown
		}
		out = append(out, o)
	}
	return out
}

func primaryDeployment(svc *types.Service) *types.Deployment {
	for i := range svc.Deployments {
		if aws.ToString(svc.Deployments[i].Status) == "PRIMARY" {
			return &svc.Deployments[i]
		}
	}
	return nil
}

// staticCredentials are the credentials of a Secret.
func staticCredentials(ctx context.Context, secrets agents.SecretReader, namespace, name string) (aws.CredentialsProvider, error) {
	data, err := secrets(ctx, namespace, name)
	if err == nil && (len(data[SecretAccessKeyID]) == 0 || len(data[SecretSecretAccessKey]) == 0) {
		err = fmt.Errorf("the Secret %s/%s lacks a key", namespace, name)
	}
	if err != nil {
		return nil, fmt.Errorf("read the AWS credentials (Target spec.ecs.credentialsSecretRef, keys %s and %s): %w", SecretAccessKeyID, SecretSecretAccessKey, err)
	}
	value := func(key string) string { return strings.TrimSpace(string(data[key])) }
	return credentials.NewStaticCredentialsProvider(value(SecretAccessKeyID), value(SecretSecretAccessKey), value(SecretSessionToken)), nil
}

// defaultCredentials are those of the process: its environment, shared
// config files, or the instance's role.
func defaultCredentials(ctx context.Context, region string) (aws.CredentialsProvider, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("load the default AWS credentials: %w", err)
	}
	if cfg.Credentials == nil {
		return nil, errors.New("no AWS credentials: set Target spec.ecs.credentialsSecretRef")
	}
	return cfg.Credentials, nil
}
