package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	certclient "k8s.io/client-go/kubernetes/typed/certificates/v1"
	certcsr "k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/retry"
)

const (
	// approvalReason is recorded on the CSR's Approved condition, so an
	// audit of the API shows which tool approved it.
	approvalReason = "StellactlCreateUser"
	// signingTimeout bounds the wait for the server's signing controller.
	signingTimeout = 30 * time.Second
)

// certificateRequest is a PEM CSR whose subject is how the API server will
// see the user: CN is the user name, each O a group.
func certificateRequest(user string, groups []string, key crypto.Signer) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: user, Organization: groups},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// issueCertificate submits the request, approves it and returns the signed
// certificate. The CSR object is deleted before it returns, whatever
// happened: it holds nothing secret, but left behind it would only clutter
// `get csr` until the server's cleaner removes it.
func issueCertificate(ctx context.Context, client kubernetes.Interface, user string, request []byte, ttl time.Duration, approval string) (_ []byte, err error) {
	csrs := client.CertificatesV1().CertificateSigningRequests()
	seconds := int32(ttl / time.Second)
	csr, err := csrs.Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "stellactl-" + user + "-",
			Labels:       map[string]string{"app.kubernetes.io/managed-by": name},
		},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:           request,
			SignerName:        certificatesv1.KubeAPIServerClientSignerName,
			Usages:            []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth},
			ExpirationSeconds: &seconds,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create CertificateSigningRequest for %s: %w%s", user, err, permissionHint(err))
	}
	defer func() {
		// Clean up even when ctx was cancelled (Ctrl-C during the wait).
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := csrs.Delete(dctx, csr.Name, metav1.DeleteOptions{}); derr != nil && !apierrors.IsNotFound(derr) {
			err = errors.Join(err, fmt.Errorf("delete CertificateSigningRequest %s (delete it with: %s delete csr %s): %w", csr.Name, name, csr.Name, derr))
		}
	}()

	if err := approve(ctx, csrs, csr.Name, approval); err != nil {
		return nil, err
	}
	return waitForCertificate(ctx, client, csr.Name, csr.UID)
}

func approve(ctx context.Context, csrs certclient.CertificateSigningRequestInterface, csrName, message string) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		csr, err := csrs.Get(ctx, csrName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type:           certificatesv1.CertificateApproved,
			Status:         corev1.ConditionTrue,
			Reason:         approvalReason,
			Message:        message,
			LastUpdateTime: metav1.Now(),
		})
		_, err = csrs.UpdateApproval(ctx, csrName, csr, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("approve CertificateSigningRequest %s: %w%s", csrName, err, permissionHint(err))
	}
	return nil
}

// waitForCertificate waits with client-go's watch of the one request, which
// also refuses a request that was denied, failed, or replaced by another
// of the same name.
func waitForCertificate(ctx context.Context, client kubernetes.Interface, csrName string, uid types.UID) ([]byte, error) {
	wctx, cancel := context.WithTimeout(ctx, signingTimeout)
	defer cancel()
	cert, err := certcsr.WaitForCertificate(wctx, client, csrName, uid)
	if wait.Interrupted(err) && ctx.Err() == nil {
		return nil, fmt.Errorf("CertificateSigningRequest %s was approved but not signed within %s: "+
			"the server must run the CSR signing controller for %s (stella serve does)",
			csrName, signingTimeout, certificatesv1.KubeAPIServerClientSignerName)
	}
	if err != nil {
		return nil, fmt.Errorf("wait for CertificateSigningRequest %s to be signed: %w", csrName, err)
	}
	return cert, nil
}

// checkCertificate makes sure the server signed our key for the user we
// asked for, before a kubeconfig that would not work is handed out.
func checkCertificate(certPEM []byte, user string, key *ecdsa.PrivateKey) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("the server returned a certificate that is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse the issued certificate: %w", err)
	}
	if cert.Subject.CommonName != user {
		return nil, fmt.Errorf("the issued certificate is for %q, not %q", cert.Subject.CommonName, user)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("the issued certificate is not for the generated key")
	}
	return cert, nil
}

// permissionHint turns a Forbidden into a next step.
func permissionHint(err error) string {
	if !apierrors.IsForbidden(err) {
		return ""
	}
	return "\nhint: creating users needs the right to create and approve CertificateSigningRequests for signer " +
		certificatesv1.KubeAPIServerClientSignerName + " and to create role bindings; run it with the admin kubeconfig (" +
		"$STELLA_DATA_DIR/admin.kubeconfig)"
}
