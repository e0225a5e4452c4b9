package agentauth

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
)

// JoinTokenCleaner deletes the join tokens that expired unused. The API
// server already refuses an expired token; deleting it keeps kube-system
// from filling up with them.
type JoinTokenCleaner struct {
	client.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SetupWithManager registers the cleaner for the join tokens only.
func (r *JoinTokenCleaner) SetupWithManager(mgr ctrl.Manager) error {
	isJoinToken := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == agentid.JoinTokenNamespace && o.GetLabels()[v1alpha1.LabelAgent] != ""
	})
	return ctrl.NewControllerManagedBy(mgr).Named("agent-join-tokens").
		For(&corev1.Secret{}, builder.WithPredicates(isJoinToken)).Complete(r)
}

func (r *JoinTokenCleaner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Join tokens are Secrets in kube-system; the cleaner reads and deletes
// nothing elsewhere.
// +kubebuilder:rbac:groups="",namespace=kube-system,resources=secrets,verbs=get;list;watch;delete

// Reconcile deletes a join token that has expired, and comes back when it
// expires otherwise.
func (r *JoinTokenCleaner) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	token := &corev1.Secret{}
	if err := r.Get(ctx, req.NamespacedName, token); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if token.Type != corev1.SecretTypeBootstrapToken {
		return ctrl.Result{}, nil
	}
	expires, err := time.Parse(time.RFC3339, string(token.Data["expiration"]))
	if err != nil {
		// Without an expiration the token is not one stellactl made: a
		// person decides about it.
		ctrl.LoggerFrom(ctx).Info("A join token without a readable expiration is left alone", "secret", req.Name, "error", err.Error())
		return ctrl.Result{}, nil
	}
	if left := expires.Sub(r.now()); left > 0 {
		return ctrl.Result{RequeueAfter: left}, nil
	}
	if err := r.Delete(ctx, token, client.Preconditions{UID: &token.UID}); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("delete join token %s, expired at %s: %w", req.Name, expires.Format(time.RFC3339), err)
	}
	ctrl.LoggerFrom(ctx).Info("Deleted an expired join token", "secret", req.Name, "agent", token.Labels[v1alpha1.LabelAgentNamespace]+"/"+token.Labels[v1alpha1.LabelAgent])
	return ctrl.Result{}, nil
}
