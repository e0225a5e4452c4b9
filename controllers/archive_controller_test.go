package controllers

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/scheme"
)

// archiving is an environment prod with finished promotions p1, p2, p3 (in
// that order, each finished an hour after the one before, the last an hour
// before now), each with a sealed decision packet, a sealed deployment
// packet and an approval.
type archiving struct {
	t       *testing.T
	c       client.Client
	archive *archive.Archive
	now     time.Time
}

const archivingNamespace = "shop"

func newArchiving(t *testing.T, keep int32, minAge time.Duration, objs ...client.Object) *archiving {
	t.Helper()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	env := &v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Namespace: archivingNamespace, Name: "prod"},
		Spec: v1alpha1.EnvironmentSpec{PromotionRetention: &v1alpha1.PromotionRetention{Keep: &keep, MinAge: &metav1.Duration{Duration: minAge}}}}
	objs = append(objs, env)
	for i, name := range []string{"p1", "p2", "p3"} {
		objs = append(objs, finishedPromotion(name, fmt.Sprint(10+i), now.Add(time.Duration(i-3)*time.Hour))...)
	}
	a := emptyArchive(t)
	b := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&v1alpha1.Promotion{}, &v1alpha1.EvidencePacket{}).WithObjects(objs...)
	return &archiving{t: t, c: withFieldIndexes(b).Build(), archive: a, now: now}
}

// emptyArchive is an archive of no promotions over a blob store of its
// own, in the test's temporary directory.
func emptyArchive(t *testing.T) *archive.Archive {
	t.Helper()
	store, err := evidence.NewFileStore(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(filepath.Join(t.TempDir(), archive.DirName), store)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// finishedPromotion is a promotion into prod that succeeded at finished,
// with its sealed packets and an approval.
func finishedPromotion(name, revision string, finished time.Time) []client.Object {
	uid := types.UID("uid-" + name)
	at := metav1.NewTime(finished)
	p := &v1alpha1.Promotion{
		ObjectMeta: metav1.ObjectMeta{Namespace: archivingNamespace, Name: name, UID: uid, CreationTimestamp: metav1.NewTime(finished.Add(-time.Minute))},
		Spec:       v1alpha1.PromotionSpec{Release: "shop-" + name, Environment: "prod"},
		Status: v1alpha1.PromotionStatus{Phase: v1alpha1.PromotionSucceeded, CreationRevision: revision, FinishedAt: &at,
			Decision:       &v1alpha1.Decision{Result: v1alpha1.DecisionAllow, StatementDigest: evidence.DigestOf([]byte(name))},
			Targets:        []v1alpha1.TargetProgress{{Target: "web-1", Phase: v1alpha1.DeployTaskSucceeded}},
			EvidencePacket: packetName(&v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Name: name, UID: uid}}, "decision")},
	}
	packet := func(record string, kind v1alpha1.EvidenceType) *v1alpha1.EvidencePacket {
		return &v1alpha1.EvidencePacket{
			ObjectMeta: metav1.ObjectMeta{Namespace: archivingNamespace, Name: packetName(p, record), UID: types.UID("uid-" + packetName(p, record)),
				Labels: map[string]string{v1alpha1.LabelPromotion: v1alpha1.LabelValue(name)}},
			Spec:   v1alpha1.EvidencePacketSpec{Type: kind, Promotion: name, PromotionUID: uid},
			Status: v1alpha1.EvidencePacketStatus{Phase: v1alpha1.EvidenceSealed, LogIndex: revision},
		}
	}
	approval := &v1alpha1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: archivingNamespace, Name: name + "-ok", UID: types.UID("uid-" + name + "-ok")},
		Spec: v1alpha1.ApprovalSpec{Promotion: name, PromotionUID: uid, Decision: v1alpha1.ApprovalApprove}}
	return []client.Object{p, packet("decision", v1alpha1.EvidenceReleaseDecision), packet("deployment", v1alpha1.EvidenceDeployment), approval}
}

