package main

// The agents mode, `hack/bench agents`: a fleet of lightweight agents in
// this process against one server. Each agent joins as stella-agent does,
// through internal/agent's Join: a join token of its own, a key and a
// certificate request approved by the server, so it talks to the server
// as stella:agent:<namespace>:<name> over a TLS connection of its own.
// With that identity it opens the watches stella-agent's cache opens
// (DeployTasks labelled with its name, the Targets that name it, its own
// Agent) and heartbeats as stella-agent does (its Lease, its Agent's
// status). Each serves one Target; the Targets are split evenly among the
// Environments. Each round creates one Promotion per Environment at once;
// an agent notes when its DeployTask first reaches it and reports it
// Running, then Succeeded, as stella-agent does around a deployment that
// takes no time, so the promotions end and the next round can start.
//
// The latency is measured per DeployTask from the moment the benchmark's
// own watch of Promotions showed the promotion's decision (allow) to the
// moment the agent's watch delivered the task, both on this process's
// clock. The decision's own timestamp has whole seconds only; the watch
// adds its delivery time to the start of the interval as it does to the
// end, so the difference is the server's work from decision to task plus
// one watch delivery to a label-selected watch among the agents'.

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agent"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
	"github.com/stella-ops/stella/internal/pki"
)

const (
	agentsMode    = "agents"
	agentsTimeout = 30 * time.Minute

	fleetEnvironmentLabel = "bench.stella-ops.org/fleet-environment"
	// fleetCertTTL is what stella-agent asks for by default; no
	// certificate is renewed during a run.
	fleetCertTTL = 30 * 24 * time.Hour
	// syncTimeout bounds the wait for every agent's watches to be loaded.
	fleetSyncTimeout = 10 * time.Minute
	// idleTime is how long the connected fleet is left alone, heartbeating,
	// before the promotions, for the server's load of an idle fleet.
	fleetIdleTime = 30 * time.Second

	// Goals of issue 17, printed next to the measurements.
	goalFleetP99Ms = 500.0
	goalFleetRSSMB = 2000.0
)

type agentOptions struct {
	agents       int
	environments int
	rounds       int
	joinParallel int
	heartbeat    time.Duration
	stella       string
	out          string
	timeout      time.Duration
	cpuProfile   string
}

func parseAgentFlags(args []string) agentOptions {
	var o agentOptions
	fs := flag.NewFlagSet("benchmark "+agentsMode, flag.ExitOnError)
	fs.IntVar(&o.agents, "agents", 1000, "agents, each with its own identity, watches and one Target")
	fs.IntVar(&o.environments, "environments", 4, "Environments the Targets are split among; each round promotes into all of them at once")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of promotions, each of a new Release into every Environment")
	fs.IntVar(&o.joinParallel, "join-parallel", 16, "agents joining at the same time")
	fs.DurationVar(&o.heartbeat, "heartbeat", 10*time.Second, "how often each agent renews its Lease and reports its Agent's status, as stella-agent --heartbeat (0: never)")
	fs.StringVar(&o.stella, "stella", "bin/stella", "stella binary to benchmark")
	fs.StringVar(&o.out, "o", "", "also write the results as JSON to this file")
	fs.DurationVar(&o.timeout, "timeout", agentsTimeout, "time limit of the whole run")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", fmt.Sprintf("write a CPU profile of the server's first %d s of the first round to this file", profileSeconds))
	_ = fs.Parse(args)
	if fs.NArg() > 0 || o.agents < 1 || o.environments < 1 || o.environments > o.agents || o.rounds < 1 || o.joinParallel < 1 || o.heartbeat < 0 || o.timeout <= finishReserve {
		fs.Usage()
		os.Exit(2)
	}
	return o
}

// AgentResults is everything the agents mode measured.
type AgentResults struct {
	Machine          Machine `json:"machine"`
	Agents           int     `json:"agents"`
	Environments     int     `json:"environments"`
	Rounds           int     `json:"rounds"`
	HeartbeatSeconds float64 `json:"heartbeatSeconds"`
	Startup          Ready   `json:"startup"`
	// Join is every agent's join: CA check, certificate request, approval
	// and signature, each timed from its start.
	Join Throughput `json:"join"`
	// WatchSyncSeconds runs from the first agent opening its watches to
	// the last one having them loaded.
	WatchSyncSeconds float64 `json:"watchSyncSeconds"`
	// Idle is the server's load over fleetIdleTime with the whole fleet
	// connected and heartbeating, no promotion running.
	Idle ServerLoad `json:"idle"`
	// Promote is the server's load over the rounds; its RSS is read at
	// the end.
	Promote ServerLoad `json:"promote"`
	// DecisionToAgent is, per DeployTask, from the benchmark seeing its
	// promotion's decision to its agent seeing the task.
	DecisionToAgent Latency `json:"decisionToAgent"`
	// DecisionToAgentP95Ms is that latency's 95th percentile, nil when it
	// falls among the tasks never seen.
	DecisionToAgentP95Ms *float64 `json:"decisionToAgentP95Ms"`
	// DecisionToTask is the first part of DecisionToAgent: from the
	// decision to the benchmark's own unfiltered watch of DeployTasks
	// showing the task; TaskToAgent is the rest, from there to the agent's
	// label-selected watch showing it. Both over the tasks both watches saw.
	DecisionToTask Latency `json:"decisionToTask"`
	TaskToAgent    Latency `json:"taskToAgent"`
	// CreateToAgent is from the promotion's create call returning to the
	// agent seeing the task.
	CreateToAgent Latency `json:"createToAgent"`
	// EarlyTasks counts tasks an agent saw before the benchmark saw their
	// promotion's decision; they count as 0.
	EarlyTasks int `json:"earlyTasks"`
	// RoundSeconds is each round from its first create to its last
	// promotion Succeeded.
	RoundSeconds []float64 `json:"roundSeconds"`
	Promotions   int       `json:"promotions"`
	Succeeded    int       `json:"succeeded"`
	Failures     []string  `json:"failures,omitempty"`
	// AgentErrors are the agents' failed requests (status reports,
	// heartbeats), the first few of them.
	AgentErrors     []string     `json:"agentErrors,omitempty"`
	AgentErrorCount int64        `json:"agentErrorCount"`
	Targets         []Verdict    `json:"targets"`
	StoppedIn       string       `json:"stoppedIn,omitempty"`
	ServerLogErrors []string     `json:"serverLogErrors"`
	ServerExits     []ServerExit `json:"serverExits"`
}

