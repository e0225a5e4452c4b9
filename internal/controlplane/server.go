// Package controlplane runs a Stella control plane in one process: embedded
// etcd (or an external cluster), the Kubernetes generic control plane API
// server, the Stella CRDs, roles and policies, and the controller manager.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/stella-ops/stella/internal/agent/serverdeploy"
	"github.com/stella-ops/stella/internal/agentauth"
	"github.com/stella-ops/stella/internal/archive"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/evidence/s3store"
	"github.com/stella-ops/stella/internal/gctune"
	"github.com/stella-ops/stella/internal/install"
	"github.com/stella-ops/stella/internal/pki"
	"github.com/stella-ops/stella/internal/scan"
	"github.com/stella-ops/stella/internal/version"
)

// Options configure a control plane.
type Options struct {
	// DataDir holds the CA and keys, the admin kubeconfig and, unless
	// EtcdServers is set, etcd's data.
	DataDir string
	// Listen is the host:port the API server serves HTTPS on.
	Listen string
	// EtcdServers are the client URLs of an external etcd cluster; empty
	// runs etcd embedded in DataDir.
	EtcdServers []string
	// EtcdPrefix is the key prefix of the objects in etcd.
	EtcdPrefix string
	// Profiling serves the process's Go profiles under /debug/pprof of
	// the API server, to users allowed the nonResourceURL /debug/*.
	Profiling bool
	// WatchCache keeps a decoded copy of every object, and of its recent
	// changes, in the API server's memory, so that lists and watches are
	// served without reading etcd. Without it each watch follows etcd's
	// own watch and decodes every change for itself: less memory, more CPU
	// per write, and more again with every client that watches.
	WatchCache bool
	// EvidenceDir holds the evidence signing keys, the transparency log and
	// the evidence blobs; empty is the evidence directory of DataDir.
	EvidenceDir string
	// EvidenceS3 keeps evidence blobs in an S3-compatible bucket instead of
	// EvidenceDir; nil keeps them on disk.
	EvidenceS3 *s3store.Options
	// Controllers runs the Stella reconcilers; without it the process only
	// serves the API (the reconcilers can run elsewhere with
	// `stella controllers`).
	Controllers bool
	// NewManager builds a controller manager without reconcilers whose
	// runnables run only on the replica that holds the named Lease; the
	// kube controllers run in one.
	NewManager func(cfg *rest.Config, lease string) (manager.Manager, error)
	// NewReconcilers builds the manager of the Stella reconcilers (with
	// Controllers), which seal with sealer and scan with scanner, each nil
	// when this process has none. The binary gives both from package
	// controllers, which nothing under internal imports: what links this
	// package does not link the reconcilers.
	NewReconcilers func(cfg *rest.Config, sealer *evidence.Sealer, scanner *scan.Scanner) (manager.Manager, error)
	// Deployer configures the deploying the reconcilers do themselves, to
	// the Targets that name no agent (SSH targets).
	Deployer serverdeploy.Options
	// AgentCertTTL is the longest an agent's certificate may live: a
	// request for an agent identity asking for more, or naming no
	// lifetime, is lowered to it.
	AgentCertTTL time.Duration
	// Scan configures the scanning of releases' images; its Dir defaults
	// to the scan directory of DataDir.
	Scan ScanOptions
	// ReinitializeStore begins an empty embedded store in a data directory
	// that was initialised before but whose store is missing or damaged
	// (a damaged one is moved aside), keeping the PKI and the evidence.
	// Without it such a directory is refused.
	ReinitializeStore bool
	// Log receives Stella's own messages.
	Log logr.Logger
}

