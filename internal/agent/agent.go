// Package agent is stella-agent's work: it heartbeats for its Agent, runs
// the DeployTasks of the Targets it serves through their drivers, and
// reports what really runs on those Targets.
package agent

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/scheme"
)

// Options configure an agent.
type Options struct {
	// Name and Namespace of the Agent object the agent reports for.
	Name, Namespace string
	// Heartbeat is how often the Lease is renewed.
	Heartbeat time.Duration
	// ObserveEvery is how often each Target is observed when nothing
	// happens on it.
	ObserveEvery time.Duration
	// Drivers deploy, by target type.
	Drivers map[v1alpha1.TargetType]agents.Driver
	// Changes, when set, names Targets whose runtime reported a change, so
	// they are observed at once rather than at the next interval.
	Changes <-chan string
	// Parallel is how many DeployTasks run at once, each on its own Target.
	Parallel int
	// Alongside run next to the agent's work until it stops, such as the
	// renewal of its certificate.
	Alongside []manager.RunnableFunc
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, o Options, log logr.Logger) error {
	ctrl.SetLogger(log)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme.New(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{o.Namespace: {}},
			ByObject: map[client.Object]cache.ByObject{
				// Only what this agent serves: the server refuses an
				// agent's request for anything else.
				&v1alpha1.DeployTask{}: {Label: labels.SelectorFromSet(labels.Set{v1alpha1.LabelAgent: v1alpha1.LabelValue(o.Name)})},
				&v1alpha1.Target{}:     {Field: fields.OneTermEqualSelector(v1alpha1.FieldTargetAgent, o.Name)},
				&v1alpha1.Agent{}:      {Field: fields.OneTermEqualSelector("metadata.name", o.Name)},
			},
		},
		GracefulShutdownTimeout: ptr.To(30 * time.Second),
	})
	if err != nil {
		return fmt.Errorf("set up the agent: %w", err)
	}
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("read the hostname: %w", err)
	}
	a := &agent{
		Options: o, hostname: host, client: mgr.GetClient(), reader: mgr.GetAPIReader(),
		events: mgr.GetEventRecorderFor("stella-agent"), log: log.WithValues("agent", o.Namespace+"/"+o.Name),
		observeNow: make(chan event.TypedGenericEvent[*v1alpha1.Target], 64),
	}
	// The Agent must exist before anything runs: a missing one is a
	// set-up mistake to report at once.
	if err := a.beat(ctx); err != nil {
		return err
	}
	if err := mgr.Add(heartbeat{a}); err != nil {
		return err
	}
	if err := a.setUpTasks(mgr); err != nil {
		return err
	}
	if err := a.setUpObserver(mgr); err != nil {
		return err
	}
	for _, r := range o.Alongside {
		if err := mgr.Add(r); err != nil {
			return err
		}
	}
	if o.Changes != nil {
		if err := mgr.Add(manager.RunnableFunc(a.forwardChanges)); err != nil {
			return err
		}
	}
	a.log.Info("Agent is running", "heartbeat", o.Heartbeat, "observeEvery", o.ObserveEvery)
	return mgr.Start(ctx)
}

// ServerOptions configure the deploying the server does itself.
type ServerOptions struct {
	// ObserveEvery is how often each Target is observed.
	ObserveEvery time.Duration
	// Parallel is how many DeployTasks run at once, each on its own Target.
	Parallel int
}

// AddToServer makes the server's manager deploy to the Targets that name no
// agent through drivers, such as SSH's, and report what runs on them, as an
// agent does for its own; only the replica that leads runs them. The server
// brings the drivers (package serverdeploy), so that stella-agent links
// none of them.
func AddToServer(mgr ctrl.Manager, drivers map[v1alpha1.TargetType]agents.Driver, o ServerOptions, log logr.Logger) error {
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("read the hostname: %w", err)
	}
	a := &agent{
		Options:  Options{Drivers: drivers, ObserveEvery: o.ObserveEvery, Parallel: o.Parallel},
		hostname: host, client: mgr.GetClient(), reader: mgr.GetAPIReader(),
		events: mgr.GetEventRecorderFor("stella-deployer"), log: log.WithName("deployer"),
		observeNow: make(chan event.TypedGenericEvent[*v1alpha1.Target], 64),
	}
	if err := a.setUpTasks(mgr); err != nil {
		return err
	}
	return a.setUpObserver(mgr)
}

type agent struct {
	Options
	hostname string
	client   client.Client
	// reader reads from the server directly: the heartbeat uses it, since
	// the first beat comes before the cache has started.
	reader client.Reader
	events record.EventRecorder
	log    logr.Logger
	// busy holds a lock per Target: one task at a time, and no observation
	// while a task changes what runs.
	busy sync.Map
	// observeNow wakes the observer for one Target.
	observeNow chan event.TypedGenericEvent[*v1alpha1.Target]
}

// forwardChanges wakes the observer for each Target its runtime says changed.
func (a *agent) forwardChanges(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case name := <-a.Changes:
			wake := event.TypedGenericEvent[*v1alpha1.Target]{Object: &v1alpha1.Target{ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: name}}}
			select {
			case a.observeNow <- wake:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// lock is the Target's lock.
func (a *agent) lock(target *v1alpha1.Target) *sync.Mutex {
	m, _ := a.busy.LoadOrStore(client.ObjectKeyFromObject(target), &sync.Mutex{})
	return m.(*sync.Mutex)
}

// server says whether this runs inside the server, for the Targets that
// name no agent.
func (a *agent) server() bool { return a.Name == "" }

// controllerName keeps the server's controllers apart from its others.
func (a *agent) controllerName(kind string) string {
	if a.server() {
		return "deployer-" + kind
	}
	return kind
}

// who names what deploys, for people.
func (a *agent) who() string {
	if a.server() {
		return "the stella server"
	}
	return "stella-agent " + a.Name
}