func (a *archiving) reconcile() ctrl.Result {
	a.t.Helper()
	r := &PromotionArchiver{Client: a.c, APIReader: a.c, Archive: a.archive, Now: func() time.Time { return a.now }}
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: archivingNamespace, Name: "prod"}})
	if err != nil {
		a.t.Fatal(err)
	}
	return res
}

// inAPI lists the promotions, approvals and packets left in the API, each
// by the name of its promotion.
func (a *archiving) inAPI() (promos, approvals, packets []string) {
	a.t.Helper()
	ctx := context.Background()
	var pl v1alpha1.PromotionList
	var al v1alpha1.ApprovalList
	var el v1alpha1.EvidencePacketList
	for _, l := range []client.ObjectList{&pl, &al, &el} {
		if err := a.c.List(ctx, l); err != nil {
			a.t.Fatal(err)
		}
	}
	for _, p := range pl.Items {
		promos = append(promos, p.Name)
	}
	for _, x := range al.Items {
		approvals = append(approvals, x.Spec.Promotion)
	}
	for _, e := range el.Items {
		packets = append(packets, e.Spec.Promotion)
	}
	slices.Sort(promos)
	slices.Sort(approvals)
	slices.Sort(packets)
	return promos, slices.Compact(approvals), slices.Compact(packets)
}

