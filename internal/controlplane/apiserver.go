package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authorization/union"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/kubernetes/pkg/controlplane/apiserver/samples/generic/server"

	stellaadmission "github.com/stella-ops/stella/internal/admission"
	"github.com/stella-ops/stella/internal/agentauth"
	"github.com/stella-ops/stella/internal/pki"
)

// eventsOutsideWatchCache keeps Events, both APIs of them, out of the API
// server's watch cache (a size of 0 serves a resource from etcd), as
// kube-apiserver does by default: they are written often, read seldom and
// expire within the hour, so a decoded copy of each in memory costs more
// than it serves.
var eventsOutsideWatchCache = []string{"events#0", "events.events.k8s.io#0"}

// apiServer is a running Kubernetes generic control plane API server.
type apiServer struct {
	loopback *rest.Config
	done     <-chan error
}

// startAPIServer builds the generic control plane (core, RBAC, coordination,
// certificates, admission policies and CRDs) over etcd and serves it until
// ctx is cancelled.
func startAPIServer(ctx context.Context, o Options, etcdServers []string, certs pki.Dir, agents *agentauth.Agents, extra map[string]http.Handler) (*apiServer, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: %w (want host:port, such as 127.0.0.1:6443)", o.Listen, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("--listen %q: host must be an IP address", o.Listen)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: bad port: %w", o.Listen, err)
	}

	// Logging is set up by the command (internal/logging); the API server's
	// own log options would replace it.
	opts := server.NewOptions()
	admission := opts.Admission.GenericAdmission
	stellaadmission.RegisterIdentity(admission.Plugins)
	agentauth.Register(admission.Plugins, o.AgentCertTTL)
	stellaadmission.RegisterReferences(admission.Plugins)
	// Stamp identities before any policy or webhook sees the object.
	admission.RecommendedPluginOrder = append([]string{stellaadmission.IdentityPluginName, agentauth.PluginName,
		stellaadmission.ReferencesPluginName}, admission.RecommendedPluginOrder...)
	opts.SecureServing.BindAddress = ip
	opts.SecureServing.BindPort = port
	opts.SecureServing.ServerCert.CertKey.CertFile = certs.File(pki.ServingChainFile)
	opts.SecureServing.ServerCert.CertKey.KeyFile = certs.File(pki.ServingKeyFile)
	opts.GenericServerRunOptions.AdvertiseAddress = advertiseIP(ip)
	opts.Etcd.StorageConfig.Transport.ServerList = etcdServers
	opts.Etcd.StorageConfig.Prefix = o.EtcdPrefix
	opts.Etcd.EnableWatchCache = o.WatchCache
	opts.Etcd.WatchCacheSizes = eventsOutsideWatchCache
	opts.Authentication.ClientCert.ClientCA = certs.File(pki.CACertFile)
	// Join tokens are bootstrap tokens: a new agent presents one to ask for
	// its certificate (stellactl agent join-token).
	opts.Authentication.BootstrapToken.Enable = true
	opts.Authorization.Modes = []string{"RBAC"}
	opts.ServiceAccountSigningKeyFile = certs.File(pki.SAKeyFile)
	opts.Authentication.ServiceAccounts.Issuers = []string{"https://stella.local"}
	opts.Authentication.ServiceAccounts.KeyFiles = []string{certs.File(pki.SAPublicKeyFile)}
	opts.Features.EnableProfiling = o.Profiling
	opts.Metrics.ShowHiddenMetricsForVersion = ""

	completed, err := opts.Complete(ctx, nil, []net.IP{ip})
	if err != nil {
		return nil, fmt.Errorf("complete API server options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, utilerrors.NewAggregate(errs)
	}
	config, err := server.NewConfig(completed)
	if err != nil {
		return nil, fmt.Errorf("configure API server: %w", err)
	}
	if err := confineAgents(config, agents); err != nil {
		return nil, err
	}
	// The generic control plane assumes three API servers and delays every
	// new CRD by five seconds for them to agree; Stella's replicas share one
	// etcd and see CRDs at once.
	config.APIExtensions.ExtraConfig.MasterCount = 1
	cc, err := config.Complete()
	if err != nil {
		return nil, err
	}
	chain, err := server.CreateServerChain(cc)
	if err != nil {
		return nil, fmt.Errorf("create API server: %w", err)
	}
	// Behind the API server's authentication and authorization, as
	// nonResourceURLs: /evidence/* (ClusterRole stella-auditor) and
	// /advisories/* (ClusterRole stella-security).
	for prefix, h := range extra {
		chain.GenericAPIServer.Handler.NonGoRestfulMux.HandlePrefix(prefix, h)
	}
	prepared, err := chain.PrepareRun()
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- prepared.Run(ctx) }()

	s := &apiServer{loopback: rest.CopyConfig(chain.GenericAPIServer.LoopbackClientConfig), done: done}
	return s, s.waitReady(ctx)
}

func (s *apiServer) waitReady(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(s.loopback)
	if err != nil {
		return err
	}
	var runErr error
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case runErr = <-s.done:
			return false, fmt.Errorf("API server stopped: %w", runErr)
		default:
		}
		status := 0
		cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&status)
		return status == 200, nil
	})
	if err != nil {
		return fmt.Errorf("wait for the API server to be ready: %w", err)
	}
	return nil
}

// confineAgents puts the agent authorizer before RBAC in each server of
// the chain, so that no role binding can widen what an agent identity
// reaches.
func confineAgents(config *server.Config, agents *agentauth.Agents) error {
	for _, info := range []*genericapiserver.AuthorizationInfo{
		&config.ControlPlane.Generic.Authorization, &config.APIExtensions.GenericConfig.Authorization, &config.Aggregator.GenericConfig.Authorization,
	} {
		chained, err := union.New(
			union.NamedAuthorizer{AuthorizerName: "StellaAgents", Authorizer: agentauth.Authorizer(agents)},
			union.NamedAuthorizer{AuthorizerName: "Configured", Authorizer: info.Authorizer},
		)
		if err != nil {
			return err
		}
		info.Authorizer = chained
	}
	return nil
}

// advertiseIP is the address the server tells clients about: the listen
// address, or loopback when it listens on every interface.
func advertiseIP(ip net.IP) net.IP {
	if ip.IsUnspecified() {
		return net.ParseIP("127.0.0.1")
	}
	return ip
}
