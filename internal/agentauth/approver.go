package agentauth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Join tokens are bootstrap tokens (Secrets bootstrap-token-<id> in
// kube-system) labelled with the Agent they let join.
const (
	LabelTokenAgent     = "stella-ops.org/agent"
	LabelTokenNamespace = "stella-ops.org/agent-namespace"
	// BootstrapGroup is the extra group of a join token's identity; only it
	// may ask for certificates.
	BootstrapGroup   = "system:bootstrappers:stella-agents"
	bootstrapPrefix  = "system:bootstrap:"
	tokenSecretsNS   = "kube-system"
	clientSigner     = "kubernetes.io/kube-apiserver-client"
	reasonAgentJoin  = "StellaAgentJoin"
	reasonAgentRenew = "StellaAgentRenewal"
)

// Approver approves the certificate requests of agents: a first one made
// with a join token for the Agent the token names, which uses the token
// up, and later ones an agent makes with its own certificate for the same
// identity. Every other request is left for a person to decide.
type Approver struct {
	client.Client
	Clientset kubernetes.Interface
}

// SetupWithManager registers the approver.
func (r *Approver) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("agent-csr").For(&certificatesv1.CertificateSigningRequest{}).Complete(r)
}

// Reconcile approves one request when it is an agent's.
func (r *Approver) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := r.Get(ctx, req.NamespacedName, csr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if decided(csr) || csr.Spec.SignerName != clientSigner {
		return ctrl.Result{}, nil
	}
	agent, ok := requestedAgent(csr)
	if !ok {
		return ctrl.Result{}, nil
	}
	requester := csr.Spec.Username
	switch {
	case requester == UserName(agent.Namespace, agent.Name):
		return ctrl.Result{}, r.approve(ctx, csr, reasonAgentRenew, "stella-agent renews its own certificate")
	case strings.HasPrefix(requester, bootstrapPrefix) && slices.Contains(csr.Spec.Groups, BootstrapGroup):
		return ctrl.Result{}, r.approveJoin(ctx, csr, agent, strings.TrimPrefix(requester, bootstrapPrefix))
	}
	return ctrl.Result{}, nil
}

// approveJoin approves a request made with a join token issued for agent,
// and deletes the token so that it serves once.
func (r *Approver) approveJoin(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, agent Agent, tokenID string) error {
	token := &corev1.Secret{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: tokenSecretsNS, Name: "bootstrap-token-" + tokenID}, token); err != nil {
		return client.IgnoreNotFound(err) // used up or expired: the request waits for a person
	}
	if token.Labels[LabelTokenNamespace] != agent.Namespace || token.Labels[LabelTokenAgent] != agent.Name {
		return nil // a token for another agent
	}
	if err := r.Get(ctx, client.ObjectKey{Namespace: agent.Namespace, Name: agent.Name}, &v1alpha1.Agent{}); err != nil {
		return client.IgnoreNotFound(err)
	}
	if err := r.approve(ctx, csr, reasonAgentJoin, fmt.Sprintf("join token %s of Agent %s/%s", tokenID, agent.Namespace, agent.Name)); err != nil {
		return err
	}
	if err := r.Delete(ctx, token); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("use up join token %s: %w", tokenID, err)
	}
	return nil
}

func (r *Approver) approve(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, reason, message string) error {
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastUpdateTime: metav1.Now(),
	})
	if _, err := r.Clientset.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("approve %s: %w", csr.Name, err)
	}
	return nil
}

func decided(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
			return true
		}
	}
	return false
}

// requestedAgent is the agent identity a request asks for, when it asks
// for exactly that: CN stella:agent:<ns>:<name>, O stella:agents, client
// authentication only.
func requestedAgent(csr *certificatesv1.CertificateSigningRequest) (Agent, bool) {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return Agent{}, false
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || req.CheckSignature() != nil {
		return Agent{}, false
	}
	if !slices.Equal(req.Subject.Organization, []string{Group}) || len(req.DNSNames)+len(req.IPAddresses)+len(req.EmailAddresses)+len(req.URIs) > 0 {
		return Agent{}, false
	}
	for _, u := range csr.Spec.Usages {
		if u != certificatesv1.UsageClientAuth && u != certificatesv1.UsageDigitalSignature && u != certificatesv1.UsageKeyEncipherment {
			return Agent{}, false
		}
	}
	agent, ok, err := agentOf(&user.DefaultInfo{Name: req.Subject.CommonName, Groups: []string{Group}})
	return agent, ok && err == nil
}