func (a *archiving) archived() []string {
	a.t.Helper()
	entries, err := a.archive.Environment(archivingNamespace, "prod")
	if err != nil {
		a.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	return names
}

func (a *archiving) expect(archived, left []string) {
	a.t.Helper()
	if got := a.archived(); !slices.Equal(got, archived) {
		a.t.Errorf("archived %v, want %v", got, archived)
	}
	promos, approvals, packets := a.inAPI()
	for what, got := range map[string][]string{"promotions": promos, "approvals of": approvals, "packets of": packets} {
		if !slices.Equal(got, left) {
			a.t.Errorf("%s %v left in the API, want %v", what, got, left)
		}
	}
}

func TestTheNewestSuccessStaysWhateverTheRetention(t *testing.T) {
	a := newArchiving(t, 0, 0)
	ctx := context.Background()
	p3 := &v1alpha1.Promotion{}
	if err := a.c.Get(ctx, types.NamespacedName{Namespace: archivingNamespace, Name: "p3"}, p3); err != nil {
		t.Fatal(err)
	}
	p3.Status.Phase = v1alpha1.PromotionFailed
	if err := a.c.Status().Update(ctx, p3); err != nil {
		t.Fatal(err)
	}
	a.reconcile()
	// p2 succeeded last: it is what prod runs.
	a.expect([]string{"p1", "p3"}, []string{"p2"})
}

func TestPromotionsWithinKeepStay(t *testing.T) {
	a := newArchiving(t, 3, 0)
	if res := a.reconcile(); res.RequeueAfter != 0 {
		t.Errorf("requeued after %s with nothing to archive ever by age", res.RequeueAfter)
	}
	a.expect(nil, []string{"p1", "p2", "p3"})
}

func TestPromotionsYoungerThanMinAgeStayUntilTheyAreOldEnough(t *testing.T) {
	a := newArchiving(t, 0, 150*time.Minute)
	res := a.reconcile()
	// p1 finished 3 h ago and goes; p2 (2 h ago) goes in 30 min.
	a.expect([]string{"p1"}, []string{"p2", "p3"})
	if res.RequeueAfter != 30*time.Minute {
		t.Errorf("requeued after %s, want 30m, when p2 is old enough", res.RequeueAfter)
	}
	a.now = a.now.Add(30 * time.Minute)
	a.reconcile()
	a.expect([]string{"p1", "p2"}, []string{"p3"})
}

func TestPromotionsBeyondKeepAreArchivedWithTheirEvidenceAndDeleted(t *testing.T) {
	a := newArchiving(t, 1, 0)
	a.reconcile()
	a.expect([]string{"p1", "p2"}, []string{"p3"})
	record, entry, err := a.archive.Latest(archivingNamespace, "p2")
	if err != nil {
		t.Fatal(err)
	}
	if entry.UID != "uid-p2" || entry.Phase != v1alpha1.PromotionSucceeded || entry.Release != "shop-p2" || entry.CreationRevision != "11" {
		t.Errorf("index entry %+v", entry)
	}
	if len(record.EvidencePackets) != 2 || record.EvidencePackets[0].Status.Phase != v1alpha1.EvidenceSealed || len(record.Approvals) != 1 ||
		record.Promotion.Status.Decision == nil || len(record.Promotion.Status.Targets) != 1 {
		t.Errorf("record %+v lacks the packets, approvals, decision or targets", record)
	}
	// A second pass finds nothing more to do.
	a.reconcile()
	a.expect([]string{"p1", "p2"}, []string{"p3"})
}

func TestAPromotionArchivedBeforeACrashIsOnlyDeleted(t *testing.T) {
	a := newArchiving(t, 2, 0)
	p1 := &v1alpha1.Promotion{}
	if err := a.c.Get(context.Background(), types.NamespacedName{Namespace: archivingNamespace, Name: "p1"}, p1); err != nil {
		t.Fatal(err)
	}
	// Archived by a pass that crashed before it deleted anything; the
	// record written then stands.
	earlier := archive.NewRecord(p1, nil, nil)
	first, err := a.archive.Put(&earlier)
	if err != nil {
		t.Fatal(err)
	}
	a.reconcile()
	a.expect([]string{"p1"}, []string{"p2", "p3"})
	if _, entry, err := a.archive.Latest(archivingNamespace, "p1"); err != nil || entry.Record != first.Record {
		t.Errorf("index entry %+v, %v; want the record archived before the crash, %s", entry, err, first.Record)
	}
}

func TestAPromotionWaitsForItsEvidenceToBeSealed(t *testing.T) {
	a := newArchiving(t, 2, 0)
	ctx := context.Background()
	packet := &v1alpha1.EvidencePacket{}
	key := types.NamespacedName{Namespace: archivingNamespace, Name: packetName(&v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Name: "p1", UID: "uid-p1"}}, "deployment")}
	if err := a.c.Get(ctx, key, packet); err != nil {
		t.Fatal(err)
	}
	packet.Status.Phase = v1alpha1.EvidencePending
	if err := a.c.Status().Update(ctx, packet); err != nil {
		t.Fatal(err)
	}
	a.reconcile()
	a.expect(nil, []string{"p1", "p2", "p3"})

	packet.Status.Phase = v1alpha1.EvidenceSealed
	if err := a.c.Status().Update(ctx, packet); err != nil {
		t.Fatal(err)
	}
	a.reconcile()
	a.expect([]string{"p1"}, []string{"p2", "p3"})
}

func TestAPromotionWaitsForItsRolloutPacketToBeCreated(t *testing.T) {
	a := newArchiving(t, 2, 0)
	key := types.NamespacedName{Namespace: archivingNamespace, Name: packetName(&v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Name: "p1", UID: "uid-p1"}}, "deployment")}
	if err := a.c.Delete(context.Background(), &v1alpha1.EvidencePacket{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}); err != nil {
		t.Fatal(err)
	}
	a.reconcile()
	if got := a.archived(); len(got) != 0 {
		t.Errorf("archived %v before the rollout record was created", got)
	}
}

