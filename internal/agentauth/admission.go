package agentauth

import (
	"context"
	"fmt"
	"io"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apiserver/pkg/admission"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// PluginName names the admission plugin.
const PluginName = "StellaAgentRestriction"

// Register adds the plugin to plugins.
func Register(plugins *admission.Plugins) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		return &restriction{Handler: admission.NewHandler(admission.Create, admission.Update)}, nil
	})
}

// restriction checks what the authorizer cannot: that the object an agent
// writes is its own, as the stored object says.
type restriction struct {
	*admission.Handler
}

var _ admission.ValidationInterface = &restriction{}

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
		if a.GetName() != LeaseName(agent.Name) {
			return admission.NewForbidden(a, fmt.Errorf("agent %s may only hold Lease %s", agent.Name, LeaseName(agent.Name)))
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
			owner = old.GetLabels()[labelAgent]
		case "agents":
			owner = old.GetName()
		}
		if owner != agent.Name {
			return admission.NewForbidden(a, fmt.Errorf("%s %s is not served by agent %s", res.Resource, a.GetName(), agent.Name))
		}
	}
	return nil
}
