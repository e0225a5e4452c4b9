package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// adminKubeconfigFile is what `stella serve` writes into its data directory.
const adminKubeconfigFile = "admin.kubeconfig"

// kubeconfigInputs is everything the choice of kubeconfig depends on, so that
// the choice can be tested without touching the environment.
type kubeconfigInputs struct {
	Flag          string // --kubeconfig
	EnvKubeconfig string // $KUBECONFIG
	StellaDataDir string // $STELLA_DATA_DIR
	Home          string
	Exists        func(path string) bool
}

// resolveKubeconfig returns the file to load and why it was chosen, or "" when
// client-go's own rules apply ($KUBECONFIG, which may list several files to
// merge, and else ~/.kube/config). The Stella admin kubeconfig sits between
// the two so that `stella serve` followed by `stellactl get stella` works on
// the same host with no setup, yet never shadows a kubeconfig the user chose.
// from is "" when there is no kubeconfig at all.
func resolveKubeconfig(in kubeconfigInputs) (path, from string) {
	switch {
	case in.Flag != "":
		return in.Flag, "--kubeconfig"
	case in.EnvKubeconfig != "":
		return "", "$KUBECONFIG"
	}
	if dir := stellaDataDir(in.StellaDataDir, in.Home); dir != "" {
		p := filepath.Join(dir, adminKubeconfigFile)
		if in.Exists(p) {
			return p, "the Stella data directory"
		}
	}
	if in.Home != "" && in.Exists(filepath.Join(in.Home, ".kube", "config")) {
		return "", "~/.kube/config"
	}
	return "", ""
}

// noKubeconfigError replaces client-go's fallback to http://localhost:8080,
// which only produces connection errors that do not say what is missing.
func noKubeconfigError(in kubeconfigInputs) error {
	admin := filepath.Join("$STELLA_DATA_DIR", adminKubeconfigFile)
	if dir := stellaDataDir(in.StellaDataDir, in.Home); dir != "" {
		admin = filepath.Join(dir, adminKubeconfigFile)
	}
	return fmt.Errorf("no kubeconfig found (looked for --kubeconfig, $KUBECONFIG, %s and ~/.kube/config): "+
		"start a local control plane with \"stella serve\", set STELLA_DATA_DIR to its data directory, or pass --kubeconfig", admin)
}

// missingEnvKubeconfigError reports a $KUBECONFIG none of whose files exist:
// client-go skips missing files silently and then tries localhost:8080.
func missingEnvKubeconfigError(in kubeconfigInputs) error {
	if in.Flag != "" || in.EnvKubeconfig == "" {
		return nil
	}
	paths := filepath.SplitList(in.EnvKubeconfig)
	for _, p := range paths {
		if p != "" && in.Exists(p) {
			return nil
		}
	}
	return fmt.Errorf("$KUBECONFIG names %s, and no such file exists: correct or unset KUBECONFIG, or pass --kubeconfig",
		strings.Join(paths, ", "))
}

// clientGetter is the kubeconfig flags with one addition: when there is no
// kubeconfig and no --server, every attempt to reach the server fails with
// noKubeconfigError instead of trying localhost:8080.
type clientGetter struct {
	*genericclioptions.ConfigFlags
	missing error
}

func (g *clientGetter) ToRESTConfig() (*rest.Config, error) {
	if g.missing != nil {
		return nil, g.missing
	}
	return g.ConfigFlags.ToRESTConfig()
}

func (g *clientGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	if g.missing != nil {
		return nil, g.missing
	}
	return g.ConfigFlags.ToDiscoveryClient()
}

func (g *clientGetter) ToRESTMapper() (meta.RESTMapper, error) {
	if g.missing != nil {
		return nil, g.missing
	}
	return g.ConfigFlags.ToRESTMapper()
}

// stellaDataDir mirrors the default data directory of `stella serve`.
func stellaDataDir(env, home string) string {
	if env != "" {
		return env
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".local", "share", "stella")
}

func homeDir() string {
	h, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return h
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// userKubeconfig is a kubeconfig for one certificate-authenticated user of
// one server.
type userKubeconfig struct {
	ClusterName   string
	Server        string
	CAData        []byte
	TLSServerName string
	Insecure      bool
	User          string
	CertPEM       []byte
	KeyPEM        []byte
	Namespace     string // "" means "default"
}

// render returns the kubeconfig as YAML. Everything is embedded, so the file
// works wherever it is copied to.
func (u userKubeconfig) render() ([]byte, error) {
	switch {
	case u.Server == "":
		return nil, errors.New("kubeconfig: no server URL")
	case u.User == "":
		return nil, errors.New("kubeconfig: no user name")
	case len(u.CertPEM) == 0 || len(u.KeyPEM) == 0:
		return nil, errors.New("kubeconfig: no client certificate or key")
	}
	clusterName := u.ClusterName
	if clusterName == "" {
		clusterName = "stella"
	}
	ns := u.Namespace
	if ns == "" {
		ns = "default"
	}
	contextName := u.User + "@" + clusterName

	cfg := clientcmdapi.NewConfig()
	cluster := clientcmdapi.NewCluster()
	cluster.Server = u.Server
	cluster.CertificateAuthorityData = u.CAData
	cluster.TLSServerName = u.TLSServerName
	cluster.InsecureSkipTLSVerify = u.Insecure
	cfg.Clusters[clusterName] = cluster

	user := clientcmdapi.NewAuthInfo()
	user.ClientCertificateData = u.CertPEM
	user.ClientKeyData = u.KeyPEM
	cfg.AuthInfos[u.User] = user

	kctx := clientcmdapi.NewContext()
	kctx.Cluster = clusterName
	kctx.AuthInfo = u.User
	kctx.Namespace = ns
	cfg.Contexts[contextName] = kctx
	cfg.CurrentContext = contextName

	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("encode kubeconfig: %w", err)
	}
	return out, nil
}
