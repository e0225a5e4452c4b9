package controlplane

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stella-ops/stella/internal/agentauth"
	"github.com/stella-ops/stella/internal/pki"
)

// TestEventsAreServedFromEtcdNotTheWatchCache tells a resource in the watch
// cache from one outside it by what a watch from a resourceVersion older
// than the API server gets: the cache holds only the changes since it
// filled, so it refuses the watch as too old (410 Gone), while etcd still
// has the history and replays it. ConfigMaps, cached, show the refusal;
// Events, through both of their APIs, must be replayed.
func TestEventsAreServedFromEtcdNotTheWatchCache(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	dir := t.TempDir()
	etcd, etcdURL, err := startEtcd(ctx, filepath.Join(dir, "etcd"))
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	// A write before the API server starts, so that its caches fill at a
	// later revision than 1, which etcd still holds.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "/stella-test/before-the-api-server", "1"); err != nil {
		t.Fatal(err)
	}
	certs := pki.Dir{Path: filepath.Join(dir, "pki")}
	if err := certs.Ensure(servingHosts("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	listen, err := loopbackURL()
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Listen: listen.Host, EtcdPrefix: "/registry", WatchCache: true, AgentCertTTL: minCertTTL}
	apiCtx, stopAPI := context.WithCancel(ctx)
	api, err := startAPIServer(apiCtx, o, []string{etcdURL}, certs, agentauth.NewAgents(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopAPI()
		<-api.done
	}()
	cs, err := kubernetes.NewForConfig(api.loopback)
	if err != nil {
		t.Fatal(err)
	}

	const ns = "default"
	involved := corev1.ObjectReference{Kind: "ConfigMap", Namespace: ns, Name: "shop"}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "shop.core"}, InvolvedObject: involved, Reason: "Created", Type: corev1.EventTypeNormal,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.EventsV1().Events(ns).Create(ctx, &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "shop.events"}, Regarding: involved, Reason: "Created", Type: corev1.EventTypeNormal,
		Action: "Create", ReportingController: "stella.test/watch-cache", ReportingInstance: "test", EventTime: metav1.NowMicro(),
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	fromTheStart := metav1.ListOptions{ResourceVersion: "1"}
	w, err := cs.CoreV1().ConfigMaps(ns).Watch(ctx, fromTheStart)
	if err != nil {
		t.Fatal(err)
	}
	// The server answers a watch it cannot serve with an error event.
	first := <-w.ResultChan()
	w.Stop()
	if err := apierrors.FromObject(first.Object); first.Type != watch.Error || !apierrors.IsResourceExpired(err) {
		t.Fatalf("watching ConfigMaps from resourceVersion 1: first a %s event (%v); want an error, 410 Gone, from the watch cache, which does not reach that far back",
			first.Type, err)
	}
	for _, tc := range []struct {
		api   string
		watch func(context.Context, metav1.ListOptions) (watch.Interface, error)
		name  string
	}{
		{"core/v1", cs.CoreV1().Events(ns).Watch, "shop.core"},
		{"events.k8s.io/v1", cs.EventsV1().Events(ns).Watch, "shop.events"},
	} {
		t.Run(tc.api, func(t *testing.T) {
			w, err := tc.watch(ctx, fromTheStart)
			if err != nil {
				t.Fatalf("watching Events from resourceVersion 1: %v; want etcd's history, as without a watch cache", err)
			}
			defer w.Stop()
			// The replay ends with the Events created above; a bound
			// only so that a broken server fails the test rather than
			// hangs it.
			timeout := time.After(time.Minute)
			for {
				select {
				case e, ok := <-w.ResultChan():
					if !ok {
						t.Fatalf("the watch ended before %s came", tc.name)
					}
					if e.Type == watch.Error {
						t.Fatalf("the watch failed: %v", apierrors.FromObject(e.Object))
					}
					if m, err := meta.Accessor(e.Object); err == nil && e.Type == watch.Added && m.GetName() == tc.name {
						return
					}
				case <-timeout:
					t.Fatalf("no %s in the replay of the Events", tc.name)
				}
			}
		})
	}
}
