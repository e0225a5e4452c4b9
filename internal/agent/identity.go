package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certcsr "k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/connrotation"

	"github.com/stella-ops/stella/internal/agentauth/agentid"
	"github.com/stella-ops/stella/internal/pki"
)

// Files of an agent's identity in its credentials directory.
const (
	keyFile    = "agent.key"
	certFile   = "agent.crt"
	caFile     = "ca.crt"
	serverFile = "server"
)

// approvalTimeout bounds the wait for the server to sign a request.
const approvalTimeout = 2 * time.Minute

// joinRetryTimeout bounds how long a certificate request refused as
// Unauthorized is made again, while the server's token cache catches up.
const joinRetryTimeout = 10 * time.Second

// JoinOptions are what `stellactl agent join-token` prints.
type JoinOptions struct {
	Server, CAHash, Token string
	// CertTTL is how long the agent's certificates are asked to live.
	CertTTL time.Duration
}

// Identity is an agent's own client certificate, renewed before it
// expires. Connections made with it are closed when it changes, so none
// outlives the certificate it was opened with.
type Identity struct {
	dir, server     string
	caPEM           []byte
	ttl             time.Duration
	namespace, name string
	cert            atomic.Pointer[tls.Certificate]
	conns           *connrotation.Dialer
}

// HasIdentity says whether dir holds an identity.
func HasIdentity(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, certFile))
	return err == nil
}

// Join turns a join token into the agent's own identity, kept in dir: it
// checks the server against the CA hash before sending the token, asks for
// a certificate for stella:agent:<namespace>:<name> of the enrolment named
// by the token's id, and waits for the server to approve and sign it.
func Join(ctx context.Context, dir, namespace, name string, o JoinOptions) error {
	tokenID, _, ok := strings.Cut(o.Token, ".")
	if !ok || tokenID == "" {
		return fmt.Errorf("--join-token: want <id>.<secret>, as stellactl agent join-token prints it")
	}
	caPEM, err := fetchCA(ctx, o.Server, o.CAHash)
	if err != nil {
		return err
	}
	cfg := &rest.Config{Host: o.Server, BearerToken: o.Token, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}
	keyPEM, certPEM, err := requestCertificate(ctx, cfg, namespace, name, tokenID, o.CertTTL)
	if err != nil {
		return fmt.Errorf("join with the token: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for file, data := range map[string][]byte{caFile: caPEM, serverFile: []byte(o.Server), keyFile: keyPEM, certFile: certPEM} {
		if err := pki.WriteFileAtomic(filepath.Join(dir, file), data, 0o600); err != nil {
			return fmt.Errorf("keep the agent's identity in %s: %w", dir, err)
		}
	}
	return nil
}

// LoadIdentity reads the identity kept in dir.
func LoadIdentity(dir, namespace, name string, ttl time.Duration) (*Identity, error) {
	read := func(file string) ([]byte, error) {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s has no agent identity: run once with --join-token (stellactl agent join-token prints the command)", dir)
		}
		return data, err
	}
	id := &Identity{dir: dir, ttl: ttl, namespace: namespace, name: name}
	server, err := read(serverFile)
	if err != nil {
		return nil, err
	}
	id.server = string(server)
	if id.caPEM, err = read(caFile); err != nil {
		return nil, err
	}
	certPEM, err := read(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(keyFile)
	if err != nil {
		return nil, err
	}
	if err := id.use(certPEM, keyPEM); err != nil {
		return nil, err
	}
	if cn := id.cert.Load().Leaf.Subject.CommonName; cn != agentid.UserName(namespace, name) {
		return nil, fmt.Errorf("the identity in %s is %s, not that of Agent %s/%s: use another --state-dir, or remove %s and join again", dir, cn, namespace, name, dir)
	}
	id.conns = connrotation.NewDialer((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	return id, nil
}

func (id *Identity) use(certPEM, keyPEM []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("read the agent's certificate in %s: %w", id.dir, err)
	}
	id.cert.Store(&cert)
	return nil
}

// Expires is when the current certificate expires.
func (id *Identity) Expires() time.Time { return id.cert.Load().Leaf.NotAfter }

// Serial is the serial number of the current certificate.
func (id *Identity) Serial() string { return id.cert.Load().Leaf.SerialNumber.String() }

// RESTConfig talks to the server with whatever certificate is current.
func (id *Identity) RESTConfig() (*rest.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(id.caPEM) {
		return nil, fmt.Errorf("read the server's CA in %s", id.dir)
	}
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12, RootCAs: pool,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id.cert.Load(), nil },
		},
		DialContext: id.conns.DialContext, ForceAttemptHTTP2: true,
		TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second, MaxIdleConnsPerHost: 25,
	}
	return &rest.Config{Host: id.server, Transport: transport, QPS: 20, Burst: 40}, nil
}

