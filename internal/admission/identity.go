// Package admission holds Stella's admission plugins for the embedded API
// server.
package admission

import (
	"context"
	"fmt"
	"io"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/initializer"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/dynamic"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// IdentityPluginName names the plugin that stamps identities.
const IdentityPluginName = "StellaIdentity"

// RegisterIdentity adds the identity plugin to plugins.
//
// Who requested a promotion and who approved it must come from the
// authenticated request, never from what the client claims: on create, the
// plugin fills spec.requestedBy of a Promotion and spec.approver and
// spec.approverGroups of an Approval from the credential, and refuses a
// request that names anybody else. It also binds each new Approval to the
// stored Promotion it approves (binding.go). The specs are immutable
// afterwards (CEL rules in the CRDs). On an external Kubernetes cluster the
// admission policies in config/admission do the same for identities and
// require a binding; in the embedded server this plugin does it from the
// first request on, without waiting for the policies' schema refresh.
func RegisterIdentity(plugins *admission.Plugins) {
	plugins.Register(IdentityPluginName, func(io.Reader) (admission.Interface, error) {
		return &identity{Handler: admission.NewHandler(admission.Create)}, nil
	})
}

type identity struct {
	*admission.Handler
	// stored reads Promotions and Releases from the API server itself.
	stored dynamic.Interface
}

var (
	_ admission.MutationInterface       = &identity{}
	_ initializer.WantsDynamicClient    = &identity{}
	_ admission.InitializationValidator = &identity{}
)

// Admit checks and stamps the requester's identity in new Promotions and
// Approvals, and binds new Approvals to the promotion they approve.
func (p *identity) Admit(ctx context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if a.GetSubresource() != "" || a.GetResource().Group != v1alpha1.GroupVersion.Group {
		return nil
	}
	obj, ok := a.GetObject().(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	var errs field.ErrorList
	switch a.GetResource().Resource {
	case "promotions":
		errs = stampName(obj, a.GetUserInfo(), "requestedBy")
	case "approvals":
		errs = append(stampName(obj, a.GetUserInfo(), "approver"), stampGroups(obj, a.GetUserInfo(), "approverGroups")...)
		if len(errs) == 0 {
			var err error
			if errs, err = p.bindApproval(ctx, a.GetNamespace(), obj); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(schema.GroupKind{Group: v1alpha1.GroupVersion.Group, Kind: a.GetKind().Kind}, a.GetName(), errs)
	}
	return nil
}

// stampName sets spec.<name> to the user's name; a different value sent by
// the client is an error.
func stampName(obj *unstructured.Unstructured, u user.Info, name string) field.ErrorList {
	path := field.NewPath("spec", name)
	sent, found, err := unstructured.NestedString(obj.Object, "spec", name)
	if err != nil {
		return field.ErrorList{field.TypeInvalid(path, sent, err.Error())}
	}
	if found && sent != "" && sent != u.GetName() {
		return field.ErrorList{field.Invalid(path, sent,
			fmt.Sprintf("must be empty or your own user name %q: the server sets it from your credential", u.GetName()))}
	}
	if err := unstructured.SetNestedField(obj.Object, u.GetName(), "spec", name); err != nil {
		return field.ErrorList{field.InternalError(path, err)}
	}
	return nil
}

// stampGroups sets spec.<name> to the user's groups; a different list sent
// by the client is an error.
func stampGroups(obj *unstructured.Unstructured, u user.Info, name string) field.ErrorList {
	path := field.NewPath("spec", name)
	sent, found, err := unstructured.NestedStringSlice(obj.Object, "spec", name)
	if err != nil {
		return field.ErrorList{field.TypeInvalid(path, sent, err.Error())}
	}
	if found && len(sent) > 0 && !sameSet(sent, u.GetGroups()) {
		return field.ErrorList{field.Invalid(path, sent,
			fmt.Sprintf("must be empty or exactly your own groups %q: the server sets it from your credential", u.GetGroups()))}
	}
	if err := unstructured.SetNestedStringSlice(obj.Object, u.GetGroups(), "spec", name); err != nil {
		return field.ErrorList{field.InternalError(path, err)}
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
