package agentauth

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// A join token that expired unused is deleted; one still valid is kept
// until it expires.
func TestJoinTokenCleaner(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	withoutExpiration := joinToken("noexpi", "shop", "host-a", now)
	delete(withoutExpiration.Data, "expiration")
	for _, tc := range []struct {
		name     string
		token    *corev1.Secret
		deleted  bool
		comeBack time.Duration
	}{
		{"expired a minute ago", joinToken("abcdef", "shop", "host-a", now.Add(-time.Minute)), true, 0},
		{"expires now", joinToken("abcdef", "shop", "host-a", now), true, 0},
		{"valid for ten minutes", joinToken("abcdef", "shop", "host-a", now.Add(10*time.Minute)), false, 10 * time.Minute},
		{"no expiration", withoutExpiration, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(tc.token).Build()
			r := &JoinTokenCleaner{Client: c, Now: func() time.Time { return now }}
			res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tc.token)})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Get(ctx, client.ObjectKeyFromObject(tc.token), &corev1.Secret{})
			if gone := apierrors.IsNotFound(err); gone != tc.deleted {
				t.Errorf("deleted: %v, want %v", gone, tc.deleted)
			}
			if res.RequeueAfter != tc.comeBack {
				t.Errorf("comes back after %s, want %s", res.RequeueAfter, tc.comeBack)
			}
		})
	}
}
