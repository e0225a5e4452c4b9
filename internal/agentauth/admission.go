package agentauth

import (
	"context"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/kubernetes/pkg/apis/certificates"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
)

// PluginName names the admission plugin.
const PluginName = "StellaAgentRestriction"

// Register adds the plugin to plugins; certTTL is the longest an agent's
// certificate may live.
func Register(plugins *admission.Plugins, certTTL time.Duration) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		return &restriction{Handler: admission.NewHandler(admission.Create, admission.Update), certTTL: certTTL}, nil
	})
}

// restriction checks what the authorizer cannot: that the object an agent
// writes is its own, as the stored object says. It also caps the lifetime
// of every certificate asked for an agent identity, whoever asks.
type restriction struct {
	*admission.Handler
	certTTL time.Duration
}

var (
	_ admission.MutationInterface   = &restriction{}
	_ admission.ValidationInterface = &restriction{}
)

// Admit lowers spec.expirationSeconds of a certificate request for an agent
// identity to the configured lifetime, and sets it when the request names
// none: the signer honours a shorter request but would otherwise sign for
// as long as a person's credential (a year). Capping the stored request,
// rather than refusing it, keeps agents that ask for more working, and
// shows the lifetime granted in the request itself.
func (p *restriction) Admit(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	res := a.GetResource()
	if a.GetOperation() != admission.Create || res.Group != certificates.GroupName || res.Resource != "certificatesigningrequests" || a.GetSubresource() != "" {
		return nil
	}
	csr, ok := a.GetObject().(*certificates.CertificateSigningRequest)
	if !ok {
		return apierrors.NewInternalError(fmt.Errorf("%s: unexpected certificate request %T", PluginName, a.GetObject()))
	}
	req, err := parseRequest(csr.Spec.Request)
	if err != nil || !isAgent(&user.DefaultInfo{Name: req.Subject.CommonName, Groups: req.Subject.Organization}) {
		return nil // not an agent's identity; a malformed request is refused by validation
	}
	limit := int32(p.certTTL / time.Second)
	if csr.Spec.ExpirationSeconds == nil || *csr.Spec.ExpirationSeconds > limit {
		csr.Spec.ExpirationSeconds = &limit
	}
	return nil
}

func (p *restriction) Validate(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	agent, ok, err := agentOf(a.GetUserInfo())
	if !ok {
		return nil
	}
	if err != nil {
		return admission.NewForbidden(a, err)
	}
	res := a.GetResource()
	switch {
	case res.Group == "coordination.k8s.io" && res.Resource == "leases":
		if a.GetName() != agentid.LeaseName(agent.Name) {
			return admission.NewForbidden(a, fmt.Errorf("agent %s may only hold Lease %s", agent.Name, agentid.LeaseName(agent.Name)))
		}
	case res.Group == v1alpha1.GroupVersion.Group && a.GetSubresource() == "status" && a.GetOperation() == admission.Update:
		old, ok := a.GetOldObject().(*unstructured.Unstructured)
		if !ok {
			return apierrors.NewInternalError(fmt.Errorf("%s: unexpected stored object %T", PluginName, a.GetOldObject()))
		}
		var owner string
		switch res.Resource {
		case "targets":
			owner, _, _ = unstructured.NestedString(old.Object, "spec", "agent")
		case "deploytasks":
			// The label holds the agent's name as a bounded label value.
			if old.GetLabels()[labelAgent] == v1alpha1.LabelValue(agent.Name) {
				owner = agent.Name
			}
		case "agents":
			owner = old.GetName()
		}
		if owner != agent.Name {
			return admission.NewForbidden(a, fmt.Errorf("%s %s is not served by agent %s", res.Resource, a.GetName(), agent.Name))
		}
	}
	return nil
}
