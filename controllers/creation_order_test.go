package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// second is a creation or finish time in whole seconds, as the API stores it.
func second(s int) metav1.Time { return metav1.NewTime(time.Date(2026, 11, 28, 0, 0, s, 0, time.UTC)) }

func TestQueueOrder(t *testing.T) {
	// promo is a promotion created at the given second; a revision of ""
	// means it was written before revisions were recorded.
	promo := func(name string, created int, phase v1alpha1.PromotionPhase, revision string) *v1alpha1.Promotion {
		return &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: second(created), ResourceVersion: "900"},
			Status: v1alpha1.PromotionStatus{Phase: phase, CreationRevision: revision}}
	}
	unwritten := func(name, resourceVersion string) *v1alpha1.Promotion {
		return &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: second(1), ResourceVersion: resourceVersion}}
	}
	pending := v1alpha1.PromotionPending
	for _, tc := range []struct {
		name  string
		queue []*v1alpha1.Promotion
		want  string
	}{
		{"by revision within a second, whatever the names", []*v1alpha1.Promotion{promo("a", 1, pending, "12"), promo("z", 1, pending, "11")}, "z,a"},
		{"by revision, not by the clock of the server that created it", []*v1alpha1.Promotion{promo("b", 3, pending, "20"), promo("a", 5, pending, "19")}, "a,b"},
		{"revisions compare as integers, not as text", []*v1alpha1.Promotion{promo("a", 1, pending, "100"), promo("b", 1, pending, "99")}, "b,a"},
		{"one not written yet by its resource version", []*v1alpha1.Promotion{promo("a", 1, pending, "12"), unwritten("z", "11"), unwritten("m", "13")}, "z,a,m"},
		{"one from before revisions were recorded goes first", []*v1alpha1.Promotion{promo("new", 0, pending, "5"), promo("old", 9, pending, "")}, "old,new"},
		{"those from before by time, then by name", []*v1alpha1.Promotion{promo("b", 1, pending, ""), promo("a", 1, pending, ""), promo("c", 0, pending, "")}, "c,a,b"},
		{"a revision that is not an integer counts as none", []*v1alpha1.Promotion{promo("a", 1, pending, "7"), promo("b", 1, pending, "x7")}, "b,a"},
		{"a started one first, whatever its revision", []*v1alpha1.Promotion{promo("a", 1, pending, "5"), promo("z", 1, v1alpha1.PromotionAwaitingApproval, "6")}, "z,a"},
		{"a started one before an older one", []*v1alpha1.Promotion{promo("old", 0, pending, ""), promo("new", 5, v1alpha1.PromotionDeploying, "9")}, "new,old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reversed := slices.Clone(tc.queue)
			slices.Reverse(reversed)
			for _, queue := range [][]*v1alpha1.Promotion{slices.Clone(tc.queue), reversed} {
				slices.SortFunc(queue, queueOrder)
				var got []string
				for _, p := range queue {
					got = append(got, p.Name)
				}
				if strings.Join(got, ",") != tc.want {
					t.Errorf("queue %v, want %s", got, tc.want)
				}
			}
		})
	}
}

func TestHistoryNewestFirst(t *testing.T) {
	entry := func(promotion string, finished int, revision string) v1alpha1.EnvironmentHistoryEntry {
		at := second(finished)
		return v1alpha1.EnvironmentHistoryEntry{Release: promotion, Promotion: promotion, Phase: v1alpha1.PromotionSucceeded, FinishedAt: &at, CreationRevision: revision}
	}
	for _, tc := range []struct {
		name    string
		history []v1alpha1.EnvironmentHistoryEntry
		want    string
	}{
		{"by revision within a second, whatever the names", []v1alpha1.EnvironmentHistoryEntry{entry("b", 1, "11"), entry("a", 1, "12")}, "a,b"},
		{"by revision, not by the clock of the server that ended it", []v1alpha1.EnvironmentHistoryEntry{entry("a", 5, "11"), entry("b", 3, "12")}, "b,a"},
		{"those from before revisions were recorded last, newest first", []v1alpha1.EnvironmentHistoryEntry{entry("old", 2, ""), entry("older", 1, ""), entry("new", 0, "3")}, "new,old,older"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := &v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Name: "prod"}, Status: v1alpha1.EnvironmentStatus{History: tc.history}}
			computeEnvironmentStatus(env, nil, nil, nil)
			var got []string
			for _, h := range env.Status.History {
				got = append(got, h.Promotion)
			}
			if strings.Join(got, ",") != tc.want {
				t.Errorf("history %v, want %s", got, tc.want)
			}
			if env.Status.CurrentRelease != got[0] {
				t.Errorf("current release %s, want the newest, %s", env.Status.CurrentRelease, got[0])
			}
		})
	}
}

// The history entry of a promotion keeps its revision, so that the order
// outlives the promotion.
func TestHistoryKeepsThePromotionsRevision(t *testing.T) {
	finished := second(1)
	env := &v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Name: "prod"}}
	promos := []v1alpha1.Promotion{{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1alpha1.PromotionSpec{Release: "r", Environment: "prod"},
		Status: v1alpha1.PromotionStatus{Phase: v1alpha1.PromotionSucceeded, FinishedAt: &finished, CreationRevision: "42"}}}
	computeEnvironmentStatus(env, promos, nil, nil)
	if len(env.Status.History) != 1 || env.Status.History[0].CreationRevision != "42" {
		t.Errorf("history %+v, want p with revision 42", env.Status.History)
	}
}

