package admission

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/dynamic/fake"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// referenced is a stored object of kind named name in namespace "ns".
func referenced(kind, name string, deleting bool) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind(kind)
	u.SetNamespace("ns")
	u.SetName(name)
	if deleting {
		u.SetDeletionTimestamp(&metav1.Time{Time: time.Now()})
		u.SetFinalizers([]string{"stella-ops.org/test"})
	}
	return u
}

func TestReferencesRefuseAPromotionOfWhatDoesNotExist(t *testing.T) {
	stored := []runtime.Object{
		referenced("Release", "shop-1", false), referenced("Release", "shop-0", true),
		referenced("Environment", "prod", false), referenced("Environment", "old", true),
	}
	for _, tc := range []struct {
		name             string
		resource         string
		subresource      string
		spec             map[string]any
		wantInvalid      []string // substrings of the refusal; none: accepted
		wantNotMentioned string
	}{
		{name: "both exist", resource: "promotions", spec: map[string]any{"release": "shop-1", "environment": "prod"}},
		{name: "missing release", resource: "promotions", spec: map[string]any{"release": "shop-9", "environment": "prod"},
			wantInvalid: []string{"spec.release", "Release shop-9 does not exist in namespace ns", "create the release first"}, wantNotMentioned: "spec.environment"},
		{name: "missing environment", resource: "promotions", spec: map[string]any{"release": "shop-1", "environment": "prdo"},
			wantInvalid: []string{"spec.environment", "Environment prdo does not exist in namespace ns", "promote into one that exists"}, wantNotMentioned: "spec.release"},
		{name: "both missing, both named", resource: "promotions", spec: map[string]any{"release": "shop-9", "environment": "prdo"},
			wantInvalid: []string{"spec.release", "spec.environment"}},
		{name: "release being deleted", resource: "promotions", spec: map[string]any{"release": "shop-0", "environment": "prod"},
			wantInvalid: []string{"spec.release", "Release shop-0 is being deleted"}},
		{name: "environment being deleted", resource: "promotions", spec: map[string]any{"release": "shop-1", "environment": "old"},
			wantInvalid: []string{"spec.environment", "Environment old is being deleted"}},
		{name: "a release that is not a string", resource: "promotions", spec: map[string]any{"release": int64(7), "environment": "prod"},
			wantInvalid: []string{"spec.release"}},
		{name: "status writes are not checked", resource: "promotions", subresource: "status", spec: map[string]any{"release": "shop-9", "environment": "prdo"}},
		{name: "other kinds are not checked", resource: "approvals", spec: map[string]any{"release": "shop-9", "environment": "prdo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scheme := runtime.NewScheme()
			if err := v1alpha1.AddToScheme(scheme); err != nil {
				t.Fatal(err)
			}
			plugin := &references{Handler: admission.NewHandler(admission.Create)}
			plugin.SetDynamicClient(fake.NewSimpleDynamicClient(scheme, stored...))
			if err := plugin.ValidateInitialization(); err != nil {
				t.Fatal(err)
			}
			obj := &unstructured.Unstructured{Object: map[string]any{"spec": tc.spec}}
			attrs := admission.NewAttributesRecord(obj, nil, v1alpha1.GroupVersion.WithKind("Promotion"), "ns", "p",
				v1alpha1.GroupVersion.WithResource(tc.resource), tc.subresource, admission.Create, nil, false, &user.DefaultInfo{Name: "alice"})
			err := plugin.Validate(context.Background(), attrs, nil)
			if len(tc.wantInvalid) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("got %v, want Invalid", err)
			}
			for _, want := range tc.wantInvalid {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q does not say %q", err, want)
				}
			}
			if tc.wantNotMentioned != "" && strings.Contains(err.Error(), tc.wantNotMentioned) {
				t.Errorf("%q blames %s, which exists", err, tc.wantNotMentioned)
			}
		})
	}
}

func TestReferencesNeedTheLoopbackClient(t *testing.T) {
	plugin := &references{Handler: admission.NewHandler(admission.Create)}
	if err := plugin.ValidateInitialization(); err == nil {
		t.Fatal("the plugin started with no client to read releases")
	}
}
