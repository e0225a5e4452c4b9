package compose

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/agents/agentstest"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/images"
)

const composeFile = `services:
  api:
    image: ${REGISTRY}/shop/api:v1
    network_mode: none
    environment:
      GREETING: hello
`

type fixture struct {
	docker *client.Client
	driver *Driver
	target *v1alpha1.Target
	ref    map[string]string
}

func setUp(t *testing.T) *fixture {
	t.Helper()
	engine, refs, run := images.SetUp(t, "shop/api")
	driver, err := New(context.Background(), engine, agents.LocalHost{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{docker: engine, driver: driver, ref: refs}
	registry := refs["v1"][:strings.IndexByte(refs["v1"], '/')]
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(composeFile), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGISTRY", registry)
	f.target = &v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Namespace: run, Name: "shop"},
		Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeCompose, Agent: "host-1",
			Compose: &v1alpha1.ComposeTarget{ProjectName: run, File: file}},
	}
	return f
}

// running is the one running container of the project.
func (f *fixture) running(t *testing.T) (id, digest string) {
	t.Helper()
	list, err := f.docker.ContainerList(context.Background(), client.ContainerListOptions{
		Filters: make(client.Filters).Add("label", labelProject+"="+f.target.Spec.Compose.ProjectName),
	})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("want one running container of the project, got %d (%v)", len(list.Items), err)
	}
	return list.Items[0].ID, list.Items[0].Labels[agents.LabelDigest]
}

func TestComposeDeploysPinnedRecoversAndSeesDrift(t *testing.T) {
	f := setUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Logf("compose CLI: %s", f.driver.CLI())

	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v1")); err != nil {
		t.Fatalf("apply v1: %v", err)
	}
	v1ID, digest := f.running(t)
	if digest != agentstest.DigestOf(f.ref["v1"]) {
		t.Fatalf("after v1 the project runs %s", digest)
	}
	lock, err := os.ReadFile(filepath.Join(filepath.Dir(f.target.Spec.Compose.File), LockFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(lock), f.ref["v1"]) || strings.HasPrefix(string(lock), "name:") || strings.Contains(string(lock), "\nname:") {
		t.Fatalf("the lock file does not pin v1 or names the project:\n%s", lock)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Health != v1alpha1.HealthHealthy {
		t.Fatalf("after v1: %+v", a)
	}
	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v1")); err != nil {
		t.Fatalf("apply v1 again: %v", err)
	}
	if id, _ := f.running(t); id != v1ID {
		t.Fatalf("applying v1 again recreated the container")
	}

	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v2")); err != nil {
		t.Fatalf("apply v2: %v", err)
	}
	if _, digest := f.running(t); digest != agentstest.DigestOf(f.ref["v2"]) {
		t.Fatalf("after v2 the project runs %s", digest)
	}

	err = f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v3"))
	if err == nil || !strings.Contains(err.Error(), "health check") {
		t.Fatalf("apply of unhealthy v3: %v, want a health check failure", err)
	}
	if err := f.driver.Rollback(ctx, f.target, agentstest.Release(f.ref, "v2")); err != nil {
		t.Fatalf("roll back to v2: %v", err)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Running.Release != "shop-v2" || a.Health != v1alpha1.HealthHealthy {
		t.Fatalf("after rolling back: %+v", a)
	}

	// Someone runs v1 in the project by hand.
	id, _ := f.running(t)
	if _, err := f.docker.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	byHand, err := f.docker.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{
		Image: f.ref["v1"], Labels: map[string]string{labelProject: f.target.Spec.Compose.ProjectName, labelService: "api"},
	}, HostConfig: &container.HostConfig{NetworkMode: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.docker.ContainerStart(ctx, byHand.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftDrifted || !strings.Contains(a.Message, agentstest.DigestOf(f.ref["v1"])) {
		t.Fatalf("after the swap: %+v, want Drifted naming the v1 digest", a)
	}
}

func TestComposeRefusesBadInputAndLeavesWhatRuns(t *testing.T) {
	f := setUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v1")); err != nil {
		t.Fatalf("apply v1: %v", err)
	}
	v1ID, _ := f.running(t)

	broken := f.target.DeepCopy()
	broken.Spec.Compose.File = filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(broken.Spec.Compose.File, []byte("services:\n  api: [not, a, service\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	extra := f.target.DeepCopy()
	extra.Spec.Compose.File = filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(extra.Spec.Compose.File, []byte(composeFile+"  cache:\n    image: redis:7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := agentstest.Release(f.ref, "v2")
	missing.Components[0].Image = v1alpha1.ImageDigestRef(f.ref["v2"][:strings.LastIndexByte(f.ref["v2"], '@')] + "@sha256:" + strings.Repeat("0", 64))
	for _, tc := range []struct {
		name   string
		target *v1alpha1.Target
		want   agents.Desired
		errHas string
	}{
		{"a compose file that does not parse", broken, agentstest.Release(f.ref, "v2"), "load compose file " + broken.Spec.Compose.File},
		{"a service that is not in the release", extra, agentstest.Release(f.ref, "v2"), "service cache of"},
		{"a digest the registry does not have", f.target, missing, "pull "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.driver.Apply(ctx, tc.target, tc.want)
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("got %v, want an error containing %q", err, tc.errHas)
			}
			if id, digest := f.running(t); id != v1ID || digest != agentstest.DigestOf(f.ref["v1"]) {
				t.Fatalf("the v1 container was touched")
			}
		})
	}
}
