package admission

import (
	"context"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic/fake"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func digestRef(component, hex string) string {
	return "reg.example/shop/" + component + "@sha256:" + strings.Repeat(hex, 64)
}

func promotion(name string, uid types.UID, release string) *v1alpha1.Promotion {
	return &v1alpha1.Promotion{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Promotion"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: uid},
		Spec:       v1alpha1.PromotionSpec{Release: release, Environment: "prod", RequestedBy: "rita"},
	}
}

// release is a Release whose api and worker images have digests of the
// repeated hex digit.
func release(name, hex string) *v1alpha1.Release {
	return &v1alpha1.Release{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Release"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: v1alpha1.ReleaseSpec{Version: "1.0.0", Components: []v1alpha1.ReleaseComponent{
			{Name: "api", Image: v1alpha1.ImageDigestRef(digestRef("api", hex))},
			{Name: "worker", Image: v1alpha1.ImageDigestRef(digestRef("worker", hex))},
		}},
	}
}

// newStore is a client of a store holding objs.
func newStore(t *testing.T, objs ...runtime.Object) *fake.FakeDynamicClient {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewSimpleDynamicClient(scheme, objs...)
}

func components(hex string) []any {
	return []any{
		map[string]any{"name": "api", "image": digestRef("api", hex)},
		map[string]any{"name": "worker", "image": digestRef("worker", hex)},
	}
}

func TestApprovalIsBoundToTheStoredPromotion(t *testing.T) {
	for _, tc := range []struct {
		name string
		sent map[string]any
	}{
		{"binding left empty", map[string]any{}},
		{"binding sent by the client, images in another order", map[string]any{"promotionUID": "uid-1", "release": "shop-1",
			"components": []any{components("a")[1], components("a")[0]}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := map[string]any{"promotion": "p", "decision": "approve"}
			for k, v := range tc.sent {
				spec[k] = v
			}
			obj, err := admit(t, "approvals", "Approval", spec, alice)
			if err != nil {
				t.Fatal(err)
			}
			got, _, _ := unstructured.NestedMap(obj.Object, "spec")
			want := map[string]any{"promotion": "p", "decision": "approve", "approver": "alice",
				"approverGroups": []any{"release-managers", "system:authenticated"},
				"promotionUID":   "uid-1", "release": "shop-1", "components": components("a")}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("spec = %v\nwant   %v", got, want)
			}
		})
	}
}

func TestApprovalBindingRefusals(t *testing.T) {
	stored := newStore(t, promotion("p", "uid-1", "shop-1"), release("shop-1", "a"), release("shop-2", "b"),
		promotion("no-release", "uid-2", "shop-gone"))
	for _, tc := range []struct {
		name      string
		spec      map[string]any
		wantField string
		wantText  string
	}{
		{"a promotion that does not exist", map[string]any{"promotion": "later"},
			"spec.promotion", `there is no Promotion "later" in namespace ns to approve`},
		{"a promotion whose release does not exist", map[string]any{"promotion": "no-release"},
			"spec.promotion", "names Release shop-gone, which does not exist"},
		{"the UID of an earlier promotion of that name", map[string]any{"promotion": "p", "promotionUID": "uid-of-a-deleted-one"},
			"spec.promotionUID", "must be empty or uid-1, the UID of Promotion p as stored"},
		{"another release", map[string]any{"promotion": "p", "release": "shop-2"},
			"spec.release", "must be empty or shop-1"},
		{"other images", map[string]any{"promotion": "p", "components": components("b")},
			"spec.components", "the images of Release shop-1 as stored"},
		{"one image missing", map[string]any{"promotion": "p", "components": components("a")[:1]},
			"spec.components", "the images of Release shop-1 as stored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec["decision"] = "approve"
			_, err := admitOn(t, stored, "approvals", "Approval", tc.spec, alice)
			if err == nil || !strings.Contains(err.Error(), tc.wantField) || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("want an error naming %s and saying %q, got %v", tc.wantField, tc.wantText, err)
			}
		})
	}
}

// The attack: p is approved, deleted and created again for another
// release. The old binding is refused for the new p, and a new approval is
// bound to the new p, so that the old one can never count for it.
func TestApprovalOfARecreatedPromotion(t *testing.T) {
	store := newStore(t, promotion("p", "uid-1", "shop-1"), release("shop-1", "a"), release("shop-2", "b"))
	first, err := admitOn(t, store, "approvals", "Approval", map[string]any{"promotion": "p", "decision": "approve"}, alice)
	if err != nil {
		t.Fatal(err)
	}
	oldBinding, _, _ := unstructured.NestedMap(first.Object, "spec")

	promotions := store.Resource(promotionsResource).Namespace("ns")
	if err := promotions.Delete(context.Background(), "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admitOn(t, store, "approvals", "Approval", map[string]any{"promotion": "p", "decision": "approve"}, alice); err == nil {
		t.Fatal("an approval of a deleted promotion was admitted")
	}
	recreated, err := runtime.DefaultUnstructuredConverter.ToUnstructured(promotion("p", "uid-2", "shop-2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := promotions.Create(context.Background(), &unstructured.Unstructured{Object: recreated}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	if _, err := admitOn(t, store, "approvals", "Approval", oldBinding, alice); err == nil || !strings.Contains(err.Error(), "spec.promotionUID") {
		t.Fatalf("the first approval's binding was admitted for the new promotion: %v", err)
	}
	second, err := admitOn(t, store, "approvals", "Approval", map[string]any{"promotion": "p", "decision": "approve"}, alice)
	if err != nil {
		t.Fatal(err)
	}
	uid, _, _ := unstructured.NestedString(second.Object, "spec", "promotionUID")
	rel, _, _ := unstructured.NestedString(second.Object, "spec", "release")
	if uid != "uid-2" || rel != "shop-2" {
		t.Errorf("a new approval is bound to %s/%s, want uid-2/shop-2", uid, rel)
	}
}

func TestIdentityNeedsTheStore(t *testing.T) {
	if err := (&identity{}).ValidateInitialization(); err == nil {
		t.Error("the plugin starts without a client to read promotions")
	}
}
