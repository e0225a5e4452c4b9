package ecs

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/agents/agentstest"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/ecsfake"
)

// ECS cannot run here: these tests run the AWS SDK for real (serializers,
// SigV4 signing, retries, the services-stable waiter) against ecsfake, a
// strict model of the ECS API and of its deployments and circuit breaker.
// TestAgainstRealECS is the opt-in smoke test against AWS.

const (
	writerKey = "AKIAWRITER0000000000"
	readerKey = "AKIAREADER0000000000"
)

type fixture struct {
	fake   *ecsfake.Server
	ecs    *ecs.Client
	driver *Driver
	target *v1alpha1.Target
	refs   map[string]string
	first  string
}

func setUp(t *testing.T) *fixture {
	t.Helper()
	fake := ecsfake.Start("eu-west-1")
	t.Cleanup(fake.Close)
	fake.AllowKey(writerKey, true)
	fake.AllowKey(readerKey, false)
	f := &fixture{fake: fake, ecs: fake.Client(writerKey), refs: map[string]string{}}
	for i, v := range []string{"v1", "v2", "crash"} {
		f.refs[v] = "127.0.0.1:5000/shop/api@sha256:" + strings.Repeat(string(rune('a'+i)), 64)
	}
	fake.Crash(f.refs["crash"])
	secrets := map[string]string{
		"aws-writer/" + SecretAccessKeyID: writerKey, "aws-writer/" + SecretSecretAccessKey: "secret",
		"aws-reader/" + SecretAccessKeyID: readerKey, "aws-reader/" + SecretSecretAccessKey: "secret",
		"aws-stranger/" + SecretAccessKeyID: "AKIASTRANGER00000000", "aws-stranger/" + SecretSecretAccessKey: "secret",
	}
	f.driver = New(func(_ context.Context, _, name string) (map[string][]byte, error) {
		data := map[string][]byte{}
		for nameKey, v := range secrets {
			if n, key, _ := strings.Cut(nameKey, "/"); n == name {
				data[key] = []byte(v)
			}
		}
		if len(data) == 0 {
			return nil, errors.New("no such secret")
		}
		return data, nil
	}, 10*time.Millisecond)
	f.target = &v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "prod-ecs"},
		Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeECS, ECS: &v1alpha1.ECSTarget{
			Cluster: "prod", Service: "api", Region: "eu-west-1", Endpoint: fake.URL,
			CredentialsSecretRef: &v1alpha1.LocalObjectReference{Name: "aws-writer"},
		}},
	}
	f.first = f.registerByHand(t, "127.0.0.1:5000/shop/api:1.0", map[string]string{"team": "shop"})
	fake.CreateService("prod", "api", f.first, 2)
	return f
}

// registerByHand registers a revision of family shop as its owners would.
func (f *fixture) registerByHand(t *testing.T, image string, labels map[string]string) string {
	t.Helper()
	out, err := f.ecs.RegisterTaskDefinition(t.Context(), &ecs.RegisterTaskDefinitionInput{
		Family: aws.String("shop"), NetworkMode: types.NetworkModeAwsvpc, Cpu: aws.String("256"), Memory: aws.String("512"),
		RequiresCompatibilities: []types.Compatibility{types.CompatibilityFargate},
		ContainerDefinitions:    []types.ContainerDefinition{{Name: aws.String("api"), Image: aws.String(image), Essential: aws.Bool(true), DockerLabels: labels}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.TaskDefinition.TaskDefinitionArn)
}

// running is the task definition the service runs.
func (f *fixture) running(t *testing.T) *types.TaskDefinition {
	t.Helper()
	svc, err := f.ecs.DescribeServices(t.Context(), &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"api"}})
	if err != nil || len(svc.Services) != 1 {
		t.Fatalf("describe the service: %v", err)
	}
	td, err := f.ecs.DescribeTaskDefinition(t.Context(), &ecs.DescribeTaskDefinitionInput{TaskDefinition: svc.Services[0].TaskDefinition})
	if err != nil {
		t.Fatal(err)
	}
	return td.TaskDefinition
}

