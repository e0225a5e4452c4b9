package agentauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/stella-ops/stella/internal/agentauth/agentid"
)

func TestAgentOf(t *testing.T) {
	for _, tc := range []struct {
		user    user.Info
		want    Agent
		isAgent bool
		bad     bool
	}{
		{&user.DefaultInfo{Name: "stella:agent:shop:host-1", Groups: []string{agentid.Group}}, Agent{"shop", "host-1"}, true, false},
		{&user.DefaultInfo{Name: "alice", Groups: []string{"stella:releasers"}}, Agent{}, false, false},
		{&user.DefaultInfo{Name: "alice", Groups: []string{agentid.Group}}, Agent{}, true, true},
		{&user.DefaultInfo{Name: "stella:agent:shop"}, Agent{}, true, true},
		{&user.DefaultInfo{Name: "stella:agent:shop:host:1"}, Agent{}, true, true},
	} {
		got, ok, err := agentOf(tc.user)
		if got != tc.want || ok != tc.isAgent || (err != nil) != tc.bad {
			t.Errorf("agentOf(%s %v) = %v, %v, %v; want %v, %v, error %v", tc.user.GetName(), tc.user.GetGroups(), got, ok, err, tc.want, tc.isAgent, tc.bad)
		}
	}
}

func TestRequestedAgentAcceptsOnlyAnAgentClientCertificate(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	request := func(cn string, orgs []string, dns ...string) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: cn, Organization: orgs}, DNSNames: dns,
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	client := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	for _, tc := range []struct {
		name      string
		request   []byte
		usages    []certificatesv1.KeyUsage
		ok        bool
		enrolment string
	}{
		{"an agent's client certificate", request("stella:agent:shop:host-1", []string{agentid.Group}), client, true, ""},
		{"of an enrolment", request("stella:agent:shop:host-1", []string{agentid.Group, agentid.EnrolmentGroup("abcdef")}), client, true, "abcdef"},
		{"of two enrolments", request("stella:agent:shop:host-1", []string{agentid.Group, agentid.EnrolmentGroup("abcdef"), agentid.EnrolmentGroup("ghijkl")}), client, false, ""},
		{"of an empty enrolment", request("stella:agent:shop:host-1", []string{agentid.Group, agentid.EnrolmentGroup("")}), client, false, ""},
		{"an enrolment without the agents' group", request("stella:agent:shop:host-1", []string{agentid.EnrolmentGroup("abcdef")}), client, false, ""},
		{"another group", request("stella:agent:shop:host-1", []string{"system:masters"}), client, false, ""},
		{"an extra group", request("stella:agent:shop:host-1", []string{agentid.Group, "system:masters"}), client, false, ""},
		{"not an agent name", request("alice", []string{agentid.Group}), client, false, ""},
		{"with a DNS name", request("stella:agent:shop:host-1", []string{agentid.Group}, "evil.example"), client, false, ""},
		{"for serving", request("stella:agent:shop:host-1", []string{agentid.Group}), []certificatesv1.KeyUsage{certificatesv1.UsageServerAuth}, false, ""},
		{"not a request", []byte("garbage"), client, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{Request: tc.request, Usages: tc.usages}}
			agent, enrolment, ok := requestedAgent(csr)
			if ok != tc.ok || (ok && (agent != (Agent{"shop", "host-1"}) || enrolment != tc.enrolment)) {
				t.Fatalf("got %v, %q, %v; want ok %v, enrolment %q", agent, enrolment, ok, tc.ok, tc.enrolment)
			}
		})
	}
}