func TestNewestRelease(t *testing.T) {
	rel := func(name string, created int, resourceVersion, revision string, observed int64) *v1alpha1.Release {
		return &v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: second(created), ResourceVersion: resourceVersion},
			Status: v1alpha1.ReleaseStatus{CreationRevision: revision, ObservedGeneration: observed}}
	}
	for _, tc := range []struct {
		name         string
		older, newer *v1alpha1.Release
	}{
		{"by revision within a second, whatever the names", rel("shop-9", 1, "30", "20", 1), rel("shop-10", 1, "31", "21", 1)},
		{"one not reconciled yet by its resource version", rel("shop-2", 1, "30", "20", 1), rel("shop-1", 1, "25", "", 0)},
		{"one from before revisions were recorded is older", rel("shop-2", 5, "30", "", 1), rel("shop-1", 1, "31", "4", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c := releaseOrder(tc.newer).compare(releaseOrder(tc.older)); c <= 0 {
				t.Errorf("%s is not newer than %s", tc.newer.Name, tc.older.Name)
			}
		})
	}
}

// The release reconciler records the revision on its first write only.
func TestReleaseRecordsItsCreationRevisionOnce(t *testing.T) {
	rel := &v1alpha1.Release{ObjectMeta: metav1.ObjectMeta{Name: "shop-1", ResourceVersion: "7", Generation: 1}}
	computeReleaseStatus(rel, nil, nil)
	if rel.Status.CreationRevision != "7" {
		t.Fatalf("creationRevision %q after the first reconcile, want 7", rel.Status.CreationRevision)
	}
	rel.ResourceVersion = "9"
	computeReleaseStatus(rel, nil, nil)
	if rel.Status.CreationRevision != "7" {
		t.Errorf("creationRevision %q after a later reconcile, want 7 still", rel.Status.CreationRevision)
	}
}

// Promotions created within one second, reconciled in any order (as after a
// restart, when the cache lists them by name), run in creation order.
func TestQueueRunsInCreationOrderWithinASecond(t *testing.T) {
	ctx := context.Background()
	// An environment allowed to be empty: the promotion that goes first
	// ends at once, Succeeded, and lets the next one go.
	ro := newRollout(t, "z-first", v1alpha1.EnvironmentSpec{AllowEmpty: true}, nil)
	for _, name := range []string{"m-second", "a-third"} {
		p := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: v1alpha1.PromotionSpec{Release: "shop-1", Environment: "dev"}}
		if err := ro.c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	reconcile := func(name string) *v1alpha1.Promotion {
		t.Helper()
		key := client.ObjectKey{Namespace: "ns", Name: name}
		if _, err := ro.r.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil {
			t.Fatalf("reconcile %s: %v", name, err)
		}
		p := &v1alpha1.Promotion{}
		if err := ro.c.Get(ctx, key, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	waitsFor := func(p *v1alpha1.Promotion, ahead string) {
		t.Helper()
		r := ready(p.Status.Conditions)
		if p.Status.Phase != v1alpha1.PromotionPending || r.Reason != v1alpha1.ReasonQueued || !strings.Contains(r.Message, "waiting for promotion "+ahead+" ") {
			t.Errorf("%s: phase %s, Ready %s %q; want it queued behind %s", p.Name, p.Status.Phase, r.Reason, r.Message, ahead)
		}
	}
	runs := func(p *v1alpha1.Promotion) {
		t.Helper()
		if p.Status.Phase != v1alpha1.PromotionSucceeded {
			t.Errorf("%s: phase %s, Ready %+v; want it run, Succeeded", p.Name, p.Status.Phase, ready(p.Status.Conditions))
		}
	}

	third, middle := reconcile("a-third"), reconcile("m-second")
	waitsFor(third, "z-first")
	waitsFor(middle, "z-first")
	for _, p := range []*v1alpha1.Promotion{third, middle} {
		if p.Status.CreationRevision == "" || p.Status.CreationRevision == p.ResourceVersion {
			t.Errorf("%s: creationRevision %q, want its revision before the first write (now %s)", p.Name, p.Status.CreationRevision, p.ResourceVersion)
		}
	}
	runs(reconcile("z-first"))
	waitsFor(reconcile("a-third"), "m-second")
	runs(reconcile("m-second"))
	runs(reconcile("a-third"))
}

// The queue wakes the promotions behind one that ended, or that moved back
// because it changed before its first reconcile; its own first write does
// not move it.
func TestQueueWakes(t *testing.T) {
	unwritten := func(resourceVersion string) *v1alpha1.Promotion {
		return &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Name: "p", ResourceVersion: resourceVersion}}
	}
	written := func(resourceVersion string, phase v1alpha1.PromotionPhase) *v1alpha1.Promotion {
		p := unwritten(resourceVersion)
		p.Status.Phase, p.Status.CreationRevision = phase, "5"
		return p
	}
	for _, tc := range []struct {
		name          string
		before, after *v1alpha1.Promotion
		wake          bool
	}{
		{"changed before its first reconcile", unwritten("5"), unwritten("8"), true},
		{"its first write", unwritten("5"), written("6", v1alpha1.PromotionPending), false},
		{"a later write", written("6", v1alpha1.PromotionPending), written("7", v1alpha1.PromotionAwaitingApproval), false},
		{"it ended", written("7", v1alpha1.PromotionAwaitingApproval), written("8", v1alpha1.PromotionRejected), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := leftQueue.Update(event.UpdateEvent{ObjectOld: tc.before, ObjectNew: tc.after}); got != tc.wake {
				t.Errorf("wake = %t, want %t", got, tc.wake)
			}
		})
	}
}