// agentsBench holds the state of the agents mode. It is a promotionBench
// for the server, its metrics and its work queues.
type agentsBench struct {
	promotionBench
	aopts agentOptions
	res   AgentResults
	// onServerExit ends the phases when the server exits by itself, that
	// is before stopping is set.
	onServerExit func(error)
	stopping     atomic.Bool
	fleet        []*fleetAgent
	seen         *fleetTracker
	// agentErrors collects the agents' failed requests.
	errMu     sync.Mutex
	errCount  atomic.Int64
	errSample []string
}

func runAgents(ctx context.Context, o agentOptions) error {
	if _, err := os.Stat(o.stella); err != nil {
		return fmt.Errorf("%w (run make build first)", err)
	}
	work, err := os.MkdirTemp("", "stella-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	metricsAddr, err := freeLoopbackAddress()
	if err != nil {
		return err
	}
	b := &agentsBench{
		promotionBench: promotionBench{
			session: session{
				stella: o.stella, work: work, dataDir: filepath.Join(work, "data"),
				serverArgs: append([]string{"--metrics-listen", metricsAddr}, noScan...),
			},
			opts:        promotionOptions{cpuProfile: o.cpuProfile},
			metricsURL:  "http://" + metricsAddr + "/metrics",
			metricsHTTP: &http.Client{Timeout: 10 * time.Second},
		},
		aopts: o,
		seen:  newFleetTracker(),
	}
	progressExit := func(err error) { progress("%v", err) }
	b.onServerExit = progressExit
	if o.cpuProfile != "" {
		b.serverArgs = append(b.serverArgs, "--profiling")
	}
	b.res.Agents, b.res.Environments, b.res.Rounds = o.agents, o.environments, o.rounds
	b.res.HeartbeatSeconds = o.heartbeat.Seconds()
	b.res.Machine = describeMachine(ctx, o.stella)
	defer b.stopServer()

	phaseCtx, cancel := context.WithCancel(ctx)
	if limit, ok := ctx.Deadline(); ok {
		phaseCtx, cancel = context.WithDeadlineCause(ctx, limit.Add(-finishReserve), errTimeLimit)
	}
	defer cancel()
	// A server that exits ends the run at once, rather than leave the
	// agents retrying until their timeouts.
	phaseCtx, serverGone := context.WithCancelCause(phaseCtx)
	defer serverGone(nil)
	b.onServerExit = func(err error) { progressExit(err); serverGone(err) }
	// The agents run until the server is stopped, as a fleet would.
	fleetCtx, stopFleet := context.WithCancel(phaseCtx)
	defer stopFleet()
	phases := []struct {
		name string
		run  func(context.Context) error
	}{
		{"start on a fresh data directory", b.start},
		{fmt.Sprintf("join %d agents", o.agents), b.join},
		{"set up Targets, Environments and Releases", b.setUp},
		{"open every agent's watches", func(ctx context.Context) error { return b.connectFleet(ctx, fleetCtx) }},
		{"leave the fleet idle", b.measureIdle},
		{fmt.Sprintf("promote, %d round(s) into %d Environments", o.rounds, o.environments), b.promoteRounds},
	}
	for _, ph := range phases {
		progress("%s", ph.name)
		err := ph.run(phaseCtx)
		if err == nil {
			continue
		}
		cause := context.Cause(phaseCtx)
		if !errors.Is(cause, errTimeLimit) {
			b.printServerLogTail()
			if cause != nil && !errors.Is(err, cause) {
				err = fmt.Errorf("%w (%v)", err, cause)
			}
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		b.res.StoppedIn = fmt.Sprintf("%s: %v", ph.name, err)
		progress("time limit reached in %s", b.res.StoppedIn)
		break
	}
	stopFleet()
	b.stopping.Store(true)
	b.res.ServerLogErrors = b.serverLogErrors()
	b.stopServer()
	b.res.Machine.LoadAverageEnd = loadAverage()
	b.res.ServerExits = b.exits
	b.res.AgentErrorCount = b.errCount.Load()
	b.res.AgentErrors = b.errSample
	b.res.evaluateTargets()

	printAgentResults(os.Stdout, &b.res)
	if o.out != "" {
		return writeJSON(o.out, &b.res)
	}
	return nil
}

func (b *agentsBench) start(ctx context.Context) error {
	ready, err := b.startServer(ctx, "fresh")
	if err != nil {
		return err
	}
	b.res.Startup = ready
	srv := b.srv
	go func() {
		select {
		case <-srv.exited:
			if !b.stopping.Load() {
				b.onServerExit(fmt.Errorf("the server exited: %v (see the last lines of its log)", srv.waitErr))
			}
		case <-ctx.Done():
		}
	}()
	if err := b.connect(ctx, namespace); err != nil {
		return err
	}
	return b.waitQuiet(ctx)
}

func fleetAgentName(i int) string  { return fmt.Sprintf("agent-%05d", i) }
func fleetTargetName(i int) string { return fmt.Sprintf("host-%05d", i) }
func fleetEnvironmentName(e int) string {
	return fmt.Sprintf("fleet-%02d", e)
}
func fleetReleaseName(r int) string { return fmt.Sprintf("fleet-release-%02d", r) }
func fleetPromotionName(r, e int) string {
	return fmt.Sprintf("fleet-%02d-round-%02d", e, r)
}

// environmentOf is the Environment of agent i's Target: the Targets are
// split into contiguous, even shares.
func (b *agentsBench) environmentOf(i int) int {
	return i * b.aopts.environments / b.aopts.agents
}

// join makes every Agent and its join token as stellactl agent join-token
// does, then has the agents join, joinParallel at a time, through
// stella-agent's own Join: a certificate request each, approved and
// signed by the server.
func (b *agentsBench) join(ctx context.Context) error {
	n := b.aopts.agents
	caPEM := b.restCfg.CAData
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return fmt.Errorf("the admin kubeconfig has no CA certificate")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("read the server's CA: %w", err)
	}
	caHash := pki.CertHash(ca)
	tokens := make([]string, n)
	if _, err := createObjects(ctx, b.workers, n, 0, func(i int) client.Object {
		return &v1alpha1.Agent{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fleetAgentName(i)},
			Spec:       v1alpha1.AgentSpec{Capabilities: []v1alpha1.TargetType{v1alpha1.TargetTypeDocker}},
		}
	}, nil); err != nil {
		return err
	}
	if _, err := createObjects(ctx, b.workers, n, 0, func(i int) client.Object {
		token, secret := joinToken(fleetAgentName(i))
		tokens[i] = token
		return secret
	}, nil); err != nil {
		return err
	}
	progress("  %d Agents and join tokens created", n)

	b.fleet = make([]*fleetAgent, n)
	latencies := make([]time.Duration, n)
	var next atomic.Int64
	joinCtx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	var wg sync.WaitGroup
	start := time.Now()
	for range b.aopts.joinParallel {
		wg.Go(func() {
			for joinCtx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				name := fleetAgentName(i)
				dir := filepath.Join(b.work, "agents", name)
				t := time.Now()
				err := agent.Join(joinCtx, dir, namespace, name, agent.JoinOptions{Server: b.restCfg.Host, CAHash: caHash, Token: tokens[i], CertTTL: fleetCertTTL})
				if err != nil {
					fail(fmt.Errorf("agent %s: %w", name, err))
					return
				}
				latencies[i] = time.Since(t)
				id, err := agent.LoadIdentity(dir, namespace, name, fleetCertTTL)
				if err == nil {
					var cfg *rest.Config
					if cfg, err = id.RESTConfig(); err == nil {
						b.fleet[i] = &fleetAgent{b: b, index: i, name: name, cfg: cfg}
					}
				}
				if err != nil {
					fail(fmt.Errorf("agent %s: %w", name, err))
					return
				}
				if done := i + 1; done%100 == 0 {
					progress("  %d joined after %.1f s", done, time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(joinCtx); err != nil {
		return err
	}
	elapsed := time.Since(start)
	slices.Sort(latencies)
	b.res.Join = Throughput{
		Clients: b.aopts.joinParallel, Objects: n, Seconds: elapsed.Seconds(), PerSecond: float64(n) / elapsed.Seconds(),
		P50Ms: milliseconds(percentile(latencies, 0.50)), P99Ms: milliseconds(percentile(latencies, 0.99)), MaxMs: milliseconds(latencies[n-1]),
	}
	progress("  %d agents joined in %.1f s, %.1f/s; each took p50 %.0f ms, max %.0f ms", n, elapsed.Seconds(), b.res.Join.PerSecond, b.res.Join.P50Ms, b.res.Join.MaxMs)
	return nil
}

// joinToken makes a one-time join token for agent, as stellactl agent
// join-token does: a bootstrap token labelled with the Agent it lets join.
func joinToken(agentName string) (string, *corev1.Secret) {
	id, secret := randomLower(6), randomLower(16)
	return id + "." + secret, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: agentid.JoinTokenNamespace, Name: "bootstrap-token-" + id,
			Labels: map[string]string{v1alpha1.LabelAgentNamespace: namespace, v1alpha1.LabelAgent: agentName},
		},
		Type: corev1.SecretTypeBootstrapToken,
		StringData: map[string]string{
			"token-id": id, "token-secret": secret, "expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
			"usage-bootstrap-authentication": "true", "auth-extra-groups": agentid.BootstrapGroup,
			"description": "join token of a benchmark agent",
		},
	}
}

// randomLower is n random characters of [a-z0-9], the alphabet of
// bootstrap tokens.
func randomLower(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, n)
	for i := range out {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(err) // crypto/rand does not fail on Linux
		}
		out[i] = alphabet[k.Int64()]
	}
	return string(out)
}

// setUp creates the Releases, one per round, the Targets, one per agent,
// and last the Environments, then waits until each counts its Targets.
func (b *agentsBench) setUp(ctx context.Context) error {
	o := b.aopts
	for r := range o.rounds {
		rel := newRelease(namespace, fleetReleaseName(r))
		rel.Spec.Version = fmt.Sprintf("1.0.%d", r)
		if err := b.client.Create(ctx, rel); err != nil {
			return fmt.Errorf("create Release %s: %w", rel.Name, err)
		}
	}
	if _, err := createObjects(ctx, b.workers, o.agents, 0, func(i int) client.Object {
		return &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Name: fleetTargetName(i), Namespace: namespace,
				Labels: map[string]string{fleetEnvironmentLabel: fleetEnvironmentName(b.environmentOf(i))}},
			Spec: v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: fleetAgentName(i)},
		}
	}, nil); err != nil {
		return err
	}
	if _, err := createObjects(ctx, b.workers, o.environments, 0, func(e int) client.Object {
		return &v1alpha1.Environment{
			ObjectMeta: metav1.ObjectMeta{Name: fleetEnvironmentName(e), Namespace: namespace},
			Spec: v1alpha1.EnvironmentSpec{
				TargetSelector: &metav1.LabelSelector{MatchLabels: map[string]string{fleetEnvironmentLabel: fleetEnvironmentName(e)}},
				Strategy:       &v1alpha1.DeployStrategy{Type: v1alpha1.StrategyAllAtOnce},
			},
		}
	}, nil); err != nil {
		return err
	}
	progress("  %d Releases, %d Targets, %d Environments created", o.rounds, o.agents, o.environments)
	if err := waitFor(ctx, "Releases Ready", func(ctx context.Context) (bool, string, error) {
		ready, err := countReady(ctx, b.client, namespace)
		return ready >= o.rounds, fmt.Sprintf("%d of %d", ready, o.rounds), err
	}); err != nil {
		return err
	}
	return waitFor(ctx, "Environments counting their Targets", func(ctx context.Context) (bool, string, error) {
		var list v1alpha1.EnvironmentList
		if err := b.client.List(ctx, &list, client.InNamespace(namespace)); err != nil {
			return false, "", err
		}
		counted := 0
		for _, e := range list.Items {
			var share int32
			for i := range o.agents {
				if fleetEnvironmentName(b.environmentOf(i)) == e.Name {
					share++
				}
			}
			if e.Status.ObservedGeneration == e.Generation && e.Status.Targets.Total == share {
				counted++
			}
		}
		return counted == o.environments, fmt.Sprintf("%d of %d", counted, o.environments), nil
	})
}