// Run serves the control plane until ctx is cancelled, then shuts down in
// order: reconcilers, API server, etcd. It logs "Stella control plane is
// ready" once the API is served and the admin kubeconfig written.
func Run(ctx context.Context, o Options) error {
	if o.AgentCertTTL < minCertTTL || o.AgentCertTTL > issuedCertLifetime {
		return fmt.Errorf("--cert-ttl %s: give between %s and %s (the certificates API signs for no less, and Stella for no more)", o.AgentCertTTL, minCertTTL, issuedCertLifetime)
	}
	dir := dataDir(o.DataDir)
	// Checked before the lock, so that a directory that is refused is not
	// touched, and again under it.
	if _, err := dir.check(); err != nil {
		return err
	}
	lock, err := dir.lock("stella serve")
	if err != nil {
		return err
	}
	defer lock.Close()
	isNew, err := dir.check()
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w (want host:port, such as 127.0.0.1:6443)", o.Listen, err)
	}
	evidenceDir := o.EvidenceDir
	if evidenceDir == "" {
		evidenceDir = dir.evidence()
	}
	embedded := len(o.EtcdServers) == 0
	if embedded && !isNew {
		if err := dir.checkStore(); err != nil {
			if !o.ReinitializeStore {
				return err
			}
			kept, err := dir.reinitializeStore(err, evidenceDir)
			if err != nil {
				return err
			}
			o.Log.Info("Beginning an empty store (--reinitialize-store); kept: "+strings.Join(kept, "; "), "store", dir.etcd())
		}
	}
	certs := pki.Dir{Path: dir.pki()}
	if err := certs.Ensure(servingHosts(host)); err != nil {
		return fmt.Errorf("prepare certificates in %s: %w", certs.Path, err)
	}

	etcdServers := o.EtcdServers
	extra := map[string]http.Handler{}
	if embedded {
		etcd, url, err := startEtcd(ctx, dir.etcd())
		if err != nil {
			return err
		}
		defer etcd.Close()
		etcdServers = []string{url}
		extra[SnapshotPrefix] = snapshotHandler{etcdURL: url, dataDir: dir, evidenceDir: evidenceDir, log: o.Log}
	}
	if isNew {
		if err := dir.markInitialised(version.String()); err != nil {
			return fmt.Errorf("mark data directory %s initialised: %w", dir, err)
		}
	}

	// The reconcilers seal evidence in this process, and the API server
	// serves it.
	var sealer *evidence.Sealer
	if o.Controllers {
		if sealer, err = s3store.Open(evidenceDir, o.EvidenceS3, o.Log); err != nil {
			return fmt.Errorf("open the evidence directory %s: %w", evidenceDir, err)
		}
		defer sealer.Close()
	}

	// The reconcilers scan in this process, and the API server takes
	// advisory imports for them.
	var scanner *scan.Scanner
	if o.Controllers && o.Scan.Enabled {
		if o.Scan.Dir == "" {
			o.Scan.Dir = dir.scan()
		}
		if scanner, err = scan.Open(o.Scan.Options); err != nil {
			return fmt.Errorf("open the scan directory %s: %w", o.Scan.Dir, err)
		}
	}
	if sealer != nil {
		extra[evidence.PathPrefix] = sealer.Handler()
		// The archive of promotions that left the API, under the evidence
		// endpoints and authorized as they are.
		promotionArchive, err := archive.Open(filepath.Join(sealer.Dir(), archive.DirName), sealer.Store)
		if err != nil {
			return fmt.Errorf("open the promotion archive: %w", err)
		}
		extra[archive.PathPrefix] = promotionArchive.Handler()
	}
	if scanner != nil {
		extra[scan.PathPrefix] = scanner.Handler()
	}

	// The API server outlives the managers, so that they can release their
	// Leases on the way out (a successor then takes over at once instead of
	// waiting for the Leases to expire); etcd, closed by the defer above,
	// outlives the API server.
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAPI()
	agents := agentauth.NewAgents()
	api, err := startAPIServer(apiCtx, o, etcdServers, certs, agents, extra)
	if err != nil {
		return err
	}
	// stopAPIAfter ends a failed start: the API server stops, and what it
	// says on the way out joins the cause.
	stopAPIAfter := func(cause error) error {
		stopAPI()
		return errors.Join(cause, ignoreCanceled(<-api.done))
	}
	if err := install.Apply(ctx, api.loopback, install.Options{}); err != nil {
		return stopAPIAfter(fmt.Errorf("install the Stella API: %w", err))
	}
	// The agent authorizer refuses agents until it has loaded the Agents.
	if err := agents.Start(apiCtx, api.loopback); err != nil {
		return stopAPIAfter(err)
	}
	if err := writeAdminKubeconfig(dir.kubeconfig(), o.Listen, certs); err != nil {
		return stopAPIAfter(err)
	}
	managers, err := newManagers(api.loopback, certs, o, sealer, scanner)
	if err != nil {
		return stopAPIAfter(fmt.Errorf("create controller managers: %w", err))
	}
	mgrCtx, stopManagers := context.WithCancel(ctx)
	defer stopManagers()
	mgrDone := make(chan error, len(managers))
	for _, mgr := range managers {
		go func() { mgrDone <- mgr.Start(mgrCtx) }()
	}

	o.Log.Info("Stella control plane is ready", "listen", o.Listen, "kubeconfig", dir.kubeconfig(), "version", version.String())
	// From here on, not during start-up: starting allocates fast once.
	go gctune.Run(mgrCtx)

	// Run until asked to stop or until a component fails, then stop the
	// managers, then the API server.
	var runErr error
	running, apiRunning := len(managers), true
	select {
	case <-ctx.Done():
	case err := <-api.done:
		runErr = fmt.Errorf("API server stopped: %w", err)
		apiRunning = false
	case err := <-mgrDone:
		runErr = fmt.Errorf("controller manager stopped: %w", err)
		running--
	}
	stopManagers()
	for ; running > 0; running-- {
		runErr = errors.Join(runErr, ignoreCanceled(<-mgrDone))
	}
	if apiRunning {
		stopAPI()
		runErr = errors.Join(runErr, ignoreCanceled(<-api.done))
	}
	return runErr
}

