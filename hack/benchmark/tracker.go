package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// promotionTracker notes, per promotion, when its create call returned,
// when a watch event first showed its decision allow and when one first
// showed its DeployTask, all on the benchmark's clock. A promotion is done
// once it has both, or failed once it ends any other way.
type promotionTracker struct {
	index map[string]int // promotion name → number; read-only

	mu       sync.Mutex
	created  []time.Time
	decided  []time.Time
	tasked   []time.Time
	failures map[int]string
	finished []bool
	nCreated int
	nDecided int
	nTasked  int
	nDone    int
	nEnded   int // done or failed
	last     time.Time
	progress []ProgressSample
	allEnded chan struct{}

	restarts atomic.Int64
}

// newPromotionTracker follows the n promotions numbered from first, known
// to it as 0 to n-1.
func newPromotionTracker(first, n int) *promotionTracker {
	t := &promotionTracker{
		index:    make(map[string]int, n),
		created:  make([]time.Time, n),
		decided:  make([]time.Time, n),
		tasked:   make([]time.Time, n),
		finished: make([]bool, n),
		failures: map[int]string{},
		allEnded: make(chan struct{}),
	}
	for i := range n {
		t.index[promotionName(first+i)] = i
	}
	return t
}

// noteCreated is createObjects' hook: promotion i's create call returned at at.
func (t *promotionTracker) noteCreated(i int, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.created[i] = at
	t.nCreated++
}

func (t *promotionTracker) promotionSeen(obj client.Object, at time.Time) {
	p, ok := obj.(*v1alpha1.Promotion)
	if !ok {
		return
	}
	i, ok := t.index[p.Name]
	if !ok {
		return
	}
	d := p.Status.Decision
	switch {
	case d != nil && d.Result == v1alpha1.DecisionAllow:
		t.mark(t.decided, &t.nDecided, i, at)
	case d != nil && d.Result == v1alpha1.DecisionDeny, p.Status.Phase.IsTerminal():
		message := string(p.Status.Phase)
		if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady); c != nil {
			message += ": " + c.Message
		}
		t.fail(i, at, fmt.Sprintf("%s: %s", p.Name, message))
	}
}

func (t *promotionTracker) deployTaskSeen(obj client.Object, at time.Time) {
	if i, ok := t.index[obj.(*v1alpha1.DeployTask).Spec.Promotion]; ok {
		t.mark(t.tasked, &t.nTasked, i, at)
	}
}

// mark notes the first time of promotion i in times, and whether that
// makes it done.
func (t *promotionTracker) mark(times []time.Time, count *int, i int, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !times[i].IsZero() {
		return
	}
	times[i] = at
	*count++
	if !t.decided[i].IsZero() && !t.tasked[i].IsZero() && !t.finished[i] {
		t.nDone++
		t.end(i, at)
	}
}

func (t *promotionTracker) fail(i int, at time.Time, message string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished[i] {
		return
	}
	t.failures[i] = message
	t.end(i, at)
}

// end is called with mu held.
func (t *promotionTracker) end(i int, at time.Time) {
	t.finished[i] = true
	t.last = at
	t.nEnded++
	if t.nEnded == len(t.finished) {
		close(t.allEnded)
	}
}

// wait returns once every promotion is done or failed, or ctx ends.
func (t *promotionTracker) wait(ctx context.Context) error {
	select {
	case <-t.allEnded:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (t *promotionTracker) counts() (created, decided, withTask, done int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nCreated, t.nDecided, t.nTasked, t.nDone
}

// sample records and returns where the promotions stand after elapsed.
func (t *promotionTracker) sample(elapsed time.Duration) ProgressSample {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := ProgressSample{Seconds: elapsed.Round(time.Second).Seconds(), Created: t.nCreated, Decided: t.nDecided, WithTask: t.nTasked}
	t.progress = append(t.progress, s)
	return s
}

func (t *promotionTracker) progressSamples() []ProgressSample {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.progress)
}

// failureList counts the failed promotions and gives up to max of their
// messages, in promotion order.
func (t *promotionTracker) failureList(max int) (int, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]int, 0, len(t.failures))
	for i := range t.failures {
		keys = append(keys, i)
	}
	slices.Sort(keys)
	var out []string
	for _, i := range keys[:min(len(keys), max)] {
		out = append(out, t.failures[i])
	}
	return len(keys), out
}

// latency summarises times (decided or tasked) against the create calls;
// early counts events seen before their create call returned.
func (t *promotionTracker) latency(times []time.Time) (l Latency, early int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var seen []time.Duration
	for i, at := range times {
		if at.IsZero() || t.created[i].IsZero() {
			continue
		}
		d := at.Sub(t.created[i])
		if d < 0 {
			early++
			d = 0
		}
		seen = append(seen, d)
	}
	slices.Sort(seen)
	return latencyOf(seen, len(times)), early
}

// follow watches the kind of list in the benchmark's namespace from
// resourceVersion rv and hands every object it sees to seen, with the time
// it arrived. A watch the server closes is resumed where it ended; one
// that can no longer be resumed is replaced by a list of the objects as
// they are now (their times are then late, and restarts counts it).
func (t *promotionTracker) follow(ctx context.Context, c client.WithWatch, list client.ObjectList, rv string, seen func(client.Object, time.Time)) error {
	for {
		w, err := c.Watch(ctx, list.DeepCopyObject().(client.ObjectList), client.InNamespace(namespace),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		rv, err = drain(w, rv, seen)
		w.Stop()
		if ctx.Err() != nil {
			return nil
		}
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			rv, err = relist(ctx, c, list, seen)
		}
		if err != nil {
			return err
		}
		t.restarts.Add(1)
	}
}

// drain reads w until it closes, returning the last resourceVersion seen.
func drain(w watch.Interface, rv string, seen func(client.Object, time.Time)) (string, error) {
	for ev := range w.ResultChan() {
		at := time.Now()
		if ev.Type == watch.Error {
			return rv, apierrors.FromObject(ev.Object)
		}
		obj, ok := ev.Object.(client.Object)
		if !ok {
			continue
		}
		rv = obj.GetResourceVersion()
		if ev.Type == watch.Added || ev.Type == watch.Modified {
			seen(obj, at)
		}
	}
	return rv, nil
}

// relist hands every object of the kind to seen and returns the list's
// resourceVersion.
func relist(ctx context.Context, c client.Reader, list client.ObjectList, seen func(client.Object, time.Time)) (string, error) {
	cont := ""
	for {
		page := list.DeepCopyObject().(client.ObjectList)
		if err := c.List(ctx, page, client.InNamespace(namespace), client.Limit(listPageSize), client.Continue(cont)); err != nil {
			return "", err
		}
		at := time.Now()
		if err := meta.EachListItem(page, func(o runtime.Object) error {
			if obj, ok := o.(client.Object); ok {
				seen(obj, at)
			}
			return nil
		}); err != nil {
			return "", err
		}
		if cont = page.GetContinue(); cont == "" {
			return page.GetResourceVersion(), nil
		}
	}
}
