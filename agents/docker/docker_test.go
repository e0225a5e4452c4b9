package docker

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/agents/agentstest"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/images"
)

// fixture is a real Docker engine, a registry on 127.0.0.1 holding the
// test app as v1, v2 and an unhealthy v3, and a Target of this test.
type fixture struct {
	docker *client.Client
	driver *Driver
	target *v1alpha1.Target
	ref    map[string]string
}

func setUp(t *testing.T) *fixture {
	t.Helper()
	docker, refs, run := images.SetUp(t, "shop/api")
	f := &fixture{docker: docker, driver: New(docker, agents.LocalHost{}, t.TempDir()), ref: refs}
	f.target = &v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Namespace: run, Name: "web"},
		Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: "host-1", Components: []v1alpha1.ComponentTemplate{{
			Name: "api", Network: "none", Env: []v1alpha1.EnvVar{{Name: "GREETING", Value: "hello"}},
		}}},
	}
	return f
}

func (f *fixture) inspect(t *testing.T, name string) (id, digest string, running bool) {
	t.Helper()
	res, err := f.docker.ContainerInspect(context.Background(), name, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect %s: %v", name, err)
	}
	return res.Container.ID, res.Container.Config.Labels[agents.LabelDigest], res.Container.State.Running
}

func TestDriverDeploysReplacesKeepsTheOldOnFailureAndSeesDrift(t *testing.T) {
	f := setUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v1")); err != nil {
		t.Fatalf("apply v1: %v", err)
	}
	v1ID, digest, running := f.inspect(t, "web-api")
	if digest != agentstest.DigestOf(f.ref["v1"]) || !running {
		t.Fatalf("after v1: container runs %s (running %v), want %s", digest, running, agentstest.DigestOf(f.ref["v1"]))
	}
	sticker, err := agents.ReadSticker(t.Context(), agents.LocalHost{}, agents.StickerPath(f.target, f.driver.stateDir))
	if err != nil || sticker == nil || sticker.Release != "shop-v1" || sticker.Components[0].Image != v1alpha1.ImageDigestRef(f.ref["v1"]) {
		t.Fatalf("sticker after v1: %+v, %v", sticker, err)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Health != v1alpha1.HealthHealthy {
		t.Fatalf("after v1: %+v", a)
	}

	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v1")); err != nil {
		t.Fatalf("apply v1 again: %v", err)
	}
	if id, _, _ := f.inspect(t, "web-api"); id != v1ID {
		t.Fatalf("applying v1 again replaced the container")
	}

	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v2")); err != nil {
		t.Fatalf("apply v2: %v", err)
	}
	v2ID, digest, _ := f.inspect(t, "web-api")
	if v2ID == v1ID || digest != agentstest.DigestOf(f.ref["v2"]) {
		t.Fatalf("after v2: container %s runs %s", v2ID, digest)
	}
	if _, err := f.docker.ContainerInspect(ctx, v1ID, client.ContainerInspectOptions{}); err == nil {
		t.Fatalf("the v1 container was not removed")
	}

	err = f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v3"))
	if err == nil || !strings.Contains(err.Error(), "health check") || !strings.Contains(err.Error(), "component api") {
		t.Fatalf("apply of unhealthy v3: %v, want a health check failure of component api", err)
	}
	if id, digest, running := f.inspect(t, "web-api"); id != v2ID || !running || digest != agentstest.DigestOf(f.ref["v2"]) {
		t.Fatalf("after the failed v3: %s runs %s (running %v), want the v2 container", id, digest, running)
	}
	if _, err := f.docker.ContainerInspect(ctx, "web-api-next", client.ContainerInspectOptions{}); err == nil {
		t.Fatalf("the failed v3 container was left behind")
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Running.Release != "shop-v2" {
		t.Fatalf("after the failed v3: %+v, want shop-v2 in sync", a)
	}

	// Someone swaps the container by hand for v1.
	if _, err := f.docker.ContainerRemove(ctx, "web-api", client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	byHand, err := f.docker.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "web-api", Image: f.ref["v1"]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.docker.ContainerStart(ctx, byHand.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	a := agentstest.Assess(t, f.driver, f.target)
	if a.Drift != v1alpha1.DriftDrifted || !strings.Contains(a.Message, "component api runs "+agentstest.DigestOf(f.ref["v1"])) {
		t.Fatalf("after the swap: %+v, want Drifted naming the v1 digest", a)
	}

	if err := f.driver.Rollback(ctx, f.target, agentstest.Release(f.ref, "v2")); err != nil {
		t.Fatalf("revert to v2: %v", err)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Running.Components[0].Image != v1alpha1.ImageDigestRef(f.ref["v2"]) {
		t.Fatalf("after reverting: %+v", a)
	}
}

func TestDriverRefusesBadInputAndLeavesWhatRuns(t *testing.T) {
	f := setUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v1")); err != nil {
		t.Fatalf("apply v1: %v", err)
	}
	v1ID, _, _ := f.inspect(t, "web-api")

	badPort := f.target.DeepCopy()
	badPort.Spec.Components[0].Ports = []string{"127.0.0.1:http:80"}
	secrets := f.target.DeepCopy()
	secrets.Spec.Components[0].EnvFrom = []v1alpha1.LocalObjectReference{{Name: "api-secrets"}}
	unknown := agentstest.Release(f.ref, "v2")
	unknown.Components[0].Image = v1alpha1.ImageDigestRef(f.ref["v2"][:strings.LastIndexByte(f.ref["v2"], '@')] + "@sha256:" + strings.Repeat("0", 64))
	down := New(mustClient(t, "unix://"+filepath.Join(t.TempDir(), "no-docker.sock")), agents.LocalHost{}, t.TempDir())

	for _, tc := range []struct {
		name   string
		driver *Driver
		target *v1alpha1.Target
		want   agents.Desired
		errHas string
	}{
		{"an invalid template", f.driver, badPort, agentstest.Release(f.ref, "v2"), "spec.components[api].ports[0]"},
		{"a template that needs Secrets", f.driver, secrets, agentstest.Release(f.ref, "v2"), "spec.components[api].envFrom"},
		{"a digest the registry does not have", f.driver, f.target, unknown, "pull " + string(unknown.Components[0].Image)},
		{"a Docker daemon that is down", down, f.target, agentstest.Release(f.ref, "v2"), "reach the Docker daemon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.driver.Apply(ctx, tc.target, tc.want)
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("got %v, want an error containing %q", err, tc.errHas)
			}
			if id, _, running := f.inspect(t, "web-api"); id != v1ID || !running {
				t.Fatalf("the v1 container was touched")
			}
		})
	}
}

