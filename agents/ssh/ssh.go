// Package ssh deploys to hosts where no agent may run. The server reaches
// the host over SSH and runs the Docker or Compose driver against it: the
// Engine API through the host's Docker socket, files and the compose CLI
// through SSH sessions, and the version sticker in the same place on the
// host as an agent would keep it.
package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/agents/compose"
	"github.com/stella-ops/stella/agents/docker"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Defaults for what a Target leaves unset.
const (
	DefaultPort     = 22
	DefaultStateDir = "/var/lib/stella"
	// DefaultDockerSocket is where the Engine listens on the host.
	DefaultDockerSocket = "/var/run/docker.sock"
	// DialTimeout bounds reaching the host and the SSH handshake.
	DialTimeout = 15 * time.Second
)

// HostKeyRecorder pins the host key a Target that trusts on first use saw
// first, in authorized_keys format, so that every later connection checks it.
type HostKeyRecorder func(ctx context.Context, target *v1alpha1.Target, hostKey string) error

// Driver deploys to SSH targets with the Docker or Compose driver.
type Driver struct {
	secrets       agents.SecretReader
	recordHostKey HostKeyRecorder
}

var _ agents.Driver = &Driver{}

// New returns a driver that reads private keys with secrets and pins
// first-use host keys with recordHostKey.
func New(secrets agents.SecretReader, recordHostKey HostKeyRecorder) *Driver {
	return &Driver{secrets: secrets, recordHostKey: recordHostKey}
}

// Observe reports what runs on the host, changing nothing.
func (d *Driver) Observe(ctx context.Context, target *v1alpha1.Target) (agents.Observed, error) {
	var o agents.Observed
	err := d.with(ctx, target, func(driver agents.Driver, onHost *v1alpha1.Target) (err error) {
		o, err = driver.Observe(ctx, onHost)
		return err
	})
	return o, err
}

// Apply makes the host run desired.
func (d *Driver) Apply(ctx context.Context, target *v1alpha1.Target, desired agents.Desired) error {
	return d.with(ctx, target, func(driver agents.Driver, onHost *v1alpha1.Target) error {
		return driver.Apply(ctx, onHost, desired)
	})
}

// Rollback makes the host run previous again.
func (d *Driver) Rollback(ctx context.Context, target *v1alpha1.Target, previous agents.Desired) error {
	return d.with(ctx, target, func(driver agents.Driver, onHost *v1alpha1.Target) error {
		return driver.Rollback(ctx, onHost, previous)
	})
}

// with connects to the target's host and calls f with the driver that runs
// there, and the Target as that driver reads it.
func (d *Driver) with(ctx context.Context, target *v1alpha1.Target, f func(agents.Driver, *v1alpha1.Target) error) error {
	settings := target.Spec.SSH
	if settings == nil {
		return errors.New("the Target has no spec.ssh settings")
	}
	conn, err := d.Connect(ctx, target)
	if err != nil {
		return err
	}
	defer conn.Close()
	engine, err := conn.Docker(DefaultDockerSocket)
	if err != nil {
		return err
	}
	defer engine.Close()
	onHost := target.DeepCopy()
	var driver agents.Driver
	switch settings.Driver {
	case v1alpha1.TargetTypeDocker:
		driver = docker.New(engine, conn, DefaultStateDir)
	case v1alpha1.TargetTypeCompose:
		if settings.Compose == nil {
			return errors.New("spec.ssh.compose is required when spec.ssh.driver is compose")
		}
		onHost.Spec.Compose = settings.Compose
		if driver, err = compose.New(ctx, engine, conn, DefaultStateDir); err != nil {
			return err
		}
	default:
		return fmt.Errorf("spec.ssh.driver %q is not docker or compose", settings.Driver)
	}
	return f(driver, onHost)
}

