package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// fieldOwner owns the status fields the reconcilers write.
const fieldOwner = client.FieldOwner("stella-controllers")

// markReady sets Ready=True and drops Reconciling and Stalled, which are
// present only while true.
func markReady(conds *[]metav1.Condition, generation int64, message string) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonSucceeded, Message: message, ObservedGeneration: generation,
	})
	meta.RemoveStatusCondition(conds, v1alpha1.ConditionReconciling)
	meta.RemoveStatusCondition(conds, v1alpha1.ConditionStalled)
}

// markStalled sets Stalled=True and Ready=False with the same reason and
// message: the spec must change before anything else happens.
func markStalled(conds *[]metav1.Condition, generation int64, reason, message string) {
	markNotReady(conds, v1alpha1.ConditionStalled, generation, reason, message)
	meta.RemoveStatusCondition(conds, v1alpha1.ConditionReconciling)
}

// markReconciling sets Reconciling=True and Ready=False with the same reason
// and message: the reconciler is working or waiting, and says on what.
func markReconciling(conds *[]metav1.Condition, generation int64, reason, message string) {
	markNotReady(conds, v1alpha1.ConditionReconciling, generation, reason, message)
}

// markNotReady sets the abnormal-true condition why and Ready=False with
// the same reason and message.
func markNotReady(conds *[]metav1.Condition, why string, generation int64, reason, message string) {
	for _, t := range []string{why, v1alpha1.ConditionReady} {
		status := metav1.ConditionTrue
		if t == v1alpha1.ConditionReady {
			status = metav1.ConditionFalse
		}
		meta.SetStatusCondition(conds, metav1.Condition{Type: t, Status: status, Reason: reason, Message: message, ObservedGeneration: generation})
	}
}

// patchStatus writes the difference between before and obj's status in one
// merge patch, and nothing when there is none.
func patchStatus(ctx context.Context, c client.Client, before, obj client.Object) error {
	return patchStatusWith(ctx, c, client.MergeFrom(before), obj)
}

// patchStatusAsRead writes the difference between before and obj's status
// only over the version before was read at: when someone wrote obj since,
// the write fails with a conflict and the caller judges again from a fresh
// read. It writes nothing when there is no difference.
func patchStatusAsRead(ctx context.Context, c client.Client, before, obj client.Object) error {
	// The lock's resourceVersion makes no patch empty: look first.
	if data, err := client.MergeFrom(before).Data(obj); err != nil || string(data) == "{}" {
		return err
	}
	return patchStatusWith(ctx, c, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}), obj)
}

// patchStatusWith writes obj's status with patch, made once, and nothing
// when the patch is empty.
func patchStatusWith(ctx context.Context, c client.Client, patch client.Patch, obj client.Object) error {
	data, err := patch.Data(obj)
	if err != nil {
		return err
	}
	if string(data) == "{}" {
		return nil
	}
	return client.IgnoreNotFound(c.Status().Patch(ctx, obj, client.RawPatch(patch.Type(), data), fieldOwner))
}
