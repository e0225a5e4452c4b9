package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/scan"
)

// VEXStatementReconciler accepts OpenVEX documents that parse and hold only
// statements the scanner can apply, and stalls the others with the
// statement and field at fault. The scanner applies only accepted ones.
type VEXStatementReconciler struct {
	client.Client
}

// SetupWithManager registers the reconciler.
func (r *VEXStatementReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.VEXStatement{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=vexstatements,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=vexstatements/status,verbs=patch

// Reconcile checks the document and patches the status once.
func (r *VEXStatementReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	stmt := &v1alpha1.VEXStatement{}
	if err := r.Get(ctx, req.NamespacedName, stmt); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := stmt.DeepCopy()
	defer func() {
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, before, stmt))
	}()
	computeVEXStatementStatus(stmt)
	return ctrl.Result{}, nil
}

func computeVEXStatementStatus(stmt *v1alpha1.VEXStatement) {
	st := &stmt.Status
	sum := sha256.Sum256([]byte(stmt.Spec.Document))
	st.DocumentDigest = v1alpha1.Digest("sha256:" + hex.EncodeToString(sum[:]))
	st.ObservedGeneration = stmt.Generation
	doc, err := scan.ParseVEX([]byte(stmt.Spec.Document))
	if err != nil {
		st.Statements = 0
		markStalled(&st.Conditions, stmt.Generation, v1alpha1.ReasonInvalidSpec, "spec.document: "+err.Error())
		return
	}
	st.Statements = int32(len(doc.Statements))
	issuer := stmt.Spec.Issuer
	if issuer == "" {
		issuer = doc.Author
	}
	markReady(&st.Conditions, stmt.Generation, fmt.Sprintf("%d statement(s) issued by %s", len(doc.Statements), issuer))
}