// connectFleet starts every agent: its watches, loaded before this
// returns, and its heartbeat. They run until fleetCtx ends.
func (b *agentsBench) connectFleet(ctx, fleetCtx context.Context) error {
	hc, err := rest.HTTPClientFor(b.restCfg)
	if err != nil {
		return err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(b.restCfg, hc)
	if err != nil {
		return err
	}
	start := time.Now()
	var synced atomic.Int64
	errs := make(chan error, len(b.fleet))
	var wg sync.WaitGroup
	sem := make(chan struct{}, b.aopts.joinParallel)
	for _, a := range b.fleet {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := a.start(ctx, fleetCtx, mapper); err != nil {
				errs <- fmt.Errorf("agent %s: %w", a.name, err)
				return
			}
			if n := synced.Add(1); n%100 == 0 {
				progress("  %d agents watching after %.1f s", n, time.Since(start).Seconds())
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	b.res.WatchSyncSeconds = time.Since(start).Seconds()
	progress("  %d agents watching after %.1f s", len(b.fleet), b.res.WatchSyncSeconds)
	return nil
}

func (b *agentsBench) measureIdle(ctx context.Context) error {
	if err := b.waitQuiet(ctx); err != nil {
		return err
	}
	obs, err := b.observe(ctx)
	if err != nil {
		return err
	}
	if err := sleep(ctx, fleetIdleTime); err != nil {
		obs.finish(ctx)
		return err
	}
	obs.finish(ctx)
	b.res.Idle = obs.server()
	if mem, err := b.rss(); err == nil {
		b.res.Idle.RSSMB, b.res.Idle.PeakRSSMB = mem.rssMB(), mem.hwmMB()
	}
	progress("  idle fleet: server CPU %.1f s over %.0f s, RSS %.0f MB", b.res.Idle.CPUSeconds, b.res.Idle.Seconds, b.res.Idle.RSSMB)
	return nil
}

// promoteRounds runs the rounds, each once the one before has ended, and
// watches the Promotions for their decisions and ends.
func (b *agentsBench) promoteRounds(ctx context.Context) error {
	o := b.aopts
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	promotions, err := cache.New(b.restCfg, cache.Options{
		Scheme: scheme, DefaultNamespaces: map[string]cache.Config{namespace: {}},
	})
	if err != nil {
		return err
	}
	inf, err := promotions.GetInformer(ctx, &v1alpha1.Promotion{})
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { b.seen.promotionSeen(obj, time.Now()) },
		UpdateFunc: func(_, obj any) { b.seen.promotionSeen(obj, time.Now()) },
	}); err != nil {
		return err
	}
	taskInf, err := promotions.GetInformer(ctx, &v1alpha1.DeployTask{})
	if err != nil {
		return err
	}
	if _, err := taskInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { b.seen.taskCreated(obj, time.Now()) },
	}); err != nil {
		return err
	}
	go func() { _ = promotions.Start(watchCtx) }()
	if !promotions.WaitForCacheSync(ctx) {
		return fmt.Errorf("the benchmark's watch of Promotions did not load")
	}

	obs, err := b.observe(ctx)
	if err != nil {
		return err
	}
	defer func() {
		obs.finish(ctx)
		b.res.Promote = obs.server()
		if mem, err := b.rss(); err == nil {
			b.res.Promote.RSSMB, b.res.Promote.PeakRSSMB = mem.rssMB(), mem.hwmMB()
		}
		b.summarize()
	}()
	for r := range o.rounds {
		if r == 0 && o.cpuProfile != "" {
			go b.profile(watchCtx)
		}
		start := time.Now()
		names := make([]string, o.environments)
		if _, err := createObjects(ctx, b.workers, o.environments, 0, func(e int) client.Object {
			names[e] = fleetPromotionName(r, e)
			return &v1alpha1.Promotion{
				ObjectMeta: metav1.ObjectMeta{Name: names[e], Namespace: namespace},
				Spec:       v1alpha1.PromotionSpec{Release: fleetReleaseName(r), Environment: fleetEnvironmentName(e), Reason: "benchmark"},
			}
		}, func(e int, at time.Time) { b.seen.noteCreated(fleetPromotionName(r, e), at) }); err != nil {
			return err
		}
		b.res.Promotions += o.environments
		if err := waitFor(ctx, fmt.Sprintf("round %d: promotions ended", r+1), func(context.Context) (bool, string, error) {
			ended, status := b.seen.ended(names)
			return ended, status, nil
		}); err != nil {
			return err
		}
		b.res.RoundSeconds = append(b.res.RoundSeconds, time.Since(start).Seconds())
		progress("  round %d: %d promotions ended %.1f s after the first create", r+1, o.environments, time.Since(start).Seconds())
	}
	return nil
}

