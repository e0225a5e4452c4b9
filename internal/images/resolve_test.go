package images

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pushRandom serves a registry on 127.0.0.1 and pushes a random image to
// repo:tag there; it returns the registry's host:port and the image digest.
func pushRandom(t *testing.T, repo, tag string) (host, digest string) {
	t.Helper()
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return host, d.String()
}

func TestPin(t *testing.T) {
	host, digest := pushRandom(t, "shop/api", "2.3.1")
	r := Resolver{}
	for _, tc := range []struct {
		name, ref, want, wantErr string
	}{
		{name: "tag", ref: host + "/shop/api:2.3.1", want: host + "/shop/api@" + digest},
		{name: "digest that exists", ref: host + "/shop/api@" + digest, want: host + "/shop/api@" + digest},
		{name: "unknown tag", ref: host + "/shop/api:9.9.9", wantErr: "resolve " + host + "/shop/api:9.9.9"},
		{name: "digest that does not exist", ref: host + "/shop/api@sha256:" + strings.Repeat("0", 64), wantErr: "resolve"},
		{name: "not a reference", ref: "Shop/API::1", wantErr: "is not an image reference"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Pin(context.Background(), tc.ref)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Pin(%q) = %q, %v; want an error containing %q", tc.ref, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Pin(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
			}
		})
	}
}

func TestRepositoryKeepsWhatTheUserMeant(t *testing.T) {
	for ref, want := range map[string]string{
		"nginx:1.27":                        "docker.io/library/nginx",
		"docker.io/library/nginx:1.27":      "docker.io/library/nginx",
		"grafana/grafana:11":                "docker.io/grafana/grafana",
		"127.0.0.1:5000/shop/api:1":         "127.0.0.1:5000/shop/api",
		"registry.example.com/team/app/api": "registry.example.com/team/app/api",
	} {
		parsed, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := repository(parsed); got != want {
			t.Errorf("repository(%q) = %q, want %q", ref, got, want)
		}
	}
}
