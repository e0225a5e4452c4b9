package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/stella-ops/stella/agents"
)

// missingFile is the exit status of ReadFile's script for a missing file.
const missingFile = 44

// Conn is one SSH connection to a target host: its files, its commands and
// its Docker Engine.
type Conn struct {
	client *ssh.Client
	// name is user@host:port, for messages.
	name string
}

var _ agents.Host = (*Conn)(nil)

// Name says which host this is.
func (c *Conn) Name() string { return "ssh host " + c.name }

// Close ends the connection and everything that runs over it.
func (c *Conn) Close() error { return c.client.Close() }

// ReadFile reads a file on the host.
func (c *Conn) ReadFile(ctx context.Context, path string) ([]byte, error) {
	q := quote(path)
	script := fmt.Sprintf("if [ -e %s ]; then exec cat -- %s; else exit %d; fi", q, q, missingFile)
	var stdout, stderr bytes.Buffer
	err := c.run(ctx, script, nil, &stdout, &stderr)
	var exit *ssh.ExitError
	if errors.As(err, &exit) && exit.ExitStatus() == missingFile {
		return nil, fmt.Errorf("%s: %w", path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, withOutput(err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// WriteFile writes a file on the host atomically: into a temporary file
// next to it, renamed over it once complete.
func (c *Conn) WriteFile(ctx context.Context, path string, data []byte) error {
	dir := quote(filepath.Dir(path))
	script := fmt.Sprintf(`set -e; mkdir -p %s; t=$(mktemp %s); trap 'rm -f "$t"' EXIT; cat > "$t"; chmod 0644 "$t"; mv -f "$t" %s`,
		dir, quote(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".XXXXXX")), quote(path))
	var out bytes.Buffer
	combined := &lockedWriter{w: &out}
	if err := c.run(ctx, script, bytes.NewReader(data), combined, combined); err != nil {
		return withOutput(err, out.String())
	}
	return nil
}

// Run runs a command on the host, in dir when it is set.
func (c *Conn) Run(ctx context.Context, dir string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command to run")
	}
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = quote(a)
	}
	script := "exec " + strings.Join(quoted, " ")
	if dir != "" {
		script = "cd " + quote(dir) + " && " + script
	}
	var out bytes.Buffer
	combined := &lockedWriter{w: &out}
	err := c.run(ctx, script, nil, combined, combined)
	return out.Bytes(), err
}

// run runs a shell script in a new session, ending it when ctx ends.
func (c *Conn) run(ctx context.Context, script string, stdin io.Reader, stdout, stderr io.Writer) error {
	session, err := c.client.NewSession()
	if err != nil {
		return fmt.Errorf("open a session on %s: %w", c.Name(), err)
	}
	defer session.Close()
	if stdin != nil {
		session.Stdin = stdin
	}
	session.Stdout, session.Stderr = stdout, stderr
	if err := session.Start(script); err != nil {
		return fmt.Errorf("run on %s: %w", c.Name(), err)
	}
	done := make(chan error, 1)
	go func() { done <- session.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// Closing the session hangs the remote command up.
		_ = session.Signal(ssh.SIGKILL)
		_ = session.Close()
		return fmt.Errorf("run on %s: %w", c.Name(), context.Cause(ctx))
	}
}

// Docker is a client of the host's Docker Engine, reached through its
// socket over this connection (OpenSSH's streamlocal forwarding, on by
// default in sshd_config as AllowStreamLocalForwarding).
func (c *Conn) Docker(socket string) (*client.Client, error) {
	return client.New(
		client.WithHost("unix://"+socket),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := c.client.DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, fmt.Errorf("reach the Docker socket %s on %s (is the user in the docker group, and stream forwarding allowed?): %w", socket, c.Name(), err)
			}
			return conn, nil
		}),
	)
}

// lockedWriter lets a command's stdout and stderr, copied by two
// goroutines, go to one buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// quote makes s one word for a POSIX shell.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// withOutput adds what the remote command printed to its error.
func withOutput(err error, out string) error {
	out = strings.TrimSpace(out)
	if out == "" {
		return err
	}
	if len(out) > 300 {
		out = out[len(out)-300:]
	}
	return fmt.Errorf("%w: %s", err, out)
}
