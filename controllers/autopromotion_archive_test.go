package controllers

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
	"github.com/stella-ops/stella/internal/scheme"
)

// An auto-promotion that finished and was archived out of the API is not
// made again under its name: the release was promoted once.
func TestAnArchivedAutoPromotionIsNotMadeAgain(t *testing.T) {
	for _, tc := range []struct {
		name     string
		archived *v1alpha1.Promotion
		want     bool // whether the auto-promotion is made
	}{
		{"never promoted", nil, true},
		{"archived", &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: autoPromotionName("shop-1", "dev"), UID: "u1"},
			Spec: v1alpha1.PromotionSpec{Release: "shop-1", Environment: "dev"}, Status: v1alpha1.PromotionStatus{Phase: v1alpha1.PromotionFailed}}, false},
		{"archived from another environment of the name", &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: autoPromotionName("shop-1", "dev"), UID: "u1"},
			Spec: v1alpha1.PromotionSpec{Release: "shop-1", Environment: "stage"}, Status: v1alpha1.PromotionStatus{Phase: v1alpha1.PromotionFailed}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			a := emptyArchive(t)
			if tc.archived != nil {
				record := archive.NewRecord(tc.archived, nil, nil)
				if _, err := a.Put(&record); err != nil {
					t.Fatal(err)
				}
			}
			b := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
				&v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "dev"}, Spec: v1alpha1.EnvironmentSpec{AutoPromote: true}},
				&v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shop-1"}, Spec: v1alpha1.ReleaseSpec{Version: "1.0.0",
					Components: []v1alpha1.ReleaseComponent{{Name: "api", Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@sha256:" + strings.Repeat("ab", 32))}}}},
			)
			c := withFieldIndexes(b).Build()
			r := &AutoPromotionReconciler{Client: c, Archive: a}
			if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: "ns", Name: "dev"}}); err != nil {
				t.Fatal(err)
			}
			err := c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: autoPromotionName("shop-1", "dev")}, &v1alpha1.Promotion{})
			if made := err == nil; made != tc.want || (err != nil && !apierrors.IsNotFound(err)) {
				t.Errorf("auto-promotion made: %v (%v), want %v", made, err, tc.want)
			}
		})
	}
}
