package admission

import (
	"context"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func TestIdentityOverwritesWhatTheClientSent(t *testing.T) {
	alice := &user.DefaultInfo{Name: "alice", Groups: []string{"release-managers", "system:authenticated"}}
	for _, tc := range []struct {
		resource, kind string
		spec           map[string]any
		field          []string
		want           any
	}{
		{"promotions", "Promotion", map[string]any{"release": "r", "requestedBy": "mallory"}, []string{"spec", "requestedBy"}, "alice"},
		{"approvals", "Approval", map[string]any{"promotion": "p", "approver": "the-cto"}, []string{"spec", "approver"}, "alice"},
		{"approvals", "Approval", map[string]any{"promotion": "p", "approverGroups": []any{"system:masters"}}, []string{"spec", "approverGroups"}, []any{"release-managers", "system:authenticated"}},
		{"promotions", "Promotion", map[string]any{"release": "r"}, []string{"spec", "requestedBy"}, "alice"},
	} {
		obj := &unstructured.Unstructured{Object: map[string]any{"spec": tc.spec}}
		attrs := admission.NewAttributesRecord(obj, nil,
			v1alpha1.GroupVersion.WithKind(tc.kind), "ns", "x", v1alpha1.GroupVersion.WithResource(tc.resource), "",
			admission.Create, nil, false, alice)
		plugin := &identity{Handler: admission.NewHandler(admission.Create)}
		if err := plugin.Admit(context.Background(), attrs, nil); err != nil {
			t.Fatalf("%s: %v", tc.resource, err)
		}
		got, _, _ := unstructured.NestedFieldCopy(obj.Object, tc.field...)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %v = %v, want %v", tc.resource, tc.field, got, tc.want)
		}
	}
}

func TestIdentityLeavesOtherResourcesAlone(t *testing.T) {
	obj := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"requestedBy": "x"}}}
	attrs := admission.NewAttributesRecord(obj, nil, schema.GroupVersionKind{Group: "other.io", Version: "v1", Kind: "Promotion"},
		"ns", "x", schema.GroupVersionResource{Group: "other.io", Version: "v1", Resource: "promotions"}, "",
		admission.Create, nil, false, &user.DefaultInfo{Name: "alice"})
	if err := (&identity{Handler: admission.NewHandler(admission.Create)}).Admit(context.Background(), attrs, nil); err != nil {
		t.Fatal(err)
	}
	if got := obj.Object["spec"].(map[string]any)["requestedBy"]; got != "x" {
		t.Errorf("requestedBy = %v, want it untouched", got)
	}
}