// ScanOptions configure the image scanner.
type ScanOptions struct {
	// Enabled scans the images of releases (with Controllers).
	Enabled bool
	scan.Options
	// RescanEvery re-matches each report at least this often.
	RescanEvery time.Duration
}

// kubeControllersLease is held by the replica that runs the kube
// controllers. It differs from the reconcilers' Lease so that the reconcilers
// can run in another process (`stella controllers`) beside `stella serve
// --controllers=false`.
const kubeControllersLease = "stella-kube-controllers"

// newManagers builds the managers this process runs: one for the kube
// controllers a node-less control plane needs, and one for the Stella
// reconcilers when wanted. Each runs only while it holds its own Lease.
func newManagers(cfg *rest.Config, certs pki.Dir, o Options, sealer *evidence.Sealer, scanner *scan.Scanner) ([]manager.Manager, error) {
	// The loopback config asks for protobuf, which custom resources lack.
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = "application/json"
	kube, err := o.NewManager(cfg, kubeControllersLease)
	if err != nil {
		return nil, err
	}
	if err := kube.Add(kubeControllers(cfg, certs)); err != nil {
		return nil, err
	}
	if !o.Controllers {
		return []manager.Manager{kube}, nil
	}
	stella, err := o.NewReconcilers(cfg, sealer, scanner)
	if err != nil {
		return nil, err
	}
	if err := serverdeploy.AddToManager(stella, o.Deployer, o.Log); err != nil {
		return nil, err
	}
	return []manager.Manager{kube, stella}, nil
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// servingHosts are the names the serving certificate is valid for.
func servingHosts(listenHost string) []string {
	hosts := []string{"127.0.0.1", "localhost"}
	if ip := net.ParseIP(listenHost); ip != nil && !ip.IsUnspecified() && !ip.Equal(net.ParseIP("127.0.0.1")) {
		hosts = append(hosts, ip.String())
	}
	if name, err := os.Hostname(); err == nil && name != "" && name != "localhost" {
		hosts = append(hosts, name)
	}
	return hosts
}

// writeAdminKubeconfig writes a kubeconfig with the admin credential that
// points at the listen address. It is rewritten at every start so that it
// follows a changed --listen.
func writeAdminKubeconfig(path, listen string, certs pki.Dir) error {
	host, port, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(certs.File(name)) }
	ca, err := read(pki.CACertFile)
	if err != nil {
		return err
	}
	cert, err := read(pki.AdminCertFile)
	if err != nil {
		return err
	}
	key, err := read(pki.AdminKeyFile)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["stella"] = &clientcmdapi.Cluster{Server: "https://" + net.JoinHostPort(host, port), CertificateAuthorityData: ca}
	cfg.AuthInfos[pki.AdminUser] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts["stella"] = &clientcmdapi.Context{Cluster: "stella", AuthInfo: pki.AdminUser, Namespace: "default"}
	cfg.CurrentContext = "stella"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}
