// Package nomad starts a real Nomad agent for tests: Nomad v1.6.0, the last
// open-source release, built by hack/nomad/build, as a dev agent (server and
// client in one) bound to 127.0.0.1 on free ports, running tasks on the
// local Docker engine.
package nomad

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/hashicorp/nomad/api"
	"k8s.io/utils/ptr"

	"github.com/stella-ops/stella/test/tb"
)

// Agent is a running Nomad dev agent, with ACLs enforced.
type Agent struct {
	// Address is its HTTP API, http://127.0.0.1:PORT.
	Address string
	// Token is the management token made when the ACLs were bootstrapped.
	Token string
	// Client uses Token.
	Client *api.Client
}

// Binary is where hack/nomad/build puts nomad: $STELLA_NOMAD_BIN, else
// bin/nomad at the root of the repository.
func Binary() string {
	if b := os.Getenv("STELLA_NOMAD_BIN"); b != "" {
		return b
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return ""
	}
	return filepath.Join(filepath.Dir(string(out[:len(out)-1])), "bin", "nomad")
}

// Start runs a Nomad dev agent until the test ends. Without the binary it
// skips the test, or fails it when STELLA_REQUIRE_NOMAD is set, as .ci/run
// does after building it.
func Start(t tb.T) *Agent {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("these tests need Nomad v1.6.0 at %s: run hack/nomad/build (2-10 minutes)", bin)
		if os.Getenv("STELLA_REQUIRE_NOMAD") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	http, rpc, serf := tb.FreePort(t), tb.FreePort(t), tb.FreePort(t)
	// The cloud fingerprinters are denied: they would probe
	// 169.254.169.254, and tests reach nothing but loopback.
	config := fmt.Sprintf(`data_dir = %q
bind_addr = "127.0.0.1"
disable_update_check = true
acl {
  enabled = true
}
ports {
  http = %d
  rpc  = %d
  serf = %d
}
plugin "docker" {
  config {
    endpoint = "unix:///var/run/docker.sock"
  }
}
client {
  network_interface = "lo"
  options = {
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
}
`, filepath.Join(dir, "data"), http, rpc, serf)
	if err := os.WriteFile(filepath.Join(dir, "agent.hcl"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "nomad.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "agent", "-dev", "-bind", "127.0.0.1", "-config", filepath.Join(dir, "agent.hcl"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nomad: %v", err)
	}
	logs := func() string { data, _ := os.ReadFile(logFile.Name()); return tail(string(data), 4000) }
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logFile.Close()
		if t.Failed() {
			t.Logf("nomad said:\n%s", logs())
		}
	})
	a := &Agent{Address: fmt.Sprintf("http://127.0.0.1:%d", http)}
	if a.Client, err = api.NewClient(&api.Config{Address: a.Address}); err != nil {
		t.Fatal(err)
	}
	a.Token = bootstrapACL(t, a.Client, logs)
	a.Client.SetSecretID(a.Token)
	// Ready once its client node is up with a healthy docker driver.
	for deadline := time.Now().Add(60 * time.Second); ; {
		if dockerReady(a.Client) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("nomad's client did not become ready with the docker driver in 60s:\n%s", logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// bootstrapACL makes the management token, once the server has a leader.
func bootstrapACL(t tb.T, c *api.Client, logs func() string) string {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; {
		token, _, err := c.ACLTokens().Bootstrap(nil)
		if err == nil {
			return token.SecretID
		}
		if time.Now().After(deadline) {
			t.Fatalf("bootstrap nomad's ACLs: %v\n%s", err, logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Job is a service job as its owners would register it with nomad job run:
// two allocations of the docker task api running image with no network,
// rolled one at a time (after canaries first, when canaries > 0),
// auto-reverted, never restarted or rescheduled, so that a task that fails
// fails its deployment.
func Job(id, image string, canaries int) *api.Job {
	job := api.NewServiceJob(id, id, "global", 50)
	job.Datacenters = []string{"dc1"}
	group := api.NewTaskGroup("web", 2)
	group.Update = &api.UpdateStrategy{
		MaxParallel: ptr.To(1), Canary: ptr.To(canaries), HealthCheck: ptr.To("task_states"), MinHealthyTime: ptr.To(time.Second),
		HealthyDeadline: ptr.To(15 * time.Second), ProgressDeadline: ptr.To(25 * time.Second), AutoRevert: ptr.To(true),
	}
	group.RestartPolicy = &api.RestartPolicy{Attempts: ptr.To(0), Mode: ptr.To("fail")}
	group.ReschedulePolicy = &api.ReschedulePolicy{Attempts: ptr.To(0), Unlimited: ptr.To(false)}
	task := api.NewTask("api", "docker")
	task.Config = map[string]any{"image": image, "network_mode": "none"}
	task.Resources = &api.Resources{CPU: ptr.To(50), MemoryMB: ptr.To(32)}
	group.AddTask(task)
	job.AddTaskGroup(group)
	return job
}

// StopJob stops a job and waits until Nomad has stopped its allocations,
// so that nothing else removes their containers at the same time.
func (a *Agent) StopJob(t tb.T, id string) {
	t.Helper()
	if _, _, err := a.Client.Jobs().Deregister(id, false, nil); err != nil {
		t.Logf("stop job %s: %v", id, err)
		return
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		allocs, _, err := a.Client.Jobs().Allocations(id, true, nil)
		if err != nil {
			return
		}
		if !slices.ContainsFunc(allocs, func(al *api.AllocationListStub) bool {
			return al.ClientStatus == api.AllocClientStatusRunning || al.ClientStatus == api.AllocClientStatusPending
		}) {
			return
		}
	}
	t.Logf("the allocations of job %s did not stop in 30s", id)
}

// ReadOnlyToken makes a token that may read jobs in the default namespace
// but not submit them.
func (a *Agent) ReadOnlyToken(t tb.T) string {
	t.Helper()
	policy := &api.ACLPolicy{Name: "read-only", Rules: `namespace "default" { policy = "read" }`}
	if _, err := a.Client.ACLPolicies().Upsert(policy, nil); err != nil {
		t.Fatal(err)
	}
	token, _, err := a.Client.ACLTokens().Create(&api.ACLToken{Name: "read-only", Type: "client", Policies: []string{"read-only"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return token.SecretID
}

func dockerReady(c *api.Client) bool {
	nodes, _, err := c.Nodes().List(nil)
	if err != nil {
		return false
	}
	for _, n := range nodes {
		if d := n.Drivers["docker"]; n.Status == "ready" && d != nil && d.Detected && d.Healthy {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
