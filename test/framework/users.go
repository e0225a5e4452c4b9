package framework

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/internal/pki"
)

// UserConfig is a REST config that authenticates as user in groups, with a
// client certificate signed by the server's CA, as a credential issued by
// `stellactl auth create-user` would.
func (s *Server) UserConfig(user string, groups ...string) *rest.Config {
	ca, err := pki.Dir{Path: filepath.Join(s.DataDir, "pki")}.LoadCA()
	if err != nil {
		panic(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := ca.Issue(key.Public(), pkix.Name{CommonName: user, Organization: groups}, x509.ExtKeyUsageClientAuth, nil, time.Hour)
	if err != nil {
		panic(err)
	}
	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		panic(err)
	}
	cfg := rest.AnonymousClientConfig(s.AdminConfig())
	cfg.CertData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cfg.KeyData = keyPEM
	return cfg
}

// UserClient is a controller-runtime client acting as user in groups.
func (s *Server) UserClient(user string, groups ...string) client.Client {
	return mustClient(s.UserConfig(user, groups...))
}

// UserKubeconfig writes a kubeconfig for user in groups into dir and returns
// its path, for processes that take a kubeconfig file.
func (s *Server) UserKubeconfig(dir, user string, groups ...string) string {
	cfg := s.UserConfig(user, groups...)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["stella"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["stella"] = &clientcmdapi.Context{Cluster: "stella", AuthInfo: user}
	kc.CurrentContext = "stella"
	path := filepath.Join(dir, user+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		panic(err)
	}
	return path
}