func (b *agentsBench) summarize() {
	t := b.seen
	t.mu.Lock()
	defer t.mu.Unlock()
	var fromDecision, fromCreate, dispatch, delivery []time.Duration
	for task, s := range t.tasks {
		p := t.promotions[s.promotion]
		if p == nil || p.decided.IsZero() {
			b.res.Failures = append(b.res.Failures, fmt.Sprintf("DeployTask %s: its promotion's decision was never seen", task))
			continue
		}
		d := s.seen.Sub(p.decided)
		if d < 0 {
			b.res.EarlyTasks++
			d = 0
		}
		fromDecision = append(fromDecision, d)
		if c, ok := t.created[task]; ok {
			dispatch = append(dispatch, max(0, c.Sub(p.decided)))
			delivery = append(delivery, max(0, s.seen.Sub(c)))
		}
		if !p.created.IsZero() {
			fromCreate = append(fromCreate, max(0, s.seen.Sub(p.created)))
		}
	}
	for name, p := range t.promotions {
		if p.phase == v1alpha1.PromotionSucceeded {
			b.res.Succeeded++
		} else if p.message != "" {
			b.res.Failures = append(b.res.Failures, name+": "+p.message)
		}
	}
	slices.Sort(b.res.Failures)
	// Every promotion made a DeployTask for each Target of its
	// Environment: those no agent saw count as slower than any seen.
	want := b.res.Promotions / max(1, b.aopts.environments) * b.aopts.agents
	slices.Sort(fromDecision)
	slices.Sort(fromCreate)
	slices.Sort(dispatch)
	slices.Sort(delivery)
	b.res.DecisionToTask = latencyOf(dispatch, len(dispatch))
	b.res.TaskToAgent = latencyOf(delivery, len(delivery))
	b.res.DecisionToAgent = latencyOf(fromDecision, max(want, len(fromDecision)))
	b.res.CreateToAgent = latencyOf(fromCreate, max(want, len(fromCreate)))
	if total := max(want, len(fromDecision)); total > 0 {
		if i := int(0.95 * float64(total-1)); i < len(fromDecision) {
			p95 := milliseconds(fromDecision[i])
			b.res.DecisionToAgentP95Ms = &p95
		}
	}
}