func mustClient(t *testing.T, host string) *client.Client {
	t.Helper()
	c, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDriverKeepsThePreviousReleasesImagesOnly(t *testing.T) {
	f := setUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	present := func(version string) bool {
		_, err := f.docker.ImageInspect(ctx, f.ref[version])
		return err == nil
	}
	for _, v := range []string{"v1", "v2"} {
		if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, v)); err != nil {
			t.Fatalf("apply %s: %v", v, err)
		}
	}
	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v3")); err == nil {
		t.Fatalf("the unhealthy v3 was applied")
	}
	if err := f.driver.Rollback(ctx, f.target, agentstest.Release(f.ref, "v2")); err != nil {
		t.Fatalf("roll back to v2: %v", err)
	}
	if !present("v1") || !present("v2") {
		t.Fatalf("after v2 and a failed v3, v1 present %v, v2 present %v: want both", present("v1"), present("v2"))
	}
	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "v4")); err != nil {
		t.Fatalf("apply v4: %v", err)
	}
	if present("v1") || !present("v2") || !present("v4") {
		t.Fatalf("after v4: v1 present %v, v2 %v, v4 %v; want v2 and v4 only", present("v1"), present("v2"), present("v4"))
	}
}

func TestDriverPullsWithTheDockerConfigsCredentials(t *testing.T) {
	f := setUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	private, err := images.StartPrivateRegistry("ci", "secret")
	if err != nil {
		t.Fatal(err)
	}
	defer private.Close()
	program, err := images.Program(ctx)
	if err != nil {
		t.Fatal(err)
	}
	img, err := images.App{Version: "private", Run: f.target.Namespace}.Image(program)
	if err != nil {
		t.Fatal(err)
	}
	if f.ref["private"], err = private.Push("shop/api", "private", img); err != nil {
		t.Fatal(err)
	}

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	err = f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "private"))
	if err == nil || !strings.Contains(err.Error(), "pull "+f.ref["private"]) {
		t.Fatalf("without credentials: %v, want a failed pull", err)
	}
	dir := t.TempDir()
	if err := images.WriteDockerConfig(dir, private.Host, private.Auth); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	if err := f.driver.Apply(ctx, f.target, agentstest.Release(f.ref, "private")); err != nil {
		t.Fatalf("with the Docker config's credentials: %v", err)
	}
	if _, digest, _ := f.inspect(t, "web-api"); digest != agentstest.DigestOf(f.ref["private"]) {
		t.Fatalf("runs %s, want the private image", digest)
	}
}
