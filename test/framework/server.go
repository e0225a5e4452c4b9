package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/internal/scheme"
)

// readyLine is what `stella serve` logs once it serves the API.
const readyLine = "Stella control plane is ready"

// Server is a running `stella serve` process.
type Server struct {
	DataDir string
	Listen  string
	LogFile string
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
}

// ServerOptions configure StartServer. Zero values mean a fresh temporary
// data directory, a free loopback port, embedded etcd and the reconcilers on.
type ServerOptions struct {
	DataDir     string
	Listen      string
	EtcdServers []string
	// NoControllers serves the API only (--controllers=false).
	NoControllers bool
	// Args are extra flags.
	Args []string
	// Env is extra environment, such as GOMEMLIMIT.
	Env []string
	// AddressSpace, when not zero, caps the server's virtual memory at this
	// many bytes (RLIMIT_AS, set by prlimit before it starts): a hard bound,
	// which an allocation cannot pass as it can pass GOMEMLIMIT. Embedded
	// etcd alone maps about 10 GiB of address space.
	AddressSpace uint64
}

// StartServer starts `stella serve` and waits until it is ready.
func StartServer(bin Binaries, o ServerOptions) (*Server, error) {
	s, err := LaunchServer(bin, o)
	if err != nil {
		return nil, err
	}
	if err := s.WaitReady(90 * time.Second); err != nil {
		s.Kill()
		return nil, err
	}
	return s, nil
}

// LaunchServer starts `stella serve` without waiting for it to be ready, for
// tests that expect it to fail.
func LaunchServer(bin Binaries, o ServerOptions) (*Server, error) {
	if o.DataDir == "" {
		dir, err := os.MkdirTemp("", "stella-test-data-")
		if err != nil {
			return nil, err
		}
		o.DataDir = dir
	}
	if o.Listen == "" {
		addr, err := FreeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		o.Listen = addr
	}
	args := []string{"serve", "--data-dir", o.DataDir, "--listen", o.Listen}
	if len(o.EtcdServers) > 0 {
		args = append(args, "--etcd-servers", strings.Join(o.EtcdServers, ","))
	}
	if o.NoControllers {
		args = append(args, "--controllers=false")
	}
	args = append(args, o.Args...)
	cmd := exec.Command(bin.Stella, args...)
	if o.AddressSpace > 0 {
		// prlimit sets the limit on itself and executes the server, which
		// keeps its process ID.
		cmd = exec.Command("prlimit", append([]string{fmt.Sprintf("--as=%d", o.AddressSpace), "--", bin.Stella}, args...)...)
	}
	cmd.Env = append(os.Environ(), o.Env...)
	log, err := os.CreateTemp("", "stella-serve-*.log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	s := &Server{DataDir: o.DataDir, Listen: o.Listen, LogFile: log.Name(), cmd: cmd, exited: make(chan struct{})}
	go func() {
		s.exitErr = cmd.Wait()
		log.Close()
		close(s.exited)
	}()
	return s, nil
}

// WaitReady waits for the ready line; it fails early with the log when the
// process exits.
func (s *Server) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(s.Log(), readyLine) {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("stella serve exited before it was ready (%v):\n%s", s.exitErr, s.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("stella serve not ready after %s:\n%s", timeout, s.Log())
}

// Log is everything the server printed so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

// Pid is the server's process ID.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Wait waits for the process to exit and returns its exit error.
func (s *Server) Wait(timeout time.Duration) error {
	select {
	case <-s.exited:
		return s.exitErr
	case <-time.After(timeout):
		return fmt.Errorf("stella serve still running after %s", timeout)
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (s *Server) Stop() error {
	select {
	case <-s.exited:
		return s.exitErr
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	return s.Wait(60 * time.Second)
}

// Kill ends the process at once, as a crash would.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// Kubeconfig is the admin kubeconfig the server wrote.
func (s *Server) Kubeconfig() string { return filepath.Join(s.DataDir, "admin.kubeconfig") }

// AdminConfig is a REST config with the admin credential, for this
// server: replicas that share a data directory each rewrite its kubeconfig
// with their own address.
func (s *Server) AdminConfig() *rest.Config {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
	if err != nil {
		panic(fmt.Sprintf("load %s: %v", s.Kubeconfig(), err))
	}
	cfg.Host = "https://" + s.Listen
	cfg.QPS, cfg.Burst = 200, 400
	return cfg
}

// AdminClient is a controller-runtime client with the admin credential.
func (s *Server) AdminClient() client.Client {
	return mustClient(s.AdminConfig())
}

func mustClient(cfg *rest.Config) client.Client {
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		panic(err)
	}
	return c
}

// FreeLoopbackAddr is a free 127.0.0.1:port.
func FreeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Cleanup stops the server (killing it if it does not stop) and removes
// its data directory and log unless the test failed.
func (s *Server) Cleanup(failed bool) {
	if err := s.Stop(); err != nil && !errors.Is(err, context.Canceled) {
		s.Kill()
	}
	if failed {
		fmt.Fprintf(os.Stderr, "kept the data of the stella serve that ran during a failure: %s, log %s\n", s.DataDir, s.LogFile)
		return
	}
	os.RemoveAll(s.DataDir)
	os.Remove(s.LogFile)
}

// Run runs a binary with args and returns its combined output.
func Run(ctx context.Context, binary string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
