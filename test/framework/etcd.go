package framework

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"time"
)

// Etcd is an external single-member etcd cluster on loopback.
type Etcd struct {
	ClientURL string
	dir       string
	cmd       *exec.Cmd
}

// StartEtcd runs the etcd binary built from the embedded etcd's module and
// waits until it is healthy.
func StartEtcd(bin Binaries) (*Etcd, error) {
	dir, err := os.MkdirTemp("", "stella-test-etcd-")
	if err != nil {
		return nil, err
	}
	client, err := FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	peer, err := FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	e := &Etcd{ClientURL: "http://" + client, dir: dir}
	e.cmd = exec.Command(bin.Etcd(),
		"--name", "test", "--data-dir", dir, "--log-level", "error",
		"--listen-client-urls", e.ClientURL, "--advertise-client-urls", e.ClientURL,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "test=http://"+peer)
	e.cmd.Stdout, e.cmd.Stderr = os.Stderr, os.Stderr
	if err := e.cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(e.ClientURL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return e, nil
			}
		}
	}
	e.Stop()
	return nil, fmt.Errorf("etcd on %s not healthy after 30s", e.ClientURL)
}

// Stop ends etcd and removes its data.
func (e *Etcd) Stop() {
	_ = e.cmd.Process.Kill()
	_ = e.cmd.Wait()
	os.RemoveAll(e.dir)
}
