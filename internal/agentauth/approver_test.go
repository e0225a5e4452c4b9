package agentauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
)

// requestPEM is a certificate request for subject, signed by a new key.
func requestPEM(t *testing.T, subject pkix.Name) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func agentSubject(ns, name string) pkix.Name {
	return pkix.Name{CommonName: agentid.UserName(ns, name), Organization: []string{agentid.Group}}
}

func enrolledSubject(ns, name, enrolment string) pkix.Name {
	return pkix.Name{CommonName: agentid.UserName(ns, name), Organization: []string{agentid.Group, agentid.EnrolmentGroup(enrolment)}}
}

func scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func joinToken(id, ns, agent string, expires time.Time) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: agentid.JoinTokenNamespace, Name: "bootstrap-token-" + id, Labels: map[string]string{v1alpha1.LabelAgentNamespace: ns, v1alpha1.LabelAgent: agent}},
		Type:       corev1.SecretTypeBootstrapToken,
		Data:       map[string][]byte{"token-id": []byte(id), "expiration": []byte(expires.UTC().Format(time.RFC3339))},
	}
}

// The approver signs an agent's requests only while its Agent stands: a
// renewal asked with the certificate of a deleted or revoked Agent is
// denied with the reason, not approved for another lifetime, and so is a
// join with a token of a revoked Agent. A join records its token as the
// Agent's enrolment, and a renewal of an earlier enrolment is denied. An
// undecided join request goes away after joinRequestLifetime.
func TestApprover(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	enrolled := func(name, enrolment string) *v1alpha1.Agent {
		return &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: map[string]string{v1alpha1.AnnotationAgentEnrolment: enrolment}}}
	}
	standing := enrolled("host-a", "abcdef")
	legacy := &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "host-a"}}
	revoked := enrolled("host-r", "abcdef")
	revoked.Spec.Revoked = true
	request := func(name string, subject pkix.Name) *certificatesv1.CertificateSigningRequest {
		return &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "renew-" + name, CreationTimestamp: metav1.NewTime(now)},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				Request: requestPEM(t, subject), SignerName: clientSigner, Username: agentid.UserName("shop", name), Groups: subject.Organization,
				Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			},
		}
	}
	renewal := func(name string) *certificatesv1.CertificateSigningRequest {
		return request(name, enrolledSubject("shop", name, "abcdef"))
	}
	join := func(name, tokenID string, created time.Time) *certificatesv1.CertificateSigningRequest {
		csr := request(name, enrolledSubject("shop", name, tokenID))
		csr.Name, csr.CreationTimestamp = "join-"+name, metav1.NewTime(created)
		csr.Spec.Username, csr.Spec.Groups = bootstrapPrefix+tokenID, []string{agentid.BootstrapGroup, "system:authenticated"}
		return csr
	}
	// moving is a renewal asked with a certificate of another enrolment.
	moving := func(csr *certificatesv1.CertificateSigningRequest, enrolment string) *certificatesv1.CertificateSigningRequest {
		csr.Spec.Groups = []string{agentid.Group, agentid.EnrolmentGroup(enrolment)}
		return csr
	}
	claiming := func(csr *certificatesv1.CertificateSigningRequest, enrolment string) *certificatesv1.CertificateSigningRequest {
		csr.Spec.Request = requestPEM(t, enrolledSubject("shop", "host-a", enrolment))
		return csr
	}
	const (
		pending  = ""
		approved = certificatesv1.CertificateApproved
		denied   = certificatesv1.CertificateDenied
		deleted  = "Deleted"
	)
	for _, tc := range []struct {
		name        string
		csr         *certificatesv1.CertificateSigningRequest
		agent       *v1alpha1.Agent
		token       *corev1.Secret
		want        certificatesv1.RequestConditionType
		message     string
		tokenUsedUp bool
		requeue     time.Duration
		// enrolment is the Agent's afterwards, when it changes.
		enrolment string
	}{
		{name: "renewal of a standing agent", csr: renewal("host-a"), agent: standing, want: approved},
		{name: "renewal of an earlier join", csr: renewal("host-a"), agent: enrolled("host-a", "ghijkl"), want: denied, message: "earlier join of Agent shop/host-a"},
		{name: "renewal of an earlier Agent of the name", csr: renewal("host-a"), agent: legacy, want: denied, message: "earlier join of Agent shop/host-a"},
		{name: "renewal into another enrolment", csr: moving(renewal("host-a"), "ghijkl"), agent: standing, want: denied, message: "keeps the enrolment of the certificate"},
		{name: "renewal of a certificate from before enrolments", csr: request("host-a", agentSubject("shop", "host-a")), agent: legacy, want: approved},
		{name: "renewal of a deleted agent", csr: renewal("host-d"), agent: standing, want: denied, message: "Agent shop/host-d does not exist"},
		{name: "renewal of a revoked agent", csr: renewal("host-r"), agent: revoked, want: denied, message: "Agent shop/host-r is revoked"},
		{name: "join of a standing agent", csr: join("host-a", "mnopqr", now), agent: standing, token: joinToken("mnopqr", "shop", "host-a", now.Add(time.Hour)),
			want: approved, tokenUsedUp: true, enrolment: "mnopqr"},
		{name: "join of a new agent", csr: join("host-a", "mnopqr", now), agent: legacy, token: joinToken("mnopqr", "shop", "host-a", now.Add(time.Hour)),
			want: approved, tokenUsedUp: true, enrolment: "mnopqr"},
		{name: "join for another enrolment than its token", csr: claiming(join("host-a", "mnopqr", now), "abcdef"), agent: standing, token: joinToken("mnopqr", "shop", "host-a", now.Add(time.Hour)),
			want: denied, message: "must carry the group stella:enrolment:mnopqr"},
		{name: "join of a revoked agent", csr: join("host-r", "abcdef", now), agent: revoked, token: joinToken("abcdef", "shop", "host-r", now.Add(time.Hour)),
			want: denied, message: "Agent shop/host-r is revoked"},
		{name: "join of a deleted agent", csr: join("host-d", "abcdef", now), agent: standing, token: joinToken("abcdef", "shop", "host-d", now.Add(time.Hour)),
			want: denied, message: "Agent shop/host-d does not exist"},
		{name: "join with another agent's token", csr: join("host-a", "abcdef", now), agent: standing, token: joinToken("abcdef", "shop", "host-b", now.Add(time.Hour)),
			want: pending, requeue: joinRequestLifetime},
		{name: "join with a used-up token, 59 minutes old", csr: join("host-a", "abcdef", now.Add(-59*time.Minute)), agent: standing,
			want: pending, requeue: time.Minute},
		{name: "join with a used-up token, an hour old", csr: join("host-a", "abcdef", now.Add(-time.Hour)), agent: standing, want: deleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			objects := []client.Object{tc.csr.DeepCopy(), tc.agent.DeepCopy()}
			if tc.token != nil {
				objects = append(objects, tc.token.DeepCopy())
			}
			c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(objects...).Build()
			cs := kubefake.NewClientset(tc.csr.DeepCopy())
			r := &Approver{Client: c, Clientset: cs, Now: func() time.Time { return now }}

			res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tc.csr)})
			if err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			if res.RequeueAfter != tc.requeue {
				t.Errorf("comes back after %s, want %s", res.RequeueAfter, tc.requeue)
			}
			err = c.Get(ctx, client.ObjectKeyFromObject(tc.csr), &certificatesv1.CertificateSigningRequest{})
			if gone := apierrors.IsNotFound(err); gone != (tc.want == deleted) {
				t.Fatalf("request deleted: %v, want %v", gone, tc.want == deleted)
			}
			got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, tc.csr.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var decision certificatesv1.RequestConditionType
			var message string
			for _, cond := range got.Status.Conditions {
				decision, message = cond.Type, cond.Message
			}
			if tc.want != deleted && (decision != tc.want || !strings.Contains(message, tc.message)) {
				t.Errorf("decision %q (%q), want %q (%q)", decision, message, tc.want, tc.message)
			}
			wantEnrolment := tc.agent.Annotations[v1alpha1.AnnotationAgentEnrolment]
			if tc.enrolment != "" {
				wantEnrolment = tc.enrolment
			}
			after := &v1alpha1.Agent{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(tc.agent), after); err != nil {
				t.Fatal(err)
			}
			if got := after.Annotations[v1alpha1.AnnotationAgentEnrolment]; got != wantEnrolment {
				t.Errorf("the Agent's enrolment is %q, want %q", got, wantEnrolment)
			}
			if tc.token == nil {
				return
			}
			err = c.Get(ctx, client.ObjectKeyFromObject(tc.token), &corev1.Secret{})
			if usedUp := apierrors.IsNotFound(err); usedUp != tc.tokenUsedUp {
				t.Errorf("token used up: %v, want %v", usedUp, tc.tokenUsedUp)
			}
		})
	}
}