func TestECSRegistersPinnedRevisionsAndRollsBack(t *testing.T) {
	f := setUp(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	f.fake.Throttle("RegisterTaskDefinition", 1)
	registered := f.fake.Calls("RegisterTaskDefinition")
	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.refs, "v1")); err != nil {
		t.Fatalf("apply v1: %v", err)
	}
	if n := f.fake.Calls("RegisterTaskDefinition") - registered; n != 2 {
		t.Fatalf("RegisterTaskDefinition was called %d times, want 2: one throttled, retried by the SDK", n)
	}
	td := f.running(t)
	api := td.ContainerDefinitions[0]
	if aws.ToString(api.Image) != f.refs["v1"] || api.DockerLabels["team"] != "shop" || api.DockerLabels[agents.LabelRelease] != "shop-v1" ||
		!strings.Contains(api.DockerLabels[agents.LabelSticker], agentstest.DigestOf(f.refs["v1"])) || aws.ToString(td.Cpu) != "256" || td.NetworkMode != types.NetworkModeAwsvpc {
		t.Fatalf("the running task definition after v1: %+v", td)
	}
	svc, _ := f.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("prod"), Services: []string{"api"}})
	if cb := svc.Services[0].DeploymentConfiguration.DeploymentCircuitBreaker; cb == nil || !cb.Enable || !cb.Rollback {
		t.Fatalf("the service's circuit breaker: %+v", cb)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Health != v1alpha1.HealthHealthy || a.Running.Release != "shop-v1" {
		t.Fatalf("after v1: %+v", a)
	}
	registered = f.fake.Calls("RegisterTaskDefinition")
	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.refs, "v1")); err != nil {
		t.Fatalf("apply v1 again: %v", err)
	}
	if f.fake.Calls("RegisterTaskDefinition") != registered {
		t.Fatalf("applying v1 again registered a revision")
	}

	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.refs, "v2")); err != nil {
		t.Fatalf("apply v2: %v", err)
	}
	v2 := aws.ToString(f.running(t).TaskDefinitionArn)
	err := f.driver.Apply(ctx, f.target, agentstest.Release(f.refs, "crash"))
	if err == nil || !strings.Contains(err.Error(), "circuit breaker rolled") || !strings.Contains(err.Error(), "tasks failed to start") {
		t.Fatalf("apply of a release whose tasks crash: %v, want the circuit breaker's rollback", err)
	}
	if now := aws.ToString(f.running(t).TaskDefinitionArn); now != v2 {
		t.Fatalf("after the failed release the service runs %s, want %s", now, v2)
	}
	updates := f.fake.Calls("UpdateService")
	if err := f.driver.Rollback(ctx, f.target, agentstest.Release(f.refs, "v2")); err != nil || f.fake.Calls("UpdateService") != updates {
		t.Fatalf("rollback to v2, which the circuit breaker already did: %v, %d updates", err, f.fake.Calls("UpdateService")-updates)
	}

	if err := f.driver.Rollback(ctx, f.target, agentstest.Release(f.refs, "v1")); err != nil {
		t.Fatalf("rollback to v1: %v", err)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Running.Release != "shop-v1" {
		t.Fatalf("after the rollback to v1: %+v", a)
	}

	// Someone points the service at their own revision, running v2.
	byHand := f.registerByHand(t, f.refs["v2"], nil)
	if _, err := f.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("api"), TaskDefinition: aws.String(byHand)}); err != nil {
		t.Fatal(err)
	}
	a := agentstest.Assess(t, f.driver, f.target)
	if a.Drift != v1alpha1.DriftDrifted || !strings.Contains(a.Message, agentstest.DigestOf(f.refs["v2"])) {
		t.Fatalf("after a revision set by hand: %+v, want Drifted naming the v2 digest against shop-v1", a)
	}
}

func TestECSRefusesBadTargetsAndChangesNothing(t *testing.T) {
	f := setUp(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		name, want string
		mutate     func(*v1alpha1.ECSTarget)
	}{
		{"a missing service", "ECS has no active service nope", func(e *v1alpha1.ECSTarget) { e.Service = "nope" }},
		{"a missing cluster", "ECS has no cluster staging", func(e *v1alpha1.ECSTarget) { e.Cluster = "staging" }},
		{"read-only credentials", "AWS refused the credentials in Secret aws-reader", func(e *v1alpha1.ECSTarget) { e.CredentialsSecretRef.Name = "aws-reader" }},
		{"unknown credentials", "UnrecognizedClientException", func(e *v1alpha1.ECSTarget) { e.CredentialsSecretRef.Name = "aws-stranger" }},
		{"a missing Secret", "spec.ecs.credentialsSecretRef", func(e *v1alpha1.ECSTarget) { e.CredentialsSecretRef.Name = "aws-none" }},
		{"another region", "InvalidSignatureException", func(e *v1alpha1.ECSTarget) { e.Region = "us-east-1" }},
	} {
		target := f.target.DeepCopy()
		c.mutate(target.Spec.ECS)
		if err := f.driver.Apply(ctx, target, agentstest.Release(f.refs, "v1")); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	worker := agentstest.Release(f.refs, "v1")
	worker.Components[0].Name = "worker"
	if err := f.driver.Apply(ctx, f.target, worker); err == nil || !strings.Contains(err.Error(), "container api of task definition shop is not a component") {
		t.Errorf("a container that is not a component: %v", err)
	}
	if now := aws.ToString(f.running(t).TaskDefinitionArn); now != f.first {
		t.Fatalf("refused deployments changed the service to %s", now)
	}
}

// TestAgainstRealECS observes a real ECS service, changing nothing. It runs
// only with STELLA_ECS_SMOKE=1, STELLA_ECS_CLUSTER, STELLA_ECS_SERVICE,
// STELLA_ECS_REGION and AWS credentials in the default chain.
func TestAgainstRealECS(t *testing.T) {
	if os.Getenv("STELLA_ECS_SMOKE") != "1" {
		t.Skip("the smoke test against AWS runs only with STELLA_ECS_SMOKE=1 (and STELLA_ECS_CLUSTER, STELLA_ECS_SERVICE, STELLA_ECS_REGION, AWS credentials)")
	}
	target := &v1alpha1.Target{ObjectMeta: metav1.ObjectMeta{Name: "smoke"}, Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeECS, ECS: &v1alpha1.ECSTarget{
		Cluster: os.Getenv("STELLA_ECS_CLUSTER"), Service: os.Getenv("STELLA_ECS_SERVICE"), Region: os.Getenv("STELLA_ECS_REGION"),
	}}}
	o, err := New(nil, 15*time.Second).Observe(t.Context(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("observed: %+v", agents.Assess(o))
}
