package agentauth

import (
	"context"
	"crypto/x509/pkix"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/kubernetes/pkg/apis/certificates"

	"github.com/stella-ops/stella/internal/agentauth/agentid"
)

// A request for an agent identity is signed for at most the configured
// lifetime, whatever it asks for and whoever asks; other requests keep
// theirs.
func TestAdmissionCapsAgentCertificates(t *testing.T) {
	const day = 24 * 60 * 60
	plugins := admission.NewPlugins()
	Register(plugins, 24*time.Hour)
	plugin, err := plugins.InitPlugin(PluginName, nil, admission.PluginInitializers{})
	if err != nil {
		t.Fatal(err)
	}
	seconds := func(s int32) *int32 { return &s }
	for _, tc := range []struct {
		name    string
		subject pkix.Name
		asked   *int32
		want    int32
	}{
		{"an agent asking for a year", agentSubject("shop", "host-a"), seconds(365 * day), day},
		{"an agent asking for nothing", agentSubject("shop", "host-a"), nil, day},
		{"an agent asking for an hour", agentSubject("shop", "host-a"), seconds(3600), 3600},
		{"any name in the agents' group", pkix.Name{CommonName: "x", Organization: []string{"admins", agentid.Group}}, seconds(365 * day), day},
		{"a person asking for a year", pkix.Name{CommonName: "alice", Organization: []string{"stella:admins"}}, seconds(365 * day), 365 * day},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr := &certificates.CertificateSigningRequest{Spec: certificates.CertificateSigningRequestSpec{Request: requestPEM(t, tc.subject), ExpirationSeconds: tc.asked}}
			a := admission.NewAttributesRecord(csr, nil, certificates.Kind("CertificateSigningRequest").WithVersion("v1"), "", "req",
				schema.GroupVersionResource{Group: certificates.GroupName, Version: "v1", Resource: "certificatesigningrequests"}, "",
				admission.Create, nil, false, &user.DefaultInfo{Name: "alice"})
			if err := plugin.(admission.MutationInterface).Admit(context.Background(), a, nil); err != nil {
				t.Fatal(err)
			}
			if csr.Spec.ExpirationSeconds == nil || *csr.Spec.ExpirationSeconds != tc.want {
				t.Fatalf("expirationSeconds %v, want %d", csr.Spec.ExpirationSeconds, tc.want)
			}
		})
	}
}
