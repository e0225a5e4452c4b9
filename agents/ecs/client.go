package ecs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// serviceClient talks to the ECS API about one Target's service.
type serviceClient struct {
	ecs              *ecs.Client
	cluster, service string
	// where names the service and its cluster, for messages.
	where string
	// credentials says where the credentials came from, for messages.
	credentials string
	pollEvery   time.Duration
}

// client connects to ECS in the Target's region with its credentials.
func (d *Driver) client(ctx context.Context, target *v1alpha1.Target) (*serviceClient, error) {
	s := target.Spec.ECS
	if s == nil {
		return nil, errors.New("the Target has no spec.ecs settings")
	}
	c := &serviceClient{cluster: s.Cluster, service: s.Service, pollEvery: d.pollEvery,
		where: fmt.Sprintf("service %s in cluster %s (%s)", s.Service, s.Cluster, s.Region)}
	var creds aws.CredentialsProvider
	var err error
	if s.CredentialsSecretRef != nil {
		creds, err = staticCredentials(ctx, d.secrets, target.Namespace, s.CredentialsSecretRef.Name)
		c.credentials = fmt.Sprintf("the credentials in Secret %s (Target spec.ecs.credentialsSecretRef)", s.CredentialsSecretRef.Name)
	} else {
		creds, err = defaultCredentials(ctx, s.Region)
		c.credentials = "the server's default AWS credentials (Target spec.ecs.credentialsSecretRef is unset)"
	}
	if err != nil {
		return nil, err
	}
	opts := ecs.Options{Region: s.Region, Credentials: creds}
	if s.Endpoint != "" {
		opts.BaseEndpoint = aws.String(s.Endpoint)
	}
	c.ecs = ecs.New(opts)
	return c, nil
}

// explain adds the likely cause to an error ECS returned.
func (c *serviceClient) explain(err error) error {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return err
	}
	switch api.ErrorCode() {
	case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException":
		return fmt.Errorf("%w: AWS refused %s; they need ecs:DescribeServices, ecs:UpdateService, ecs:DescribeTaskDefinition, ecs:RegisterTaskDefinition and ecs:ListTaskDefinitions (and iam:PassRole on the task's roles)", err, c.credentials)
	case "ClusterNotFoundException":
		return fmt.Errorf("%w: ECS has no cluster %s (Target spec.ecs.cluster)", err, c.cluster)
	case "ServiceNotFoundException", "ServiceNotActiveException":
		return fmt.Errorf("%w: ECS has no active %s (Target spec.ecs.service)", err, c.where)
	}
	return err
}

// describe reads the Target's service; it must exist and be active, since
// Stella updates services rather than creating them.
func (c *serviceClient) describe(ctx context.Context) (*types.Service, error) {
	out, err := c.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(c.cluster), Services: []string{c.service}})
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", c.where, c.explain(err))
	}
	for i := range out.Services {
		if svc := &out.Services[i]; aws.ToString(svc.Status) == "ACTIVE" {
			return svc, nil
		}
	}
	return nil, fmt.Errorf("ECS has no active %s (Target spec.ecs.service): create the service once; Stella then pins its task definition to each release", c.where)
}

func (c *serviceClient) taskDefinition(ctx context.Context, arn string) (*types.TaskDefinition, error) {
	out, err := c.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(arn)})
	if err != nil {
		return nil, fmt.Errorf("describe task definition %s of %s: %w", arn, c.where, c.explain(err))
	}
	return out.TaskDefinition, nil
}

// deployedSticker is the sticker of the revision Stella deployed last: the
// running one's, or, when someone updated the service since, the newest
// revision's of the family that carries one.
func (c *serviceClient) deployedSticker(ctx context.Context, running *types.TaskDefinition) (*v1alpha1.VersionSticker, error) {
	if s, err := stickerOf(running); s != nil || err != nil {
		return s, err
	}
	td, err := c.revisionOf(ctx, aws.ToString(running.Family), func(td *types.TaskDefinition) bool {
		s, _ := stickerOf(td)
		return s != nil
	})
	if err != nil || td == nil {
		return nil, err
	}
	return stickerOf(td)
}