func TestRecordsLeftByACrashAfterThePromotionWasDeletedAreDeleted(t *testing.T) {
	a := newArchiving(t, 1, 0)
	ctx := context.Background()
	p1 := &v1alpha1.Promotion{}
	if err := a.c.Get(ctx, types.NamespacedName{Namespace: archivingNamespace, Name: "p1"}, p1); err != nil {
		t.Fatal(err)
	}
	record := archive.NewRecord(p1, nil, nil)
	if _, err := a.archive.Put(&record); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Delete(ctx, p1); err != nil {
		t.Fatal(err)
	}
	// A promotion deleted by hand, not archived: its records stay, as
	// records of deleted promotions always did.
	p2 := &v1alpha1.Promotion{}
	if err := a.c.Get(ctx, types.NamespacedName{Namespace: archivingNamespace, Name: "p2"}, p2); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Delete(ctx, p2); err != nil {
		t.Fatal(err)
	}
	a.reconcile()
	if got := a.archived(); !slices.Equal(got, []string{"p1"}) {
		t.Errorf("archived %v, want [p1]", got)
	}
	promos, approvals, packets := a.inAPI()
	if !slices.Equal(promos, []string{"p3"}) || !slices.Equal(approvals, []string{"p2", "p3"}) || !slices.Equal(packets, []string{"p2", "p3"}) {
		t.Errorf("left in the API: promotions %v, approvals of %v, packets of %v; want p3, and the records of p2 and p3", promos, approvals, packets)
	}
}

func TestANewPromotionUnderAnArchivedOnesNameIsNotDeleted(t *testing.T) {
	a := newArchiving(t, 3, 0)
	ctx := context.Background()
	p1 := &v1alpha1.Promotion{}
	if err := a.c.Get(ctx, types.NamespacedName{Namespace: archivingNamespace, Name: "p1"}, p1); err != nil {
		t.Fatal(err)
	}
	// An older p1, archived and deleted long ago, had another UID.
	older := p1.DeepCopy()
	older.UID, older.Status.CreationRevision = "uid-older-p1", "5"
	record := archive.NewRecord(older, nil, nil)
	if _, err := a.archive.Put(&record); err != nil {
		t.Fatal(err)
	}
	a.reconcile()
	a.expect([]string{"p1"}, []string{"p1", "p2", "p3"})
	if err := a.c.Get(ctx, client.ObjectKeyFromObject(p1), p1); apierrors.IsNotFound(err) || p1.UID != "uid-p1" {
		t.Errorf("the live p1 was deleted: %v", err)
	}
}

func TestASealedPacketWakesItsPromotionsEnvironmentOrAllWhenItsPromotionIsGone(t *testing.T) {
	a := newArchiving(t, 3, 0, &v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Namespace: archivingNamespace, Name: "stage"}})
	ctx := context.Background()
	r := &PromotionArchiver{Client: a.c}
	packet := func(promotion string, uid types.UID) *v1alpha1.EvidencePacket {
		return &v1alpha1.EvidencePacket{ObjectMeta: metav1.ObjectMeta{Namespace: archivingNamespace, Name: "x"},
			Spec: v1alpha1.EvidencePacketSpec{Promotion: promotion, PromotionUID: uid}}
	}
	envs := func(reqs []reconcile.Request) []string {
		var names []string
		for _, req := range reqs {
			names = append(names, req.Name)
		}
		slices.Sort(names)
		return names
	}
	r.swept.Store(archivingNamespace, struct{}{})
	if got := envs(r.environmentOfPacket(ctx, packet("p1", "uid-p1"))); !slices.Equal(got, []string{"prod"}) {
		t.Errorf("a packet of p1 wakes %v, want [prod]", got)
	}
	if _, swept := r.swept.Load(archivingNamespace); !swept {
		t.Error("a packet of a live promotion asked for another sweep of the namespace")
	}
	if got := envs(r.environmentOfPacket(ctx, packet("gone", "uid-gone"))); !slices.Equal(got, []string{"prod", "stage"}) {
		t.Errorf("a packet of a promotion gone from the API wakes %v, want every environment of the namespace", got)
	}
	if _, swept := r.swept.Load(archivingNamespace); swept {
		t.Error("a packet of a promotion gone from the API did not ask for another sweep of the namespace")
	}
}
