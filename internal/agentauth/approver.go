package agentauth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
)

const (
	bootstrapPrefix  = "system:bootstrap:"
	clientSigner     = "kubernetes.io/kube-apiserver-client"
	reasonAgentJoin  = "StellaAgentJoin"
	reasonAgentRenew = "StellaAgentRenewal"
	// The Agent is gone or revoked.
	reasonAgentJoinDenied  = "StellaAgentJoinRefused"
	reasonAgentRenewDenied = "StellaAgentRenewalRefused"
)

// joinRequestLifetime is how long a request made with a join token may stay
// undecided before it is deleted. The agent that made it waits two minutes
// and then discards its key, so the request can never serve after that; the
// hour leaves a person time to see why a join was not approved.
const joinRequestLifetime = time.Hour

// Approver approves the certificate requests of agents: a first one made
// with a join token for the Agent the token names, which uses the token
// up, and later ones an agent makes with its own certificate for the same
// identity, while its Agent exists and is not revoked. It denies those
// whose Agent is gone or revoked, and deletes requests made with a join
// token that stayed undecided for joinRequestLifetime. Every other request
// is left for a person to decide.
type Approver struct {
	client.Client
	Clientset kubernetes.Interface
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SetupWithManager registers the approver.
func (r *Approver) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("agent-csr").For(&certificatesv1.CertificateSigningRequest{}).Complete(r)
}

func (r *Approver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests/approval,verbs=update
// Approving a request makes the API server's CA sign a client certificate
// for the identity it names, so this is limited to that one signer; the
// approver approves only requests for an Agent's own identity.
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=signers,resourceNames=kubernetes.io/kube-apiserver-client,verbs=approve
// A join is recorded on the Agent as its enrolment annotation.
// +kubebuilder:rbac:groups=stella-ops.org,resources=agents,verbs=get;list;watch;patch
// A join checks the token it was made with and uses it up.
// +kubebuilder:rbac:groups="",namespace=kube-system,resources=secrets,verbs=get;list;watch;delete

// Reconcile decides one request when it is an agent's, and expires an
// undecided one made with a join token.
func (r *Approver) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := r.Get(ctx, req.NamespacedName, csr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if decided(csr) || csr.Spec.SignerName != clientSigner {
		return ctrl.Result{}, nil
	}
	tokenID, withToken := joinTokenOf(csr)
	if agent, enrolment, ok := requestedAgent(csr); ok {
		switch {
		case csr.Spec.Username == agentid.UserName(agent.Namespace, agent.Name):
			return ctrl.Result{}, r.decideRenewal(ctx, csr, agent, enrolment)
		case withToken:
			if done, err := r.decideJoin(ctx, csr, agent, enrolment, tokenID); err != nil || done {
				return ctrl.Result{}, err
			}
		}
	}
	if !withToken {
		return ctrl.Result{}, nil
	}
	return r.expireJoinRequest(ctx, csr)
}

// joinTokenOf is the id of the join token a request was made with.
func joinTokenOf(csr *certificatesv1.CertificateSigningRequest) (string, bool) {
	id, ok := strings.CutPrefix(csr.Spec.Username, bootstrapPrefix)
	return id, ok && slices.Contains(csr.Spec.Groups, agentid.BootstrapGroup)
}

// decideRenewal approves a request an agent makes with its own certificate
// for the same enrolment while its Agent stands, and denies it once the
// Agent is gone or revoked, or was joined again since.
func (r *Approver) decideRenewal(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, agent Agent, enrolment string) error {
	a, refusal, err := r.standing(ctx, agent)
	if err != nil {
		return err
	}
	if refusal == "" {
		refusal = enrolmentRefusal(agent, a.Annotations[v1alpha1.AnnotationAgentEnrolment], enrolment)
	}
	if current, ok := agentid.EnrolmentOf(csr.Spec.Groups); refusal == "" && (!ok || current != enrolment) {
		refusal = fmt.Sprintf("a renewal keeps the enrolment of the certificate it is made with (%q), not %q", current, enrolment)
	}
	if refusal != "" {
		return r.decide(ctx, csr, certificatesv1.CertificateDenied, reasonAgentRenewDenied, refusal)
	}
	return r.decide(ctx, csr, certificatesv1.CertificateApproved, reasonAgentRenew, "stella-agent renews its own certificate")
}

// decideJoin approves a request made with a join token issued for agent,
// records the token as the Agent's enrolment, and deletes the token so that
// it serves once; it denies the request when the Agent is gone or revoked,
// or the request is not for the token's enrolment. done is false when the
// request is left for a person: its token is used up, expired, or another
// agent's.
func (r *Approver) decideJoin(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, agent Agent, enrolment, tokenID string) (done bool, err error) {
	token := &corev1.Secret{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: agentid.JoinTokenNamespace, Name: "bootstrap-token-" + tokenID}, token); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if token.Labels[v1alpha1.LabelAgentNamespace] != agent.Namespace || token.Labels[v1alpha1.LabelAgent] != agent.Name {
		return false, nil
	}
	if enrolment != tokenID {
		return true, r.decide(ctx, csr, certificatesv1.CertificateDenied, reasonAgentJoinDenied,
			fmt.Sprintf("a request made with join token %s must carry the group %s (it carries %q): use a stella-agent of this server's version", tokenID, agentid.EnrolmentGroup(tokenID), enrolment))
	}
	a, refusal, err := r.standing(ctx, agent)
	if err != nil {
		return false, err
	}
	if refusal != "" {
		return true, r.decide(ctx, csr, certificatesv1.CertificateDenied, reasonAgentJoinDenied, refusal)
	}
	// Recorded before the approval: the certificate is accepted only once
	// the Agent names its enrolment, and every earlier one is refused.
	if a.Annotations[v1alpha1.AnnotationAgentEnrolment] != enrolment {
		before := a.DeepCopy()
		metav1.SetMetaDataAnnotation(&a.ObjectMeta, v1alpha1.AnnotationAgentEnrolment, enrolment)
		if err := r.Patch(ctx, a, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return true, fmt.Errorf("record enrolment %s on Agent %s/%s: %w", enrolment, agent.Namespace, agent.Name, err)
		}
	}
	if err := r.decide(ctx, csr, certificatesv1.CertificateApproved, reasonAgentJoin, fmt.Sprintf("join token %s of Agent %s/%s", tokenID, agent.Namespace, agent.Name)); err != nil {
		return true, err
	}
	if err := r.Delete(ctx, token); err != nil && !apierrors.IsNotFound(err) {
		return true, fmt.Errorf("use up join token %s: %w", tokenID, err)
	}
	return true, nil
}

