package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
)

// PromotionArchiver keeps an environment's finished promotions in the API
// only as long as its spec.promotionRetention says: an older one is stored
// in the archive (the promotion, its approvals and its sealed evidence
// packets) and then deleted from the API with its DeployTasks (which the
// garbage collector removes as the promotion owns them), Approvals and
// EvidencePackets (which it deletes, as nothing owns them). It archives a
// promotion only once its evidence is sealed, so that nothing is archived
// that would still change.
//
// Every step can be repeated: the record and its index entries are written
// before anything is deleted, and a promotion already in the archive is only
// deleted. A crash between deleting the promotion and deleting its packets
// and approvals leaves those behind; every pass deletes what is left of the
// archived promotions of the environment's namespace.
type PromotionArchiver struct {
	client.Client
	// APIReader reads past the cache before anything is deleted.
	APIReader client.Reader
	Archive   *archive.Archive
	// Now is the clock promotions' ages are measured by.
	Now func() time.Time
	// swept holds the namespaces swept for leftovers of archived
	// promotions since this process started. Leftovers come only from a
	// crash between archiving and deleting (the first pass after start
	// sweeps) or from a packet made again after its promotion left the
	// API (environmentOfPacket asks for another sweep): sweeping on every
	// pass read the whole namespace each time, which grew with history.
	swept sync.Map // namespace → struct{}
}

// SetupWithManager registers the archiver: it looks at an environment when
// its retention changes, one of its promotions finishes, or the evidence
// of one is sealed.
func (r *PromotionArchiver) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("promotionarchiver").
		For(&v1alpha1.Environment{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.Promotion{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.(*v1alpha1.Promotion).Spec.Environment}}}
		}), builder.WithPredicates(promotionFinished)).
		Watches(&v1alpha1.EvidencePacket{}, handler.EnqueueRequestsFromMapFunc(r.environmentOfPacket), builder.WithPredicates(packetFinished)).
		Complete(r)
}

// promotionFinished passes a promotion that is, or has just become,
// terminal.
var promotionFinished = predicate.Funcs{
	CreateFunc:  func(e event.CreateEvent) bool { return e.Object.(*v1alpha1.Promotion).Status.Phase.IsTerminal() },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectNew.(*v1alpha1.Promotion).Status.Phase.IsTerminal() && !e.ObjectOld.(*v1alpha1.Promotion).Status.Phase.IsTerminal()
	},
}

// packetFinished passes an evidence packet that has just been sealed (or
// failed for good).
var packetFinished = predicate.Funcs{
	CreateFunc:  func(e event.CreateEvent) bool { return e.Object.(*v1alpha1.EvidencePacket).Status.Phase.IsTerminal() },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectNew.(*v1alpha1.EvidencePacket).Status.Phase.IsTerminal() && !e.ObjectOld.(*v1alpha1.EvidencePacket).Status.Phase.IsTerminal()
	},
}

// environmentOfPacket is the environment of the promotion a packet seals.
// A packet whose promotion has left the API (the evidence reconciler may
// make a packet again just after the archiver deleted it, while its cache
// still held the promotion) wakes every environment of the namespace: each
// pass deletes what is left of archived promotions there.
func (r *PromotionArchiver) environmentOfPacket(ctx context.Context, o client.Object) []reconcile.Request {
	packet := o.(*v1alpha1.EvidencePacket)
	promo := &v1alpha1.Promotion{}
	err := r.Get(ctx, types.NamespacedName{Namespace: packet.Namespace, Name: packet.Spec.Promotion}, promo)
	if err == nil && promo.UID == packet.Spec.PromotionUID {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: promo.Namespace, Name: promo.Spec.Environment}}}
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil
	}
	r.swept.Delete(packet.Namespace)
	var envs v1alpha1.EnvironmentList
	if err := r.List(ctx, &envs, client.InNamespace(packet.Namespace)); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(envs.Items))
	for _, env := range envs.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&env)})
	}
	return reqs
}

// +kubebuilder:rbac:groups=stella-ops.org,resources=environments;promotions;approvals;evidencepackets,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=promotions;approvals;evidencepackets,verbs=delete