// Connect opens an SSH connection to the target's host, authenticated with
// the Target's private key, after checking the host's key.
func (d *Driver) Connect(ctx context.Context, target *v1alpha1.Target) (*Conn, error) {
	s := target.Spec.SSH
	key, err := agents.SecretKey(ctx, d.secrets, target.Namespace, s.PrivateKeySecretRef)
	if err != nil {
		return nil, fmt.Errorf("read the private key (Target spec.ssh.privateKeySecretRef): %w", err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("the private key in Secret %s key %s (Target spec.ssh.privateKeySecretRef) does not parse: %w; store an unencrypted OpenSSH or PEM private key",
			s.PrivateKeySecretRef.Name, s.PrivateKeySecretRef.Key, err)
	}
	port := int(s.Port)
	if port == 0 {
		port = DefaultPort
	}
	addr := net.JoinHostPort(s.Host, strconv.Itoa(port))
	check, err := newHostKeyCheck(s, addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("reach ssh host %s: %w", addr, err)
	}
	deadline, _ := ctx.Deadline()
	_ = raw.SetDeadline(deadline)
	cc, chans, reqs, err := ssh.NewClientConn(raw, addr, &ssh.ClientConfig{
		User: s.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: check.callback, Timeout: DialTimeout,
		HostKeyAlgorithms: check.algorithms(),
	})
	if err != nil {
		raw.Close()
		if check.refused != nil {
			return nil, check.refused
		}
		return nil, fmt.Errorf("log in to ssh host %s as %s: %w", addr, s.User, err)
	}
	_ = raw.SetDeadline(time.Time{})
	conn := &Conn{client: ssh.NewClient(cc, chans, reqs), name: s.User + "@" + addr}
	if check.firstUse != nil {
		if err := d.recordHostKey(ctx, target, string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(check.firstUse)))); err != nil {
			conn.Close()
			return nil, fmt.Errorf("pin the host key of %s seen on first use: %w", addr, err)
		}
	}
	return conn, nil
}

// hostKeyCheck checks a host's key against the Target's pin, or takes it on
// first use when the Target allows that.
type hostKeyCheck struct {
	pinned  ssh.PublicKey
	tofu    bool
	addr    string
	refused error
	// firstUse is the key taken on first use, to be pinned.
	firstUse ssh.PublicKey
}

func newHostKeyCheck(s *v1alpha1.SSHTarget, addr string) (*hostKeyCheck, error) {
	c := &hostKeyCheck{tofu: s.TrustOnFirstUse, addr: addr}
	if s.HostKey == "" {
		return c, nil
	}
	pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.HostKey))
	if err != nil {
		return nil, fmt.Errorf("spec.ssh.hostKey of the Target does not parse as an authorized_keys line (such as the output of ssh-keyscan without the host name): %w", err)
	}
	c.pinned = pinned
	return c, nil
}

// algorithms asks the host for the kind of key that is pinned, since a host
// with several keys would otherwise present whichever it prefers.
func (c *hostKeyCheck) algorithms() []string {
	switch {
	case c.pinned == nil:
		return nil
	case c.pinned.Type() == ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	default:
		return []string{c.pinned.Type()}
	}
}

func (c *hostKeyCheck) callback(_ string, _ net.Addr, key ssh.PublicKey) error {
	switch {
	case c.pinned != nil && bytes.Equal(key.Marshal(), c.pinned.Marshal()):
		return nil
	case c.pinned != nil:
		c.refused = fmt.Errorf("ssh host %s presented host key %s, not the one pinned in Target spec.ssh.hostKey (%s): refusing to connect; if the host was re-keyed, put its new key in spec.ssh.hostKey",
			c.addr, ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(c.pinned))
	case c.tofu:
		c.firstUse = key
		return nil
	default:
		c.refused = fmt.Errorf("ssh host %s: Target spec.ssh.hostKey is empty and spec.ssh.trustOnFirstUse is off: pin the host's key (ssh-keyscan -p PORT HOST) in spec.ssh.hostKey", c.addr)
	}
	return c.refused
}