// revisionOf is the newest of the family's last revisionsSearched
// revisions that match says is the one; nil when none is.
func (c *serviceClient) revisionOf(ctx context.Context, family string, match func(*types.TaskDefinition) bool) (*types.TaskDefinition, error) {
	out, err := c.ecs.ListTaskDefinitions(ctx, &ecs.ListTaskDefinitionsInput{
		FamilyPrefix: aws.String(family), Sort: types.SortOrderDesc, MaxResults: aws.Int32(revisionsSearched),
	})
	if err != nil {
		return nil, fmt.Errorf("list the revisions of task definition %s: %w", family, c.explain(err))
	}
	for _, arn := range out.TaskDefinitionArns {
		// The prefix matches other families too.
		if !strings.Contains(arn, ":task-definition/"+family+":") {
			continue
		}
		td, err := c.taskDefinition(ctx, arn)
		if err != nil {
			return nil, err
		}
		if match(td) {
			return td, nil
		}
	}
	return nil, nil
}

// register registers base pinned to desired as a new revision and deploys
// it.
func (c *serviceClient) register(ctx context.Context, svc *types.Service, base *types.TaskDefinition, target *v1alpha1.Target, desired agents.Desired) error {
	input, err := pin(base, target, desired)
	if err != nil {
		return err
	}
	registered, err := c.ecs.RegisterTaskDefinition(ctx, input)
	if err != nil {
		return fmt.Errorf("register a revision of task definition %s pinned to release %s: %w", aws.ToString(base.Family), desired.Release, c.explain(err))
	}
	return c.deploy(ctx, svc, aws.ToString(registered.TaskDefinition.TaskDefinitionArn))
}

// deploy updates the service to a task definition with the circuit breaker
// on, keeping its other deployment settings, and waits until it is stable.
func (c *serviceClient) deploy(ctx context.Context, svc *types.Service, arn string) error {
	settings := types.DeploymentConfiguration{}
	if svc.DeploymentConfiguration != nil {
		settings = *svc.DeploymentConfiguration
	}
	settings.DeploymentCircuitBreaker = &types.DeploymentCircuitBreaker{Enable: true, Rollback: true}
	if _, err := c.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster: aws.String(c.cluster), Service: aws.String(c.service), TaskDefinition: aws.String(arn), DeploymentConfiguration: &settings,
	}); err != nil {
		return fmt.Errorf("update %s to task definition %s: %w", c.where, arn, c.explain(err))
	}
	return c.waitStable(ctx, arn)
}

// waitStable waits with the SDK's waiter until the service is stable, then
// checks that it is stable on arn: when the circuit breaker rolled the
// deployment back, it is stable on the revision before.
func (c *serviceClient) waitStable(ctx context.Context, arn string) error {
	wait := 15 * time.Minute
	if deadline, ok := ctx.Deadline(); ok {
		wait = time.Until(deadline)
	}
	waiter := ecs.NewServicesStableWaiter(c.ecs, func(o *ecs.ServicesStableWaiterOptions) {
		o.MinDelay, o.MaxDelay = c.pollEvery, max(c.pollEvery, 30*time.Second)
	})
	out, err := waiter.WaitForOutput(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(c.cluster), Services: []string{c.service}}, wait)
	if err != nil {
		return fmt.Errorf("%s did not become stable on task definition %s: %w", c.where, arn, c.explain(err))
	}
	if len(out.Services) == 0 {
		return fmt.Errorf("ECS no longer describes %s", c.where)
	}
	svc := out.Services[0]
	if runs := aws.ToString(svc.TaskDefinition); runs != arn {
		return fmt.Errorf("the ECS deployment of task definition %s failed and the deployment circuit breaker rolled %s back to %s: %s", arn, c.where, runs, failureEvent(&svc))
	}
	return nil
}

// failureEvent is the newest service event that says why a deployment
// failed.
func failureEvent(svc *types.Service) string {
	for _, e := range svc.Events { // newest first
		if msg := aws.ToString(e.Message); strings.Contains(msg, "failed") {
			return msg
		}
	}
	return "ECS gave no reason in the service's events"
}
