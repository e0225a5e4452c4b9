package controllers

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/tlog"
)

// EvidencePacketReconciler seals evidence: it creates the EvidencePacket of
// each decided promotion that names one and of each finished rollout
// (deployment or rollback record), and seals every packet once:
// signs its statement, logs it in the transparency log and records where
// the envelope is and the proof that the log holds it.
type EvidencePacketReconciler struct {
	client.Client
	Sealer *evidence.Sealer
}

// SetupWithManager registers the reconciler; a promotion wakes the packet
// its status names.
func (r *EvidencePacketReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		// A packet's spec never changes and only this reconciler writes its
		// status: its own writes need no second look.
		For(&v1alpha1.EvidencePacket{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.Promotion{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			p := o.(*v1alpha1.Promotion)
			if p.Status.EvidencePacket == "" || p.Status.Decision == nil || p.Status.Decision.StatementDigest == "" {
				return nil
			}
			reqs := []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Status.EvidencePacket}}}
			if name := rolloutPacketName(p); name != "" {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: name}})
			}
			return reqs
		})).
		// Sealing waits on files and the API server more than on the CPU;
		// the log serializes only the append itself.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=evidencepackets;promotions;deploytasks,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=evidencepackets,verbs=create
// +kubebuilder:rbac:groups=stella-ops.org,resources=evidencepackets/status,verbs=patch