func (b *agentsBench) agentFailed(err error) {
	if b.errCount.Add(1) > maxFailures {
		return
	}
	b.errMu.Lock()
	defer b.errMu.Unlock()
	b.errSample = append(b.errSample, err.Error())
}

// fleetTracker notes, on this process's clock, when each promotion's create
// returned, when its decision and its end were first seen, and when each
// DeployTask first reached its agent.
type fleetTracker struct {
	mu         sync.Mutex
	promotions map[string]*fleetPromotion
	tasks      map[string]taskSeen
	created    map[string]time.Time
}

type fleetPromotion struct {
	created, decided time.Time
	phase            v1alpha1.PromotionPhase
	message          string
}

type taskSeen struct {
	promotion string
	seen      time.Time
}

// taskCreated is when the benchmark's own, unfiltered watch of DeployTasks
// first showed a task: the decision-to-agent latency splits there into the
// server's dispatch and the delivery to the agent's watch.
func (t *fleetTracker) taskCreated(obj any, at time.Time) {
	task, ok := obj.(*v1alpha1.DeployTask)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.created[task.Name]; !ok {
		t.created[task.Name] = at
	}
}

func newFleetTracker() *fleetTracker {
	return &fleetTracker{promotions: map[string]*fleetPromotion{}, tasks: map[string]taskSeen{}, created: map[string]time.Time{}}
}

