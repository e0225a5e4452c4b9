package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestClusterName(t *testing.T) {
	raw := clientcmdapi.Config{
		CurrentContext: "admin@stella",
		Contexts: map[string]*clientcmdapi.Context{
			"admin@stella": {Cluster: "stella"},
			"prod":         {Cluster: "prod-cluster"},
		},
	}
	tests := []struct {
		name             string
		context, cluster string
		want             string
	}{
		{name: "current context", want: "stella"},
		{name: "--context", context: "prod", want: "prod-cluster"},
		{name: "--cluster", context: "prod", cluster: "other", want: "other"},
		{name: "unknown context", context: "nope", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clusterName(raw, tt.context, tt.cluster); got != tt.want {
				t.Errorf("clusterName() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUserKubeconfigForCA(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, []byte("FROM FILE"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		config  rest.Config
		wantCA  string
		wantErr bool
	}{
		{name: "embedded CA", config: rest.Config{Host: "https://h", TLSClientConfig: rest.TLSClientConfig{CAData: []byte("EMBEDDED"), CAFile: caFile}}, wantCA: "EMBEDDED"},
		{name: "CA file is embedded", config: rest.Config{Host: "https://h", TLSClientConfig: rest.TLSClientConfig{CAFile: caFile}}, wantCA: "FROM FILE"},
		{name: "missing CA file", config: rest.Config{Host: "https://h", TLSClientConfig: rest.TLSClientConfig{CAFile: caFile + ".missing"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc, err := userKubeconfigFor(&tt.config, "stella", "alice", []byte("C"), []byte("K"), "")
			if (err != nil) != tt.wantErr {
				t.Fatalf("userKubeconfigFor() = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && string(kc.CAData) != tt.wantCA {
				t.Errorf("CAData = %q, want %q", kc.CAData, tt.wantCA)
			}
		})
	}
}

func TestCertificateRequestSubject(t *testing.T) {
	key := mustKey(t)
	req, err := certificateRequest("alice", []string{"qa", "dev"}, key)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(req)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("not a PEM certificate request: %q", req)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("signature: %v", err)
	}
	if csr.Subject.CommonName != "alice" || !slices.Equal(csr.Subject.Organization, []string{"qa", "dev"}) {
		t.Errorf("subject = %v, want CN=alice, O=qa,dev", csr.Subject)
	}
}

func TestCheckCertificate(t *testing.T) {
	key, other := mustKey(t), mustKey(t)
	tests := []struct {
		name    string
		cert    []byte
		wantErr bool
	}{
		{name: "matches", cert: selfSigned(t, "alice", key)},
		{name: "other user", cert: selfSigned(t, "mallory", key), wantErr: true},
		{name: "other key", cert: selfSigned(t, "alice", other), wantErr: true},
		{name: "not PEM", cert: []byte("garbage"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkCertificate(tt.cert, "alice", key)
			if (err != nil) != tt.wantErr {
				t.Errorf("checkCertificate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func selfSigned(t *testing.T, cn string, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now(),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
