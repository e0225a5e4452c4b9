// Package sshd starts a real OpenSSH server for tests: Debian's sshd, run as
// root on 127.0.0.1 on a free port, with a host key and one authorized
// client key made for the test.
package sshd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/stella-ops/stella/test/tb"
)

// Binary is where Debian's openssh-server installs sshd.
const Binary = "/usr/sbin/sshd"

// Server is a running sshd.
type Server struct {
	Host string
	Port int
	// User is the user the client key logs in as.
	User string
	// HostKey is the server's public host key, in authorized_keys format.
	HostKey string
	// ClientKey is the authorized private key, PEM-encoded.
	ClientKey []byte
}

// Start runs sshd until the test ends. Without sshd or root it skips the
// test, or fails it when STELLA_REQUIRE_SSHD is set, as .ci/run does after
// installing sshd.
func Start(t tb.T) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil || os.Geteuid() != 0 {
		msg := fmt.Sprintf("these tests need Debian's openssh-server (%s) and root: apt-get install openssh-server", Binary)
		if os.Getenv("STELLA_REQUIRE_SSHD") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	hostKey, hostPub := NewKey(t)
	clientKey, clientPub := NewKey(t)
	write(t, filepath.Join(dir, "host_key"), hostKey, 0o600)
	write(t, filepath.Join(dir, "authorized_keys"), []byte(clientPub+"\n"), 0o600)
	port := tb.FreePort(t)
	config := fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
AuthorizedKeysFile %s
PidFile %s
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
`, port, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "sshd.pid"))
	write(t, filepath.Join(dir, "sshd_config"), []byte(config), 0o600)
	// sshd's privilege separation needs this directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "sshd.log")
	cmd := exec.Command(Binary, "-D", "-E", logFile, "-f", filepath.Join(dir, "sshd_config"))
	// Its own process group, so that the per-connection processes it forks
	// stop with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	log := func() string { data, _ := os.ReadFile(logFile); return string(data) }
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("sshd said:\n%s", log())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(15 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %s: %v\n%s", addr, err, log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &Server{Host: "127.0.0.1", Port: port, User: "root", HostKey: hostPub, ClientKey: clientKey}
}

// NewKey makes an ed25519 key pair: the private key PEM-encoded in OpenSSH
// format, the public key as an authorized_keys line.
func NewKey(t tb.T) (private []byte, public string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(sshPub)))
}

func write(t tb.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}