func (t *fleetTracker) promotion(name string) *fleetPromotion {
	p := t.promotions[name]
	if p == nil {
		p = &fleetPromotion{}
		t.promotions[name] = p
	}
	return p
}

// noteCreated: promotion name's create call returned at at.
func (t *fleetTracker) noteCreated(name string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.promotion(name).created = at
}

func (t *fleetTracker) promotionSeen(obj any, at time.Time) {
	promo, ok := obj.(*v1alpha1.Promotion)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.promotion(promo.Name)
	if d := promo.Status.Decision; d != nil && d.Result == v1alpha1.DecisionAllow && p.decided.IsZero() {
		p.decided = at
	}
	if promo.Status.Phase.IsTerminal() && p.phase == "" {
		p.phase = promo.Status.Phase
		if promo.Status.Phase != v1alpha1.PromotionSucceeded {
			p.message = string(promo.Status.Phase)
			if c := meta.FindStatusCondition(promo.Status.Conditions, v1alpha1.ConditionReady); c != nil {
				p.message += ": " + c.Message
			}
		}
	}
}

func (t *fleetTracker) taskSeen(task *v1alpha1.DeployTask, at time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.tasks[task.Name]; ok {
		return false
	}
	t.tasks[task.Name] = taskSeen{promotion: task.Spec.Promotion, seen: at}
	return true
}

// ended says whether every named promotion has ended, and where they stand.
func (t *fleetTracker) ended(names []string) (bool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	decided, ended := 0, 0
	for _, n := range names {
		p := t.promotions[n]
		if p == nil {
			continue
		}
		if !p.decided.IsZero() {
			decided++
		}
		if p.phase != "" {
			ended++
		}
	}
	tasks := 0
	for _, s := range t.tasks {
		if slices.Contains(names, s.promotion) {
			tasks++
		}
	}
	return ended == len(names), fmt.Sprintf("%d decided, %d ended of %d; %d DeployTasks seen by their agents", decided, ended, len(names), tasks)
}

// fleetAgent is one agent: its identity's connection, its watches and its
// heartbeat.
type fleetAgent struct {
	b     *agentsBench
	index int
	name  string
	cfg   *rest.Config
	c     client.Client
}

// start opens the watches stella-agent's cache opens, with the same
// selectors, and waits until they are loaded; the heartbeat starts too.
func (a *fleetAgent) start(ctx, fleetCtx context.Context, mapper meta.RESTMapper) error {
	hc, err := rest.HTTPClientFor(a.cfg)
	if err != nil {
		return err
	}
	if a.c, err = client.New(a.cfg, client.Options{Scheme: scheme, HTTPClient: hc, Mapper: mapper}); err != nil {
		return err
	}
	watches, err := cache.New(a.cfg, cache.Options{
		Scheme: scheme, HTTPClient: hc, Mapper: mapper,
		DefaultNamespaces: map[string]cache.Config{namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&v1alpha1.DeployTask{}: {Label: labels.SelectorFromSet(labels.Set{v1alpha1.LabelAgent: v1alpha1.LabelValue(a.name)})},
			&v1alpha1.Target{}:     {Field: fields.OneTermEqualSelector(v1alpha1.FieldTargetAgent, a.name)},
			&v1alpha1.Agent{}:      {Field: fields.OneTermEqualSelector("metadata.name", a.name)},
		},
	})
	if err != nil {
		return err
	}
	tasks, err := watches.GetInformer(ctx, &v1alpha1.DeployTask{})
	if err != nil {
		return err
	}
	if _, err := tasks.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.taskArrived(fleetCtx, obj) },
		UpdateFunc: func(_, obj any) { a.taskArrived(fleetCtx, obj) },
	}); err != nil {
		return err
	}
	for _, obj := range []client.Object{&v1alpha1.Target{}, &v1alpha1.Agent{}} {
		if _, err := watches.GetInformer(ctx, obj); err != nil {
			return err
		}
	}
	go func() {
		if err := watches.Start(fleetCtx); err != nil && fleetCtx.Err() == nil {
			a.b.agentFailed(fmt.Errorf("agent %s: watches: %w", a.name, err))
		}
	}()
	syncCtx, cancel := context.WithTimeout(ctx, fleetSyncTimeout)
	defer cancel()
	if !watches.WaitForCacheSync(syncCtx) {
		return fmt.Errorf("watches not loaded within %s", fleetSyncTimeout)
	}
	if a.b.aopts.heartbeat > 0 {
		if err := a.beat(ctx); err != nil {
			return err
		}
		go a.heartbeat(fleetCtx)
	}
	return nil
}

