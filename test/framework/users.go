package framework

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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
	return writeKubeconfig(filepath.Join(dir, user+".kubeconfig"), user, cfg.Host, cfg.CAData,
		&clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData})
}

// ServiceAccountKubeconfig writes a kubeconfig with an hour's token of the
// ServiceAccount namespace/name into dir and returns its path: what a pod
// running as that ServiceAccount authenticates with.
func (s *Server) ServiceAccountKubeconfig(ctx context.Context, dir, namespace, name string) (string, error) {
	admin := s.AdminConfig()
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return "", err
	}
	hour := int64(time.Hour / time.Second)
	token, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("request a token of ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return writeKubeconfig(filepath.Join(dir, namespace+"-"+name+".kubeconfig"), name, admin.Host, admin.CAData,
		&clientcmdapi.AuthInfo{Token: token.Status.Token}), nil
}

// writeKubeconfig writes a kubeconfig of one server and the credential of
// user to path.
func writeKubeconfig(path, user, host string, caData []byte, auth *clientcmdapi.AuthInfo) string {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["stella"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: caData}
	kc.AuthInfos[user] = auth
	kc.Contexts["stella"] = &clientcmdapi.Context{Cluster: "stella", AuthInfo: user}
	kc.CurrentContext = "stella"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		panic(err)
	}
	return path
}