// Reconcile creates the packet when a promotion names it, then seals it.
func (r *EvidencePacketReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	packet := &v1alpha1.EvidencePacket{}
	err := r.Get(ctx, req.NamespacedName, packet)
	if apierrors.IsNotFound(err) {
		return ctrl.Result{}, errors.Join(r.createDecisionPacket(ctx, req.NamespacedName), r.createRolloutPacket(ctx, req.NamespacedName))
	}
	if err != nil || packet.Status.Phase.IsTerminal() {
		return ctrl.Result{}, err
	}
	before := packet.DeepCopy()
	defer func() {
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, before, packet))
	}()
	if packet.Status.Phase == "" {
		packet.Status.Phase = v1alpha1.EvidencePending
	}
	statement, err := r.Sealer.Store.Get(packet.Spec.ContentDigest)
	if errors.Is(err, evidence.ErrNotFound) {
		markStalled(&packet.Status.Conditions, packet.Generation, v1alpha1.ReasonDependencyNotFound,
			fmt.Sprintf("spec.contentDigest: the evidence store holds no %s; only statements Stella recorded can be sealed", packet.Spec.ContentDigest))
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	seal, err := r.Sealer.Seal(statement)
	if errors.Is(err, tlog.ErrNotWriter) {
		// This replica has just taken the Lease and waits for the log's
		// lock, which the previous holder frees in a moment: try again
		// soon rather than after the queue's growing back-off.
		markReconciling(&packet.Status.Conditions, packet.Generation, v1alpha1.ReasonRetrying, "waiting for the transparency log's lock, which the replica that held the Lease before frees")
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if errors.Is(err, evidence.ErrMalformed) {
		packet.Status.Phase = v1alpha1.EvidenceFailed
		markStalled(&packet.Status.Conditions, packet.Generation, v1alpha1.ReasonInvalidSpec, "spec.contentDigest: "+err.Error())
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	st := &packet.Status
	st.Phase, st.KeyID, st.LogIndex = v1alpha1.EvidenceSealed, seal.KeyID, strconv.FormatUint(seal.LogIndex, 10)
	st.InclusionProof, st.Checkpoint, st.StorageURI, st.EnvelopeDigest = seal.InclusionProof, seal.Checkpoint, seal.EnvelopeURI, seal.Envelope
	st.Verified, st.SealedAt = r.verify(seal) == nil, &metav1.Time{Time: metav1.Now().Time}
	markReady(&st.Conditions, packet.Generation, fmt.Sprintf("sealed by key %.16s as log entry %d", seal.KeyID, seal.LogIndex))
	st.ObservedGeneration = packet.Generation
	return ctrl.Result{}, nil
}

// verify checks the stored envelope and proof as an offline verifier would.
func (r *EvidencePacketReconciler) verify(seal evidence.Seal) error {
	envelope, err := r.Sealer.Store.Get(seal.Envelope)
	if err != nil {
		return err
	}
	proof, err := evidence.DecodeHashes(seal.InclusionProof)
	if err != nil {
		return err
	}
	_, err = evidence.VerifySealed(evidence.Sealed{Envelope: envelope, LogIndex: seal.LogIndex, Checkpoint: []byte(seal.Checkpoint), InclusionProof: proof},
		r.Sealer.Trust())
	return err
}

// createDecisionPacket creates the packet a decided promotion names, with
// the statement its decision recorded.
func (r *EvidencePacketReconciler) createDecisionPacket(ctx context.Context, key types.NamespacedName) error {
	var promos v1alpha1.PromotionList
	if err := r.List(ctx, &promos, client.InNamespace(key.Namespace), client.MatchingFields{indexEvidencePacket: key.Name}); err != nil {
		return err
	}
	for _, p := range promos.Items {
		d := p.Status.Decision
		if d == nil || d.StatementDigest == "" {
			continue
		}
		statement, err := r.Sealer.Store.Get(d.StatementDigest)
		if err != nil {
			return fmt.Errorf("promotion %s: %w", p.Name, err)
		}
		return r.createPacket(ctx, key, &p, v1alpha1.EvidenceReleaseDecision, statement)
	}
	return nil
}

// createRolloutPacket creates the packet of a finished rollout a promotion
// names, with the record of its DeployTasks.
func (r *EvidencePacketReconciler) createRolloutPacket(ctx context.Context, key types.NamespacedName) error {
	var promos v1alpha1.PromotionList
	if err := r.List(ctx, &promos, client.InNamespace(key.Namespace), client.MatchingFields{indexRolloutPacket: key.Name}); err != nil {
		return err
	}
	if len(promos.Items) == 0 {
		return nil
	}
	p := &promos.Items[0] // the packet's name is derived from the promotion's
	var tasks v1alpha1.DeployTaskList
	if err := r.List(ctx, &tasks, client.InNamespace(p.Namespace), client.MatchingFields{indexOwnerPromotion: string(p.UID)}); err != nil {
		return err
	}
	predicateType, statement, err := evidence.RolloutStatement(p, tasks.Items)
	if err != nil {
		return err
	}
	if _, err := r.Sealer.Store.Put(statement); err != nil {
		return err
	}
	kind := v1alpha1.EvidenceDeployment
	if predicateType == evidence.PredicateRollback {
		kind = v1alpha1.EvidenceRollback
	}
	return r.createPacket(ctx, key, p, kind, statement)
}

// createPacket creates the packet named key about promo, with statement
// (already in the evidence store) as its content.
func (r *EvidencePacketReconciler) createPacket(ctx context.Context, key types.NamespacedName, promo *v1alpha1.Promotion, kind v1alpha1.EvidenceType, statement []byte) error {
	st, err := evidence.ParseStatement(statement)
	if err != nil {
		return fmt.Errorf("promotion %s: %w", promo.Name, err)
	}
	packet := &v1alpha1.EvidencePacket{
		ObjectMeta: metav1.ObjectMeta{Namespace: promo.Namespace, Name: key.Name, Labels: map[string]string{v1alpha1.LabelPromotion: v1alpha1.LabelValue(promo.Name)}},
		Spec:       v1alpha1.EvidencePacketSpec{Type: kind, Promotion: promo.Name, PromotionUID: promo.UID, ContentDigest: evidence.DigestOf(statement)},
	}
	for _, s := range st.Subject {
		packet.Spec.Subjects = append(packet.Spec.Subjects, v1alpha1.ComponentDigest{Name: path.Base(s.Name),
			Image: v1alpha1.ImageDigestRef(s.Name + "@sha256:" + s.Digest["sha256"])})
	}
	err = r.Create(ctx, packet)
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("create EvidencePacket %s: %w", key.Name, err)
		}
		return nil
	}
	// Created before, by an earlier pass; never count another promotion's
	// packet, or different content, as this record.
	stored := &v1alpha1.EvidencePacket{}
	if err := r.Get(ctx, key, stored); err != nil {
		return fmt.Errorf("read EvidencePacket %s: %w", key.Name, err)
	}
	if stored.Spec.PromotionUID != promo.UID || stored.Spec.ContentDigest != packet.Spec.ContentDigest {
		return fmt.Errorf("EvidencePacket %s exists with promotion UID %q and content %s, not promotion %s (UID %s) with %s; it is left as it is",
			key.Name, stored.Spec.PromotionUID, stored.Spec.ContentDigest, promo.Name, promo.UID, packet.Spec.ContentDigest)
	}
	return nil
}

// rolloutPacketName is the EvidencePacket of a promotion's finished
// rollout: a deployment record, or a rollback record when it rolled back;
// "" while it has none to seal.
func rolloutPacketName(p *v1alpha1.Promotion) string {
	if len(p.Status.Targets) == 0 || p.Status.Decision == nil || p.Status.Decision.StatementDigest == "" {
		return ""
	}
	switch p.Status.Phase {
	case v1alpha1.PromotionSucceeded, v1alpha1.PromotionFailed:
		return packetName(p, "deployment")
	case v1alpha1.PromotionRolledBack:
		return packetName(p, "rollback")
	}
	return ""
}

// decisionPacketName is the EvidencePacket of a promotion's decision.
func decisionPacketName(p *v1alpha1.Promotion) string {
	return packetName(p, "decision")
}

// packetName names a promotion's record of a kind. Packets outlive their
// promotion, so the name carries the start of the promotion's UID: a
// promotion deleted and created again under its name gets records of its
// own instead of finding the old ones in their place.
func packetName(p *v1alpha1.Promotion, record string) string {
	uid := string(p.UID)
	if len(uid) > 8 {
		uid = uid[:8]
	}
	return boundedName(p.Name+"-"+record+"-"+uid, p.Name+"/"+record+"/"+string(p.UID))
}