// taskArrived notes a new, unfinished task of this agent and reports it
// Running, then Succeeded, as stella-agent does around a deployment.
func (a *fleetAgent) taskArrived(ctx context.Context, obj any) {
	at := time.Now()
	task, ok := obj.(*v1alpha1.DeployTask)
	if !ok || task.Status.Phase.IsTerminal() || task.Status.Phase == v1alpha1.DeployTaskRunning {
		return
	}
	if !a.b.seen.taskSeen(task, at) {
		return
	}
	go func() {
		if err := a.report(ctx, task); err != nil && ctx.Err() == nil {
			a.b.agentFailed(fmt.Errorf("agent %s: DeployTask %s: %w", a.name, task.Name, err))
		}
	}()
}

func (a *fleetAgent) report(ctx context.Context, task *v1alpha1.DeployTask) error {
	task = task.DeepCopy()
	steps := []func(*v1alpha1.DeployTask){
		func(t *v1alpha1.DeployTask) {
			t.Status.Phase = v1alpha1.DeployTaskRunning
			t.Status.Attempts++
			t.Status.StartedAt = &metav1.Time{Time: time.Now()}
			t.Status.Message = fmt.Sprintf("benchmark agent %s is deploying (attempt %d)", a.name, t.Status.Attempts)
			t.Status.ObservedGeneration = t.Generation
		},
		func(t *v1alpha1.DeployTask) {
			t.Status.Phase = v1alpha1.DeployTaskSucceeded
			t.Status.Message = fmt.Sprintf("release %s runs", t.Spec.Release)
			t.Status.Observed = slices.Clone(t.Spec.Components)
			t.Status.FinishedAt = &metav1.Time{Time: time.Now()}
			t.Status.ObservedGeneration = t.Generation
		},
	}
	for _, change := range steps {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			change(task)
			err := a.c.Status().Update(ctx, task)
			if apierrors.IsConflict(err) {
				fresh := &v1alpha1.DeployTask{}
				if getErr := a.c.Get(ctx, client.ObjectKeyFromObject(task), fresh); getErr != nil {
					return getErr
				}
				task = fresh
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// heartbeat beats every interval, the agents spread over it.
func (a *fleetAgent) heartbeat(ctx context.Context) {
	every := a.b.aopts.heartbeat
	offset := every * time.Duration(a.index) / time.Duration(len(a.b.fleet))
	if err := sleep(ctx, offset); err != nil {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := a.beat(ctx); err != nil && ctx.Err() == nil {
			a.b.agentFailed(fmt.Errorf("agent %s: heartbeat: %w", a.name, err))
		}
	}
}

// beat does what stella-agent's heartbeat does: renew its Lease, list the
// Targets it serves, read its Agent and patch its status.
func (a *fleetAgent) beat(ctx context.Context) error {
	now := metav1.NowMicro()
	lease := &coordinationv1.Lease{}
	key := client.ObjectKey{Namespace: namespace, Name: agentid.LeaseName(a.name)}
	seconds := int32(max(1, 3*a.b.aopts.heartbeat/time.Second))
	err := a.c.Get(ctx, key, lease)
	switch {
	case apierrors.IsNotFound(err):
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(a.name), LeaseDurationSeconds: ptr.To(seconds), AcquireTime: &now, RenewTime: &now},
		}
		err = a.c.Create(ctx, lease)
	case err == nil:
		lease.Spec.RenewTime = &now
		lease.Spec.LeaseDurationSeconds = ptr.To(seconds)
		err = a.c.Update(ctx, lease)
	}
	if err != nil {
		return fmt.Errorf("renew Lease %s: %w", key.Name, err)
	}
	var targets v1alpha1.TargetList
	if err := a.c.List(ctx, &targets, client.InNamespace(namespace), client.MatchingFields{v1alpha1.FieldTargetAgent: a.name}); err != nil {
		return fmt.Errorf("list its Targets: %w", err)
	}
	obj := &v1alpha1.Agent{}
	if err := a.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: a.name}, obj); err != nil {
		return fmt.Errorf("read its Agent: %w", err)
	}
	before := obj.DeepCopy()
	st := &obj.Status
	st.Hostname = "bench"
	st.LastHeartbeat = &metav1.Time{Time: now.Time}
	st.ServedTargets = nil
	for _, t := range targets.Items {
		st.ServedTargets = append(st.ServedTargets, t.Name)
	}
	st.Capabilities = []v1alpha1.TargetType{v1alpha1.TargetTypeDocker}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonHeartbeating,
		Message: fmt.Sprintf("benchmark agent %s serves %d target(s)", a.name, len(targets.Items)), ObservedGeneration: obj.Generation,
	})
	if err := a.c.Status().Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("report its Agent's status: %w", err)
	}
	return nil
}

func (r *AgentResults) evaluateTargets() {
	add := func(v Verdict, measured bool) {
		if !measured {
			v.Measured, v.Pass = -1, false
		}
		r.Targets = append(r.Targets, v)
	}
	add(newVerdict("decision to agent sees its DeployTask, p99", deref(r.DecisionToAgent.P99Ms), "≤", goalFleetP99Ms, "ms"), r.DecisionToAgent.P99Ms != nil)
	add(newVerdict("server RSS after the rounds", r.Promote.RSSMB, "≤", goalFleetRSSMB, "MB"), r.Promote.RSSMB > 0)
}

