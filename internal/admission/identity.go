// Package admission holds Stella's admission plugins for the embedded API
// server.
package admission

import (
	"context"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apiserver/pkg/admission"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// IdentityPluginName names the plugin that stamps identities.
const IdentityPluginName = "StellaIdentity"

// RegisterIdentity adds the identity plugin to plugins.
//
// Who requested a promotion and who approved it must come from the
// authenticated request, never from what the client wrote: the plugin
// overwrites spec.requestedBy of a new Promotion and spec.approver and
// spec.approverGroups of a new Approval. The specs are immutable afterwards
// (CEL rules in the CRDs). On an external Kubernetes cluster the
// MutatingAdmissionPolicies in config/admission do the same; in the embedded
// server this plugin does it without waiting for the policies' schema
// refresh, so the rule holds from the first request.
func RegisterIdentity(plugins *admission.Plugins) {
	plugins.Register(IdentityPluginName, func(io.Reader) (admission.Interface, error) {
		return &identity{Handler: admission.NewHandler(admission.Create)}, nil
	})
}

type identity struct {
	*admission.Handler
}

var _ admission.MutationInterface = &identity{}

// Admit stamps the requester's identity into new Promotions and Approvals.
func (p *identity) Admit(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if a.GetSubresource() != "" || a.GetResource().Group != v1alpha1.GroupVersion.Group {
		return nil
	}
	obj, ok := a.GetObject().(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	user := a.GetUserInfo()
	var err error
	switch a.GetResource().Resource {
	case "promotions":
		err = unstructured.SetNestedField(obj.Object, user.GetName(), "spec", "requestedBy")
	case "approvals":
		if err = unstructured.SetNestedField(obj.Object, user.GetName(), "spec", "approver"); err == nil {
			err = unstructured.SetNestedStringSlice(obj.Object, user.GetGroups(), "spec", "approverGroups")
		}
	}
	if err != nil {
		return admission.NewForbidden(a, fmt.Errorf("stamp the requester's identity: %w", err))
	}
	return nil
}
