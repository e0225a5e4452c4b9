package images

import (
	"context"
	"testing"

	"github.com/moby/moby/client"
	"k8s.io/apimachinery/pkg/util/rand"
)

// SetUp is what a driver test needs: a client of the local Docker engine, and
// Versions pushed to a registry on 127.0.0.1 under repo. Everything the test
// makes from those images is removed when it ends. It returns the run label
// too, unique to the test.
func SetUp(t testing.TB, repo string) (docker *client.Client, refs map[string]string, run string) {
	t.Helper()
	ctx := context.Background()
	docker, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docker.Ping(ctx, client.PingOptions{}); err != nil {
		t.Fatalf("this test needs a Docker engine (DOCKER_HOST or /var/run/docker.sock): %v", err)
	}
	run = "test-" + rand.String(8)
	t.Cleanup(func() {
		if err := Cleanup(context.Background(), docker, run); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
	reg, err := StartRegistry()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	if refs, err = reg.PushVersions(ctx, repo, run); err != nil {
		t.Fatal(err)
	}
	return docker, refs, run
}
