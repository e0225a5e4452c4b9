package ssh

import (
	"context"
	"errors"
	"os"
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
	"github.com/stella-ops/stella/test/sshd"
	"github.com/stella-ops/stella/test/tb"
)

// These tests run a real OpenSSH server on 127.0.0.1 in front of this
// machine's Docker engine: the "remote" host is this one, reached only
// through SSH.

type fixture struct {
	server  *sshd.Server
	driver  *Driver
	target  *v1alpha1.Target
	secrets map[string][]byte
	// pinned collects the host keys recorded on first use.
	pinned []string
}

func setUp(t *testing.T) *fixture {
	t.Helper()
	srv := sshd.Start(t)
	f := &fixture{server: srv, secrets: map[string][]byte{"deploy-key/id": srv.ClientKey}}
	f.driver = New(func(_ context.Context, _, name string) (map[string][]byte, error) {
		data := map[string][]byte{}
		for nameKey, v := range f.secrets {
			if n, key, _ := strings.Cut(nameKey, "/"); n == name {
				data[key] = v
			}
		}
		if len(data) == 0 {
			return nil, errors.New("no such secret")
		}
		return data, nil
	}, func(_ context.Context, _ *v1alpha1.Target, key string) error {
		f.pinned = append(f.pinned, key)
		return nil
	})
	f.target = &v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "edge"},
		Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeSSH, StickerPath: filepath.Join(t.TempDir(), "edge", agents.StickerFile), SSH: &v1alpha1.SSHTarget{
			Host: srv.Host, Port: int32(srv.Port), User: srv.User, HostKey: srv.HostKey, Driver: v1alpha1.TargetTypeDocker,
			PrivateKeySecretRef: v1alpha1.SecretKeyReference{Name: "deploy-key", Key: "id"},
		}},
	}
	return f
}

func TestConnHostFilesAndCommands(t *testing.T) {
	f := setUp(t)
	ctx := t.Context()
	conn, err := f.driver.Connect(ctx, f.target)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	path := filepath.Join(t.TempDir(), "it's here", "file.json")
	if _, err := conn.ReadFile(ctx, path); !agents.IsNotExist(err) {
		t.Fatalf("reading a missing file: %v, want not-exist", err)
	}
	if err := conn.WriteFile(ctx, path, []byte("one\n")); err != nil {
		t.Fatal(err)
	}
	if err := conn.WriteFile(ctx, path, []byte("two $HOME `id`\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := conn.ReadFile(ctx, path); err != nil || string(got) != "two $HOME `id`\n" {
		t.Fatalf("read back %q, %v", got, err)
	}
	out, err := conn.Run(ctx, filepath.Dir(path), "sh", "-c", `pwd; echo "$1"`, "sh", "a b; c")
	if err != nil || string(out) != filepath.Dir(path)+"\na b; c\n" {
		t.Fatalf("run: %q, %v", out, err)
	}
	if out, err := conn.Run(ctx, "", "sh", "-c", "echo broken >&2; exit 3"); err == nil || !strings.Contains(string(out), "broken") {
		t.Fatalf("a failing command: %q, %v", out, err)
	}
	slow, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := conn.Run(slow, "", "sleep", "30"); err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("a command past its deadline: %v after %s", err, time.Since(start))
	}
}

func TestHostKeyIsCheckedBeforeAnythingRuns(t *testing.T) {
	f := setUp(t)
	ctx := t.Context()
	_, otherKey := sshd.NewKey(t)

	wrong := f.target.DeepCopy()
	wrong.Spec.SSH.HostKey = otherKey
	err := f.driver.Apply(ctx, wrong, agents.Desired{Release: "never"})
	if err == nil || !strings.Contains(err.Error(), "not the one pinned in Target spec.ssh.hostKey") {
		t.Fatalf("a wrong host key: %v, want a refusal naming spec.ssh.hostKey", err)
	}

	unpinned := f.target.DeepCopy()
	unpinned.Spec.SSH.HostKey = ""
	if _, err := f.driver.Observe(ctx, unpinned); err == nil || !strings.Contains(err.Error(), "trustOnFirstUse is off") {
		t.Fatalf("no host key and no trust on first use: %v", err)
	}
	if len(f.pinned) != 0 {
		t.Fatalf("a host key was pinned without trust on first use: %v", f.pinned)
	}

	unpinned.Spec.SSH.TrustOnFirstUse = true
	conn, err := f.driver.Connect(ctx, unpinned)
	if err != nil {
		t.Fatalf("trust on first use: %v", err)
	}
	conn.Close()
	if len(f.pinned) != 1 || f.pinned[0] != f.server.HostKey {
		t.Fatalf("pinned %v on first use, want the server's key %s", f.pinned, f.server.HostKey)
	}

	badKey := f.target.DeepCopy()
	f.secrets["deploy-key/other"] = []byte("not a key")
	badKey.Spec.SSH.PrivateKeySecretRef.Key = "other"
	if _, err := f.driver.Observe(ctx, badKey); err == nil || !strings.Contains(err.Error(), "spec.ssh.privateKeySecretRef") {
		t.Fatalf("an unparsable private key: %v", err)
	}

	unreachable := f.target.DeepCopy()
	unreachable.Spec.SSH.Port = int32(tb.FreePort(t))
	if _, err := f.driver.Observe(ctx, unreachable); err == nil || !strings.Contains(err.Error(), "reach ssh host") {
		t.Fatalf("an unreachable host: %v", err)
	}
}

