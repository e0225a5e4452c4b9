// Package pki creates and loads the certificate authority and the keys that a
// Stella control plane keeps in its data directory.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Lifetimes of what the control plane issues. Leaf certificates are renewed
// when less than renewBefore of their life remains.
const (
	caLifetime   = 10 * 365 * 24 * time.Hour
	leafLifetime = 365 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
)

// File names inside the PKI directory.
const (
	CACertFile      = "ca.crt"
	CAKeyFile       = "ca.key"
	ServingCertFile = "apiserver.crt"
	// ServingChainFile is the serving certificate followed by the CA's, so
	// that a client holding only the CA's hash can check the server.
	ServingChainFile = "apiserver-chain.crt"
	ServingKeyFile   = "apiserver.key"
	AdminCertFile    = "admin.crt"
	AdminKeyFile     = "admin.key"
	SAKeyFile        = "sa.key"
	SAPublicKeyFile  = "sa.pub"
)

// AdminUser and AdminGroup are the identity of the admin credential written
// at first start. system:masters bypasses authorization, as a cluster admin
// does in Kubernetes.
const (
	AdminUser  = "stella-admin"
	AdminGroup = "system:masters"
)

// Dir is the PKI directory of a data directory.
type Dir struct {
	Path string
}

// File returns the path of a file of the directory.
func (d Dir) File(name string) string { return filepath.Join(d.Path, name) }

// CA is a certificate authority that signs the control plane's certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Ensure creates what is missing in the directory and renews leaf certificates
// that expire soon or lack one of hosts. Existing keys are never replaced: a
// file that cannot be parsed is an error naming it.
func (d Dir) Ensure(hosts []string) error {
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", d.Path, err)
	}
	ca, err := d.ensureCA()
	if err != nil {
		return err
	}
	saKey, err := d.ensureKey(SAKeyFile)
	if err != nil {
		return err
	}
	// The API server verifies service-account tokens with the public half.
	pub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return err
	}
	if err := writePEM(d.File(SAPublicKeyFile), "PUBLIC KEY", pub, 0o644); err != nil {
		return err
	}
	serving := leafRequest{
		certFile: ServingCertFile, keyFile: ServingKeyFile,
		subject: pkix.Name{CommonName: "stella-apiserver"},
		usage:   x509.ExtKeyUsageServerAuth, hosts: hosts,
	}
	if err := d.ensureLeaf(ca, serving); err != nil {
		return err
	}
	if err := d.writeServingChain(); err != nil {
		return err
	}
	admin := leafRequest{
		certFile: AdminCertFile, keyFile: AdminKeyFile,
		subject: pkix.Name{CommonName: AdminUser, Organization: []string{AdminGroup}},
		usage:   x509.ExtKeyUsageClientAuth,
	}
	return d.ensureLeaf(ca, admin)
}

func (d Dir) writeServingChain() error {
	leaf, err := os.ReadFile(d.File(ServingCertFile))
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(d.File(CACertFile))
	if err != nil {
		return err
	}
	return WriteFileAtomic(d.File(ServingChainFile), append(append(leaf, '\n'), ca...), 0o644)
}

// CertHash identifies a CA certificate by the sha256 of its public key
// info, as kubeadm's --discovery-token-ca-cert-hash does:
// sha256:<64 hex>.
func CertHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// LoadCA reads the CA certificate and key.
func (d Dir) LoadCA() (*CA, error) {
	cert, err := readCert(d.File(CACertFile))
	if err != nil {
		return nil, err
	}
	key, err := readKey(d.File(CAKeyFile))
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

func (d Dir) ensureCA() (*CA, error) {
	certPath, keyPath := d.File(CACertFile), d.File(CAKeyFile)
	certExists, keyExists := exists(certPath), exists(keyPath)
	switch {
	case certExists && keyExists:
		return d.LoadCA()
	case certExists != keyExists:
		return nil, fmt.Errorf("%s and %s must both exist or both be absent: restore the missing one from a backup", certPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "stella-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	return d.LoadCA()
}

func (d Dir) ensureKey(name string) (crypto.Signer, error) {
	path := d.File(name)
	if exists(path) {
		return readKey(path)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return key, writeKey(path, key)
}

type leafRequest struct {
	certFile, keyFile string
	subject           pkix.Name
	usage             x509.ExtKeyUsage
	hosts             []string
}

// ensureLeaf keeps the leaf's key and issues a new certificate for it when
// the current one is missing, expiring, not signed by ca, or lacks a host.
func (d Dir) ensureLeaf(ca *CA, req leafRequest) error {
	key, err := d.ensureKey(req.keyFile)
	if err != nil {
		return err
	}
	certPath := d.File(req.certFile)
	if exists(certPath) {
		cert, err := readCert(certPath)
		if err != nil {
			return err
		}
		if leafStillGood(cert, ca, req.hosts) {
			return nil
		}
	}
	der, err := ca.Issue(key.Public(), req.subject, req.usage, req.hosts, leafLifetime)
	if err != nil {
		return fmt.Errorf("issue %s: %w", req.certFile, err)
	}
	return writePEM(certPath, "CERTIFICATE", der, 0o644)
}

func leafStillGood(cert *x509.Certificate, ca *CA, hosts []string) bool {
	if time.Until(cert.NotAfter) < renewBefore || cert.CheckSignatureFrom(ca.Cert) != nil {
		return false
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(cert.DNSNames, h) {
			return false
		}
	}
	return true
}

// Issue signs a certificate for pub. hosts become IP or DNS subject
// alternative names.
func (ca *CA) Issue(pub crypto.PublicKey, subject pkix.Name, usage x509.ExtKeyUsage, hosts []string, lifetime time.Duration) ([]byte, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readCert(path string) (*x509.Certificate, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid certificate (%v): restore it from a backup", path, err)
	}
	return cert, nil
}

func readKey(path string) (crypto.Signer, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid PKCS#8 private key (%v): restore it from a backup", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T, which cannot sign", path, key)
	}
	return signer, nil
}

func readPEM(path string) (*pem.Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block: the file is corrupt, restore it from a backup", path)
	}
	return block, nil
}

// KeyPEM encodes a private key as PKCS#8 PEM.
func KeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func writeKey(path string, key crypto.Signer) error {
	data, err := KeyPEM(key)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return WriteFileAtomic(path, data, 0o600)
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	return WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}

// WriteFileAtomic writes through a temporary file and a rename, so a crash
// leaves either the old file or the new one, never half of one.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