func (r *AgentResults) verdict(name string) string {
	for _, v := range r.Targets {
		if v.Name == name {
			return v.column()
		}
	}
	return "\t"
}

func printAgentResults(w io.Writer, r *AgentResults) {
	m := r.Machine
	fmt.Fprintf(w, "\nStella benchmark: %d agents, %d Environments of %d Targets, %d round(s) of promotions\n", r.Agents, r.Environments, r.Agents/r.Environments, r.Rounds)
	fmt.Fprintf(w, "machine: nproc %d, %s, %s %s, load average %s at start, %s at end\n",
		m.NProc, m.CPU, m.GoVersion, m.Platform, m.LoadAverageStart, m.LoadAverageEnd)
	fmt.Fprintf(w, "stella:  %s\n\n", m.Stella)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")) }
	ms := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return seconds(*v / 1000)
	}
	j := r.Join
	row("FLEET", "measured", "target", "", "")
	row("  join (token, CSR, approval, signature)", fmt.Sprintf("%.1f /s", j.PerSecond), "\t",
		fmt.Sprintf("%d agents in %s, %d at a time; each p50 %s, p99 %s, max %s", j.Objects, seconds(j.Seconds), j.Clients, seconds(j.P50Ms/1000), seconds(j.P99Ms/1000), seconds(j.MaxMs/1000)))
	row("  every agent's watches loaded", seconds(r.WatchSyncSeconds), "\t", "3 watches per agent: DeployTasks by label, Targets by field, its Agent")
	heartbeat := "no heartbeat"
	if r.HeartbeatSeconds > 0 {
		heartbeat = fmt.Sprintf("heartbeat every %s", seconds(r.HeartbeatSeconds))
	}
	row("  idle fleet: server CPU", fmt.Sprintf("%.0f%%", 100*r.Idle.CPUSeconds/max(r.Idle.Seconds, 1e-9)), "\t", fmt.Sprintf("of one core over %s, %s", seconds(r.Idle.Seconds), heartbeat))
	row("  idle fleet: server RSS", megabytes(r.Idle.RSSMB), "\t", "")
	d := r.DecisionToAgent
	row(fmt.Sprintf("DECISION TO AGENT SEES ITS DEPLOYTASK (%d tasks)", d.Seen+d.Missing), "", "\t", "")
	row("  p50", ms(d.P50Ms), "\t", "")
	row("  p95", ms(r.DecisionToAgentP95Ms), "\t", "")
	row("  p99", ms(d.P99Ms), r.verdict("decision to agent sees its DeployTask, p99"), "")
	row("  max", ms(d.MaxMs), "\t", fmt.Sprintf("%d missing, %d seen before the decision (as 0)", d.Missing, r.EarlyTasks))
	row("  of which: decision to the DeployTask on the benchmark's watch, p50 / p99", ms(r.DecisionToTask.P50Ms)+" / "+ms(r.DecisionToTask.P99Ms), "\t", "the server's dispatch")
	row("  of which: that watch to the agent's watch, p50 / p99", ms(r.TaskToAgent.P50Ms)+" / "+ms(r.TaskToAgent.P99Ms), "\t", "delivery to one label-selected watch among the fleet's")
	c := r.CreateToAgent
	row("  from the promotion's create instead, p50 / p99", ms(c.P50Ms)+" / "+ms(c.P99Ms), "\t", "")
	row("PROMOTIONS", fmt.Sprintf("%d of %d", r.Succeeded, r.Promotions), "\t", "Succeeded")
	for i, s := range r.RoundSeconds {
		row(fmt.Sprintf("  round %d", i+1), seconds(s), "\t", "first create to last promotion Succeeded")
	}
	row("  server CPU over the rounds", fmt.Sprintf("%.1f s", r.Promote.CPUSeconds), "\t", fmt.Sprintf("over %s; the benchmark used %.1f s", seconds(r.Promote.Seconds), r.Promote.BenchmarkCPUSeconds))
	row("  server RSS after the rounds", megabytes(r.Promote.RSSMB), r.verdict("server RSS after the rounds"), fmt.Sprintf("peak %s", megabytes(r.Promote.PeakRSSMB)))
	_ = tw.Flush()
	if r.StoppedIn != "" {
		fmt.Fprintf(w, "\nstopped by the time limit in %s\n", r.StoppedIn)
	}
	for _, f := range r.Failures[:min(len(r.Failures), maxFailures)] {
		fmt.Fprintf(w, "failure: %.300s\n", f)
	}
	if r.AgentErrorCount > 0 {
		fmt.Fprintf(w, "\nagents: %d failed request(s)\n", r.AgentErrorCount)
		for _, e := range r.AgentErrors {
			fmt.Fprintf(w, "  %.300s\n", e)
		}
	}
	fmt.Fprintf(w, "\nserver log: %d error line(s)\n", len(r.ServerLogErrors))
	for _, line := range r.ServerLogErrors[:min(len(r.ServerLogErrors), 10)] {
		fmt.Fprintf(w, "  %.300s\n", line)
	}
	for _, e := range r.ServerExits {
		if e.Error != "" {
			fmt.Fprintf(w, "server %s: %s\n", e.Name, e.Error)
		}
	}
}