// standing reads agent's Agent and says why it may have no certificate:
// it does not exist or is revoked; the refusal is empty when it may.
func (r *Approver) standing(ctx context.Context, agent Agent) (*v1alpha1.Agent, string, error) {
	a := &v1alpha1.Agent{}
	err := r.Get(ctx, client.ObjectKey{Namespace: agent.Namespace, Name: agent.Name}, a)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Sprintf("Agent %s/%s does not exist: create it and join its host with a new token (stellactl agent join-token)", agent.Namespace, agent.Name), nil
	case err != nil:
		return nil, "", fmt.Errorf("read Agent %s/%s: %w", agent.Namespace, agent.Name, err)
	case a.Spec.Revoked:
		return a, revokedRefusal(agent), nil
	}
	return a, "", nil
}

// expireJoinRequest deletes an undecided request made with a join token
// once it is joinRequestLifetime old, and comes back then otherwise.
func (r *Approver) expireJoinRequest(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) (ctrl.Result, error) {
	if left := csr.CreationTimestamp.Add(joinRequestLifetime).Sub(r.now()); left > 0 {
		return ctrl.Result{RequeueAfter: left}, nil
	}
	if err := r.Delete(ctx, csr, client.Preconditions{UID: &csr.UID}); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("delete join request %s, undecided since %s: %w", csr.Name, csr.CreationTimestamp.UTC().Format(time.RFC3339), err)
	}
	ctrl.LoggerFrom(ctx).Info("Deleted a join request left undecided", "csr", csr.Name, "requester", csr.Spec.Username, "created", csr.CreationTimestamp.UTC())
	return ctrl.Result{}, nil
}

// decide approves or denies a request.
func (r *Approver) decide(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, decision certificatesv1.RequestConditionType, reason, message string) error {
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: decision, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastUpdateTime: metav1.Now(),
	})
	if _, err := r.Clientset.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("%s %s: %w", decision, csr.Name, err)
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

// requestedAgent is the agent identity and enrolment a request asks for,
// when it asks for exactly that: CN stella:agent:<ns>:<name>, O
// stella:agents and at most one stella:enrolment:<id>, client
// authentication only.
func requestedAgent(csr *certificatesv1.CertificateSigningRequest) (agent Agent, enrolment string, ok bool) {
	req, err := parseRequest(csr.Spec.Request)
	if err != nil {
		return Agent{}, "", false
	}
	orgs := req.Subject.Organization
	enrolment, single := agentid.EnrolmentOf(orgs)
	want := []string{agentid.Group}
	if enrolment != "" {
		want = append(want, agentid.EnrolmentGroup(enrolment))
	}
	if !single || !slices.Equal(slices.Sorted(slices.Values(orgs)), slices.Sorted(slices.Values(want))) ||
		len(req.DNSNames)+len(req.IPAddresses)+len(req.EmailAddresses)+len(req.URIs) > 0 {
		return Agent{}, "", false
	}
	for _, u := range csr.Spec.Usages {
		if u != certificatesv1.UsageClientAuth && u != certificatesv1.UsageDigitalSignature && u != certificatesv1.UsageKeyEncipherment {
			return Agent{}, "", false
		}
	}
	agent, ok, err = agentOf(&user.DefaultInfo{Name: req.Subject.CommonName, Groups: []string{agentid.Group}})
	return agent, enrolment, ok && err == nil
}

// parseRequest reads a PEM certificate request and checks its signature.
func parseRequest(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("not a PEM certificate request")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read the certificate request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("check the certificate request's signature: %w", err)
	}
	return req, nil
}