// Reconcile archives the environment's finished promotions beyond its
// retention, oldest first, and deletes what is left of archived ones.
func (r *PromotionArchiver) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	env := &v1alpha1.Environment{}
	if err := r.Get(ctx, req.NamespacedName, env); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var promos v1alpha1.PromotionList
	if err := r.List(ctx, &promos, client.InNamespace(env.Namespace), client.MatchingFields{indexEnvironment: env.Name}); err != nil {
		return ctrl.Result{}, err
	}
	due, wakeAt := r.beyondRetention(env, promos.Items)
	var errs []error
	for _, p := range due {
		switch step, err := r.archive(ctx, p); {
		case err != nil:
			errs = append(errs, fmt.Errorf("archive promotion %s: %w", p.Name, err))
		case step == archiveWaitsForSeal:
			logf.FromContext(ctx).V(1).Info("Promotion's evidence is not sealed yet; archived once it is", "promotion", p.Name)
		}
	}
	if _, done := r.swept.Load(env.Namespace); !done {
		err := r.deleteLeftovers(ctx, env.Namespace)
		if err == nil {
			r.swept.Store(env.Namespace, struct{}{})
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	var result ctrl.Result
	if !wakeAt.IsZero() {
		result.RequeueAfter = max(wakeAt.Sub(r.Now()), time.Second)
	}
	return result, nil
}

// beyondRetention lists the finished promotions that the environment's
// retention no longer keeps, oldest first, and when the next of the others
// becomes old enough to go (zero when none will by age alone).
func (r *PromotionArchiver) beyondRetention(env *v1alpha1.Environment, promos []v1alpha1.Promotion) (due []*v1alpha1.Promotion, wakeAt time.Time) {
	keep, minAge := env.Spec.Retention()
	var finished []*v1alpha1.Promotion
	for i := range promos {
		if p := &promos[i]; p.Spec.Environment == env.Name && p.Status.Phase.IsTerminal() && p.DeletionTimestamp == nil {
			finished = append(finished, p)
		}
	}
	slices.SortFunc(finished, func(a, b *v1alpha1.Promotion) int { return promotionOrder(b).compare(promotionOrder(a)) }) // newest first
	if len(finished) <= keep {
		return nil, time.Time{}
	}
	// The newest success is what the environment runs: it stays, so that
	// status.currentRelease never rests on history entries that newer
	// failures may push out of status.history.
	current := slices.IndexFunc(finished, func(p *v1alpha1.Promotion) bool { return p.Status.Phase == v1alpha1.PromotionSucceeded })
	now := r.Now()
	for i, p := range finished {
		if i < keep || i == current {
			continue
		}
		goesAt := finishedAt(p).Add(minAge)
		if goesAt.After(now) {
			if wakeAt.IsZero() || goesAt.Before(wakeAt) {
				wakeAt = goesAt
			}
			continue
		}
		due = append(due, p)
	}
	slices.Reverse(due)
	return due, wakeAt
}

// finishedAt is when a finished promotion ended; one that never recorded it
// counts from its creation.
func finishedAt(p *v1alpha1.Promotion) time.Time {
	if p.Status.FinishedAt != nil {
		return p.Status.FinishedAt.Time
	}
	return p.CreationTimestamp.Time
}

// archiveStep says how far archiving a promotion got.
type archiveStep int

const (
	// archiveDone: the promotion is in the archive and gone from the API.
	archiveDone archiveStep = iota
	// archiveWaitsForSeal: its evidence is not sealed yet; the packet's
	// sealing wakes the environment again.
	archiveWaitsForSeal
)

// archive stores the promotion's record, unless the archive has it
// already, and deletes the promotion, its approvals and its packets.
func (r *PromotionArchiver) archive(ctx context.Context, p *v1alpha1.Promotion) (archiveStep, error) {
	has, err := r.Archive.Has(p.Namespace, p.Spec.Environment, p.Name, p.UID)
	if err != nil {
		return 0, err
	}
	if !has {
		sealed, err := r.sealed(ctx, p)
		if err != nil || !sealed {
			return archiveWaitsForSeal, err
		}
		approvals, packets, err := r.recordsOf(ctx, r.APIReader, p)
		if err != nil {
			return 0, err
		}
		record := archive.NewRecord(p, approvals, packets)
		entry, err := r.Archive.Put(&record)
		if err != nil {
			return 0, err
		}
		logf.FromContext(ctx).Info("Archived promotion", "promotion", p.Name, "uid", p.UID, "record", entry.Record)
	}
	// The promotion goes first: while it exists, the evidence reconciler
	// would make a deleted packet of it again.
	if err := r.Delete(ctx, p, client.Preconditions{UID: &p.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground)); ignoreGone(err) != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	approvals, packets, err := r.recordsOf(ctx, r.Client, p)
	if err != nil {
		return 0, err
	}
	return archiveDone, r.deleteRecords(ctx, approvals, packets)
}

// sealed says whether every evidence packet the promotion names is sealed
// (or failed for good), read past the cache.
func (r *PromotionArchiver) sealed(ctx context.Context, p *v1alpha1.Promotion) (bool, error) {
	var names []string
	if d := p.Status.Decision; d != nil && d.StatementDigest != "" && p.Status.EvidencePacket != "" {
		names = append(names, p.Status.EvidencePacket)
	}
	if name := rolloutPacketName(p); name != "" {
		names = append(names, name)
	}
	for _, name := range names {
		packet := &v1alpha1.EvidencePacket{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: name}, packet)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !packet.Status.Phase.IsTerminal() {
			return false, nil
		}
	}
	return true, nil
}

