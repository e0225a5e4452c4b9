package admission

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/dynamic/fake"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

var alice = &user.DefaultInfo{Name: "alice", Groups: []string{"release-managers", "system:authenticated"}}

func admit(t *testing.T, resource, kind string, spec map[string]any, u user.Info) (*unstructured.Unstructured, error) {
	t.Helper()
	return admitOn(t, newStore(t, promotion("p", "uid-1", "shop-1"), release("shop-1", "a")), resource, kind, spec, u)
}

// admitOn runs the plugin on a create of spec, reading stored objects from
// store.
func admitOn(t *testing.T, store *fake.FakeDynamicClient, resource, kind string, spec map[string]any, u user.Info) (*unstructured.Unstructured, error) {
	t.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	attrs := admission.NewAttributesRecord(obj, nil,
		v1alpha1.GroupVersion.WithKind(kind), "ns", "x", v1alpha1.GroupVersion.WithResource(resource), "",
		admission.Create, nil, false, u)
	plugin := &identity{Handler: admission.NewHandler(admission.Create)}
	plugin.SetDynamicClient(store)
	if err := plugin.ValidateInitialization(); err != nil {
		t.Fatal(err)
	}
	err := plugin.Admit(context.Background(), attrs, nil)
	return obj, err
}

func TestIdentityStampsTheCredential(t *testing.T) {
	for _, tc := range []struct {
		name           string
		resource, kind string
		spec           map[string]any
		field          []string
		want           any
	}{
		{"requester left empty", "promotions", "Promotion", map[string]any{"release": "r"}, []string{"spec", "requestedBy"}, "alice"},
		{"requester names themselves", "promotions", "Promotion", map[string]any{"requestedBy": "alice"}, []string{"spec", "requestedBy"}, "alice"},
		{"approver left empty", "approvals", "Approval", map[string]any{"promotion": "p"}, []string{"spec", "approver"}, "alice"},
		{"groups left empty", "approvals", "Approval", map[string]any{"promotion": "p"}, []string{"spec", "approverGroups"}, []any{"release-managers", "system:authenticated"}},
		{"groups sent in another order", "approvals", "Approval", map[string]any{"promotion": "p", "approverGroups": []any{"system:authenticated", "release-managers"}}, []string{"spec", "approverGroups"}, []any{"release-managers", "system:authenticated"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := admit(t, tc.resource, tc.kind, tc.spec, alice)
			if err != nil {
				t.Fatal(err)
			}
			got, _, _ := unstructured.NestedFieldCopy(obj.Object, tc.field...)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%v = %v, want %v", tc.field, got, tc.want)
			}
		})
	}
}

func TestIdentityRefusesForgedIdentities(t *testing.T) {
	for _, tc := range []struct {
		name           string
		resource, kind string
		spec           map[string]any
		wantField      string
	}{
		{"another requester", "promotions", "Promotion", map[string]any{"requestedBy": "mallory"}, "spec.requestedBy"},
		{"another approver", "approvals", "Approval", map[string]any{"promotion": "p", "approver": "the-cto"}, "spec.approver"},
		{"extra groups", "approvals", "Approval", map[string]any{"promotion": "p", "approverGroups": []any{"release-managers", "system:masters"}}, "spec.approverGroups"},
		{"requester of the wrong type", "promotions", "Promotion", map[string]any{"requestedBy": int64(7)}, "spec.requestedBy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := admit(t, tc.resource, tc.kind, tc.spec, alice)
			if err == nil || !strings.Contains(err.Error(), tc.wantField) {
				t.Fatalf("want an error naming %s, got %v", tc.wantField, err)
			}
		})
	}
}

func TestIdentityLeavesOtherResourcesAlone(t *testing.T) {
	obj := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"requestedBy": "x"}}}
	attrs := admission.NewAttributesRecord(obj, nil, schema.GroupVersionKind{Group: "other.io", Version: "v1", Kind: "Promotion"},
		"ns", "x", schema.GroupVersionResource{Group: "other.io", Version: "v1", Resource: "promotions"}, "",
		admission.Create, nil, false, alice)
	if err := (&identity{Handler: admission.NewHandler(admission.Create)}).Admit(context.Background(), attrs, nil); err != nil {
		t.Fatal(err)
	}
	if got := obj.Object["spec"].(map[string]any)["requestedBy"]; got != "x" {
		t.Errorf("requestedBy = %v, want it untouched", got)
	}
}