func TestDockerOverSSHDeploysAndWritesTheStickerOnTheHost(t *testing.T) {
	f := setUp(t)
	engine, refs, run := images.SetUp(t, "shop/edge")
	f.target.Name = "edge-" + run[len(run)-6:]
	f.target.Spec.Components = []v1alpha1.ComponentTemplate{{Name: "api", Network: "none"}}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	container := f.target.Name + "-api"
	t.Cleanup(func() {
		_, _ = engine.ContainerRemove(context.Background(), container, client.ContainerRemoveOptions{Force: true})
	})

	if err := f.driver.Apply(ctx, f.target, agentstest.Release(refs, "v1")); err != nil {
		t.Fatalf("apply v1 over ssh: %v", err)
	}
	res, err := engine.ContainerInspect(ctx, container, client.ContainerInspectOptions{})
	if err != nil || !res.Container.State.Running || res.Container.Config.Labels[agents.LabelDigest] != agentstest.DigestOf(refs["v1"]) {
		t.Fatalf("after v1 the container is %+v, %v", res.Container.State, err)
	}
	sticker, err := agents.ReadSticker(ctx, agents.LocalHost{}, f.target.Spec.StickerPath)
	if err != nil || sticker == nil || sticker.Release != "shop-v1" {
		t.Fatalf("the sticker on the host: %+v, %v", sticker, err)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Running.Release != "shop-v1" {
		t.Fatalf("observed over ssh after v1: %+v", a)
	}

	if err := f.driver.Apply(ctx, f.target, agentstest.Release(refs, "v3")); err == nil || !strings.Contains(err.Error(), "health check") {
		t.Fatalf("apply of the unhealthy v3 over ssh: %v", err)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Running.Release != "shop-v1" {
		t.Fatalf("after the failed v3, v1 should still run: %+v", a)
	}
}

func TestComposeOverSSHPinsTheProjectOnTheHost(t *testing.T) {
	f := setUp(t)
	engine, refs, run := images.SetUp(t, "shop/edge")
	registry := refs["v1"][:strings.IndexByte(refs["v1"], '/')]
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte("services:\n  api:\n    image: "+registry+"/shop/edge:v1\n    network_mode: ${NETWORK}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("NETWORK=none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	project := "edge-" + run[len(run)-6:]
	f.target.Spec.SSH.Driver = v1alpha1.TargetTypeCompose
	f.target.Spec.SSH.Compose = &v1alpha1.ComposeTarget{ProjectName: project, File: file}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		list, _ := engine.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", "com.docker.compose.project="+project)})
		for _, c := range list.Items {
			_, _ = engine.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true})
		}
	})

	if err := f.driver.Apply(ctx, f.target, agentstest.Release(refs, "v1")); err != nil {
		t.Fatalf("apply v1 over ssh: %v", err)
	}
	lock, err := os.ReadFile(filepath.Join(dir, "compose.stella.lock.yml"))
	if err != nil || !strings.Contains(string(lock), refs["v1"]) || !strings.Contains(string(lock), "network_mode: none") {
		t.Fatalf("the lock file on the host, interpolated with the .env next to it: %s, %v", lock, err)
	}
	if a := agentstest.Assess(t, f.driver, f.target); a.Drift != v1alpha1.DriftInSync || a.Running.Release != "shop-v1" {
		t.Fatalf("observed over ssh after v1: %+v", a)
	}
}