// Renew keeps the certificate fresh until ctx ends: at renewalDeadline it
// asks for a new one with the current one.
func (id *Identity) Renew(log logr.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		for {
			leaf := id.cert.Load().Leaf
			at := renewalDeadline(leaf)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Until(at)):
			}
			if err := id.RenewNow(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				log.Error(err, "Renewing the agent's certificate failed; retrying in a minute", "expires", leaf.NotAfter)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Minute):
				}
				continue
			}
			log.Info("Renewed the agent's certificate", "expires", id.Expires())
		}
	}
}

// renewalDeadline is a random point between 70% and 90% of the
// certificate's life, the window client-go's certificate manager uses, so
// that agents joined together do not all renew at the same moment.
// client-go's Manager itself is not used: its store keeps key and
// certificate in one timestamped file behind a symlink, not the agent.key
// and agent.crt an agent's directory holds, and it waits for the signature
// with a watch an agent may not make (see requestCertificate).
func renewalDeadline(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(wait.Jitter(life*7/10, 2.0/7))
}

// RenewNow replaces the certificate with a new one, signed for the same
// identity and enrolment, and closes the connections opened with the old
// one.
func (id *Identity) RenewNow(ctx context.Context) error {
	cfg, err := id.RESTConfig()
	if err != nil {
		return err
	}
	enrolment, ok := agentid.EnrolmentOf(id.cert.Load().Leaf.Subject.Organization)
	if !ok {
		return fmt.Errorf("the agent's certificate in %s names several enrolments: remove %s and join again", id.dir, id.dir)
	}
	keyPEM, certPEM, err := requestCertificate(ctx, cfg, id.namespace, id.name, enrolment, id.ttl)
	if err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(id.dir, keyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(id.dir, certFile), certPEM, 0o600); err != nil {
		return err
	}
	if err := id.use(certPEM, keyPEM); err != nil {
		return err
	}
	id.conns.CloseAll()
	return nil
}

// requestCertificate makes a new key and has the server sign a client
// certificate for the identity of the Agent name in namespace, of enrolment (none for a
// certificate from before enrolments).
func requestCertificate(ctx context.Context, cfg *rest.Config, namespace, name, enrolment string, ttl time.Duration) (keyPEM, certPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	groups := []string{agentid.Group}
	if enrolment != "" {
		groups = append(groups, agentid.EnrolmentGroup(enrolment))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: agentid.UserName(namespace, name), Organization: groups},
	}, key)
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	var csrName string
	// The server's authenticator reads join tokens from a cache, which may
	// not hold a token made a moment ago: a create refused as Unauthorized
	// is tried again for a while before the refusal counts. Only the
	// create: a token is used up once its request is approved.
	refused := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, joinRetryTimeout, true, func(ctx context.Context) (bool, error) {
		csrName, _, err = certcsr.RequestCertificateWithContext(ctx, cs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			"", certificatesv1.KubeAPIServerClientSignerName, &ttl,
			[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}, key)
		return !apierrors.IsUnauthorized(err), nil
	})
	if err == nil && refused != nil {
		err = refused
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ask for a certificate: %w", err)
	}
	// Polled, not watched with certcsr.WaitForCertificate: that lists and
	// watches by metadata.name, and the agentauth authorizer cannot confine
	// a watch to the agent's own request, since a request's name is not tied
	// to who made it and an authorizer sees no object; so an agent may only
	// create requests and get one by name.
	csrs := cs.CertificatesV1().CertificateSigningRequests()
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, approvalTimeout, true, func(ctx context.Context) (bool, error) {
		got, err := csrs.Get(ctx, csrName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
				return false, fmt.Errorf("certificate request %s %s: %s", csrName, c.Type, c.Message)
			}
		}
		certPEM = got.Status.Certificate
		return len(certPEM) > 0, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("certificate request %s was not signed: %w (a join token works once, for the Agent it was made for, until it expires)", csrName, err)
	}
	keyPEM, err = pki.KeyPEM(key)
	return keyPEM, certPEM, err
}

// fetchCA reads the server's CA from the chain it presents and keeps it
// only when its hash is the expected one and it signed the server's
// certificate; nothing secret is sent before that.
func fetchCA(ctx context.Context, server, hash string) ([]byte, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want https://host:port", server)
	}
	dialer := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // checked against the CA hash below
	conn, err := dialer.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("reach %s: %w", server, err)
	}
	defer conn.Close()
	chain := conn.(*tls.Conn).ConnectionState().PeerCertificates
	for _, ca := range chain {
		if !ca.IsCA || pki.CertHash(ca) != hash {
			continue
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: u.Hostname()}); err != nil {
			return nil, fmt.Errorf("the server %s does not hold a certificate of the CA %s: %w", server, hash, err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), nil
	}
	var seen bytes.Buffer
	for _, c := range chain {
		fmt.Fprintf(&seen, " %s", pki.CertHash(c))
	}
	return nil, fmt.Errorf("the server %s presents no CA with hash %s (it presents%s): check --ca-cert-hash and --server", server, hash, seen.String())
}
