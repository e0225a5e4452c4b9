// Package images builds the small container images Stella's tests deploy
// and serves them from go-containerregistry's registry on 127.0.0.1, which
// dockerd pulls from without TLS (it treats 127.0.0.0/8 as insecure).
//
// Every image carries the label LabelTestRun, and containers inherit their
// image's labels, so a test removes all it made with Cleanup, also when it
// fails.
package images

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// LabelTestRun marks images, and through them containers, made by a test run.
const LabelTestRun = "stella-ops.org/test-run"

// Registry is an in-process OCI registry on 127.0.0.1.
type Registry struct {
	// Host is host:port of the registry.
	Host string
	// Auth is the credential the registry wants; nil when it wants none.
	Auth *authn.Basic
	srv  *http.Server
}

// StartRegistry serves an empty registry on a free port of 127.0.0.1.
func StartRegistry() (*Registry, error) {
	return start(nil)
}

// StartPrivateRegistry serves an empty registry that wants basic auth
// user:password.
func StartPrivateRegistry(user, password string) (*Registry, error) {
	return start(&authn.Basic{Username: user, Password: password})
}

func start(auth *authn.Basic) (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	handler := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if auth != nil {
		open := handler
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if user, pass, ok := r.BasicAuth(); !ok || user != auth.Username || pass != auth.Password {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			open.ServeHTTP(w, r)
		})
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &Registry{Host: ln.Addr().String(), Auth: auth, srv: srv}, nil
}

// WriteDockerConfig writes dir/config.json holding auth for the registry
// at host, for a process run with DOCKER_CONFIG=dir.
func WriteDockerConfig(dir, host string, auth *authn.Basic) error {
	token := base64.StdEncoding.EncodeToString([]byte(auth.Username + ":" + auth.Password))
	data, err := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": token}}})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600)
}

// Close stops the registry.
func (r *Registry) Close() error { return r.srv.Close() }

// Push stores img as repo:tag and returns its reference pinned by digest,
// host/repo@sha256:….
func (r *Registry) Push(repo, tag string, img v1.Image) (string, error) {
	ref, err := name.NewTag(r.Host + "/" + repo + ":" + tag)
	if err != nil {
		return "", err
	}
	opts := []remote.Option{}
	if r.Auth != nil {
		opts = append(opts, remote.WithAuth(r.Auth))
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	return r.Host + "/" + repo + "@" + digest.String(), nil
}

// App describes one build of the test program.
type App struct {
	// Version is served by the program and set as $VERSION.
	Version string
	// Unhealthy makes the program fail its health check.
	Unhealthy bool
	// Crash makes the program exit with code 1 as soon as it starts.
	Crash bool
	// Run labels the image with LabelTestRun.
	Run string
	// CheckEvery is the health check's interval; 250ms when zero.
	CheckEvery time.Duration
}

// Image is a FROM scratch image holding the static test program at /app,
// with a health check that probes it every CheckEvery.
func (a App) Image(program []byte) (v1.Image, error) {
	layer, err := Layer(File{Name: "app", Mode: 0o755, Body: program})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{"/app"}
	cf.Config.Env = []string{"VERSION=" + a.Version, "ADDR=127.0.0.1:8080"}
	if a.Unhealthy {
		cf.Config.Env = append(cf.Config.Env, "HEALTHY=no")
	}
	if a.Crash {
		cf.Config.Env = append(cf.Config.Env, "CRASH=yes")
	}
	cf.Config.Labels = map[string]string{LabelTestRun: a.Run}
	cf.Config.Healthcheck = &v1.HealthConfig{
		Test: []string{"CMD", "/app", "check"}, Interval: cmp.Or(a.CheckEvery, 250*time.Millisecond), Timeout: 2 * time.Second, Retries: 3,
	}
	return mutate.ConfigFile(img, cf)
}

// File is one entry of a layer.
type File struct {
	Name string
	// Mode defaults to 0644.
	Mode int64
	Body []byte
	// Typeflag defaults to a regular file; Linkname is a link's target.
	Typeflag byte
	Linkname string
}

// Layer is an uncompressed tar layer holding files, in order.
func Layer(files ...File) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.Name, Mode: cmp.Or(f.Mode, 0o644), Size: int64(len(f.Body)), Typeflag: cmp.Or(f.Typeflag, tar.TypeReg), Linkname: f.Linkname}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerBytes)), nil })
}

var (
	programOnce sync.Once
	program     []byte
	programErr  error
)

// Program builds test/tools/app as a static linux/amd64 binary, once per
// test process.
func Program(ctx context.Context) ([]byte, error) {
	programOnce.Do(func() {
		var root []byte
		root, programErr = exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if programErr != nil {
			return
		}
		dir, err := os.MkdirTemp("", "stella-test-app-")
		if err != nil {
			programErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "app")
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./test/tools/app")
		build.Dir = filepath.Dir(string(bytes.TrimSpace(root)))
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if msg, err := build.CombinedOutput(); err != nil {
			programErr = fmt.Errorf("build the test app: %w\n%s", err, msg)
			return
		}
		program, programErr = os.ReadFile(out)
	})
	return program, programErr
}

// Versions are the builds of the test app that the stories deploy: v1, v2
// and v4 healthy, v3 failing its health check, and crash exiting at once.
var Versions = []App{{Version: "v1"}, {Version: "v2"}, {Version: "v3", Unhealthy: true}, {Version: "v4"}, {Version: "crash", Crash: true}}

// PushVersions pushes Versions, labelled with run, to repo and returns
// their references by digest, by version.
func (r *Registry) PushVersions(ctx context.Context, repo, run string) (map[string]string, error) {
	program, err := Program(ctx)
	if err != nil {
		return nil, err
	}
	refs := map[string]string{}
	for _, app := range Versions {
		app.Run = run
		img, err := app.Image(program)
		if err != nil {
			return nil, err
		}
		if refs[app.Version], err = r.Push(repo, app.Version, img); err != nil {
			return nil, err
		}
	}
	return refs, nil
}