// recordsOf lists the approvals and evidence packets (read with c) of the
// promotion itself, not of another that had its name before.
func (r *PromotionArchiver) recordsOf(ctx context.Context, c client.Reader, p *v1alpha1.Promotion) ([]v1alpha1.Approval, []v1alpha1.EvidencePacket, error) {
	// Approvals come from the cache's index: the API server cannot select
	// them by spec.promotion, and listing a namespace's every Approval for
	// each promotion archived would cost in proportion to all of them. One
	// made after the promotion finished changes nothing it decided.
	var approvals v1alpha1.ApprovalList
	if err := r.List(ctx, &approvals, client.InNamespace(p.Namespace), client.MatchingFields{indexPromotion: p.Name}); err != nil {
		return nil, nil, err
	}
	var packets v1alpha1.EvidencePacketList
	if err := c.List(ctx, &packets, client.InNamespace(p.Namespace), client.MatchingLabels{v1alpha1.LabelPromotion: v1alpha1.LabelValue(p.Name)}); err != nil {
		return nil, nil, err
	}
	ofPromotion := func(name string, uid types.UID, created metav1.Time) bool {
		if name != p.Name {
			return false
		}
		if uid != "" {
			return uid == p.UID
		}
		return !created.Before(&p.CreationTimestamp) // from before records named the UID
	}
	own := slices.DeleteFunc(approvals.Items, func(a v1alpha1.Approval) bool {
		return !ofPromotion(a.Spec.Promotion, a.Spec.PromotionUID, a.CreationTimestamp)
	})
	sealed := slices.DeleteFunc(packets.Items, func(e v1alpha1.EvidencePacket) bool {
		return !ofPromotion(e.Spec.Promotion, e.Spec.PromotionUID, e.CreationTimestamp)
	})
	return own, sealed, nil
}

// deleteRecords deletes approvals and packets, each only as the object
// that was read (a new one under its name stays).
func (r *PromotionArchiver) deleteRecords(ctx context.Context, approvals []v1alpha1.Approval, packets []v1alpha1.EvidencePacket) error {
	var errs []error
	for i := range approvals {
		a := &approvals[i]
		if err := r.Delete(ctx, a, client.Preconditions{UID: &a.UID}); ignoreGone(err) != nil {
			errs = append(errs, fmt.Errorf("delete Approval %s: %w", a.Name, err))
		}
	}
	for i := range packets {
		e := &packets[i]
		if err := r.Delete(ctx, e, client.Preconditions{UID: &e.UID}); ignoreGone(err) != nil {
			errs = append(errs, fmt.Errorf("delete EvidencePacket %s: %w", e.Name, err))
		}
	}
	return errors.Join(errs...)
}

// deleteLeftovers deletes the packets and approvals, in the namespace, of
// promotions that are archived and no longer in the API: what a crash
// between deleting a promotion and deleting its records left behind.
// Records of promotions deleted by other means stay, as they always did.
func (r *PromotionArchiver) deleteLeftovers(ctx context.Context, namespace string) error {
	// The lists come straight from the cache: they are only read.
	var promos v1alpha1.PromotionList
	if err := r.List(ctx, &promos, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	live := map[types.UID]bool{}
	for _, p := range promos.Items {
		live[p.UID] = true
	}
	archived := map[string]map[types.UID]bool{} // by promotion name
	isArchived := func(name string, uid types.UID) (bool, error) {
		if uid == "" || live[uid] {
			return false, nil
		}
		if _, read := archived[name]; !read {
			entries, err := r.Archive.Promotion(namespace, name)
			if err != nil {
				return false, err
			}
			archived[name] = map[types.UID]bool{}
			for _, e := range entries {
				archived[name][e.UID] = true
			}
		}
		return archived[name][uid], nil
	}
	var packets v1alpha1.EvidencePacketList
	if err := r.List(ctx, &packets, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	var approvals v1alpha1.ApprovalList
	if err := r.List(ctx, &approvals, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	var leftPackets []v1alpha1.EvidencePacket
	var leftApprovals []v1alpha1.Approval
	for _, e := range packets.Items {
		if ok, err := isArchived(e.Spec.Promotion, e.Spec.PromotionUID); err != nil {
			return err
		} else if ok {
			leftPackets = append(leftPackets, e)
		}
	}
	for _, a := range approvals.Items {
		if ok, err := isArchived(a.Spec.Promotion, a.Spec.PromotionUID); err != nil {
			return err
		} else if ok {
			leftApprovals = append(leftApprovals, a)
		}
	}
	return r.deleteRecords(ctx, leftApprovals, leftPackets)
}

// ignoreGone ignores an object already deleted, or replaced by another of
// its name (the UID precondition failed).
func ignoreGone(err error) error {
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}
