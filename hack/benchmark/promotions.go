package main

// The promotions mode, `hack/bench promotions`: on one fresh server it
// measures raw create throughput (Releases, 8 clients) as the baseline, sets
// up one Environment per promotion, each with its own Target and all sharing
// a policy gate and an open freeze window, then creates one Promotion per
// Environment while watches note, per promotion, when its decision (allow)
// and its DeployTask first appear: first -steady of them at a steady rate,
// which the server keeps up with, for the latency of a decision; then -n
// of them as fast as 8 clients can, for the throughput, where the latency
// is mostly the time spent queued.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

const (
	promotionsMode    = "promotions"
	baselineNamespace = "bench-baseline"
	promotionsTimeout = 20 * time.Minute
	// finishReserve is kept from the run's time limit to stop the server
	// and report what was measured.
	finishReserve = stopTimeout + 15*time.Second
	// quietTime is how long every work queue must stay empty before the
	// promotions start, so that set-up work does not count.
	quietTime        = 3 * time.Second
	pollInterval     = time.Second
	progressInterval = 10 * time.Second
	maxFailures      = 10

	environmentLabel = "bench.stella-ops.org/environment"
	agentName        = "bench-agent"
	releaseName      = "bench-release"
	policyGateName   = "bench-policy"
	freezeGateName   = "bench-freeze"
	policySource     = "allow: input.release.version != \"\"\nreasons: []\n"

	// Goals of issue 3, printed next to the measurements. The time goal is
	// for 10,000 promotions; other counts scale it.
	goalPercentOfBaseline = 70.0
	goalSecondsFor10000   = 100.0
	goalDecisionP50Ms     = 20.0
	goalDecisionP99Ms     = 100.0
)

type promotionOptions struct {
	promotions int
	baseline   int
	stella     string
	out        string
	timeout    time.Duration
	// cpuProfile is where a CPU profile of the server's first
	// profileSeconds of promoting is written.
	cpuProfile string
	// steady promotions are created at steadyRate per second before the
	// saturated run, for the decision latency of a server that keeps up.
	steady     int
	steadyRate float64
}

const profileSeconds = 10

func parsePromotionFlags(args []string) promotionOptions {
	var o promotionOptions
	fs := flag.NewFlagSet("benchmark "+promotionsMode, flag.ExitOnError)
	fs.IntVar(&o.promotions, "n", 10000, "Environments, each with one Target, and Promotions, one per Environment")
	fs.IntVar(&o.baseline, "baseline", 0, "Releases created with 8 clients for the raw create throughput (default: as many as -n)")
	fs.StringVar(&o.stella, "stella", "bin/stella", "stella binary to benchmark")
	fs.StringVar(&o.out, "o", "", "also write the results as JSON to this file")
	fs.DurationVar(&o.timeout, "timeout", promotionsTimeout, "time limit of the whole run; promotions not done by then are reported as missing")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", fmt.Sprintf("write a CPU profile of the server's first %d s of promoting to this file (go tool pprof reads it)", profileSeconds))
	fs.IntVar(&o.steady, "steady", 1000, "promotions created at -steady-rate before the saturated run, each into an Environment of its own (0: none)")
	fs.Float64Var(&o.steadyRate, "steady-rate", 50, "promotions per second of the steady run")
	_ = fs.Parse(args)
	if fs.NArg() > 0 || o.promotions < 1 || o.baseline < 0 || o.steady < 0 || o.steadyRate <= 0 || o.timeout <= finishReserve {
		fs.Usage()
		os.Exit(2)
	}
	if o.baseline == 0 {
		o.baseline = o.promotions
	}
	return o
}

// PromotionResults is everything the promotions mode measured.
type PromotionResults struct {
	Machine       Machine    `json:"machine"`
	Promotions    int        `json:"promotions"`
	Namespace     string     `json:"namespace"`
	Startup       Ready      `json:"startup"`
	Baseline      Throughput `json:"baseline"`
	BaselineReady float64    `json:"baselineReadySecondsAfterCreates"`
	// BaselineServer is the server's load from the first Release create
	// until every Release was Ready.
	BaselineServer ServerLoad `json:"baselineServer"`
	Setup          Setup      `json:"setup"`
	// Steady is the run at a steady rate; SteadyRate is that rate.
	Steady       PromotionRun `json:"steady"`
	SteadyRate   float64      `json:"steadyRate"`
	SteadyServer ServerLoad   `json:"steadyServer"`
	// Run is the saturated run: 8 clients creating as fast as they can.
	Run         PromotionRun     `json:"run"`
	Server      ServerLoad       `json:"server"`
	Controllers []ControllerLoad `json:"controllers"`
	// APIRequests are the requests the API server served for the
	// saturated run, from its first create until the work queues ran empty.
	APIRequests []APIRequests `json:"apiRequests"`
	// Settled is the server's load over that same span: all the work of
	// the saturated run's promotions, sealing included.
	Settled ServerLoad `json:"settled"`
	Targets []Verdict  `json:"targets"`
	// StoppedIn names the phase the time limit ended, and where it stood,
	// when that was before every promotion was done.
	StoppedIn       string   `json:"stoppedIn,omitempty"`
	ServerLogErrors []string `json:"serverLogErrors"`
	// ServerStopLogErrors counts the error lines logged while the server
	// stopped: requests and reconciles cut short.
	ServerStopLogErrors int          `json:"serverStopLogErrors"`
	ServerExits         []ServerExit `json:"serverExits"`
}

// Setup is the preparation, not part of the measurement.
type Setup struct {
	Targets      Throughput `json:"targets"`
	Environments Throughput `json:"environments"`
	// ReconciledSeconds is how long after the last create every
	// Environment had counted its Target and the work queues ran empty.
	ReconciledSeconds float64 `json:"reconciledSeconds"`
	Seconds           float64 `json:"seconds"`
	// Server and Controllers cover the set-up from the first create to the
	// end of the wait.
	Server      ServerLoad       `json:"server"`
	Controllers []ControllerLoad `json:"controllers"`
}

// PromotionRun is the measurement. A promotion is done once a watch showed
// both its decision allow and its DeployTask.
type PromotionRun struct {
	// Creates are the create calls alone.
	Creates  Throughput `json:"creates"`
	Created  int        `json:"created"`
	Decided  int        `json:"decided"`
	WithTask int        `json:"withDeployTask"`
	Done     int        `json:"done"`
	Failed   int        `json:"failed"`
	Failures []string   `json:"failures,omitempty"`
	// Seconds runs from the first create to the last promotion done or
	// failed, or to the time limit (TimedOut).
	Seconds  float64 `json:"seconds"`
	TimedOut bool    `json:"timedOut"`
	// SettledSeconds runs from the first create until every reconciler's
	// work queue ran empty: decisions sealed, environments up to date.
	SettledSeconds float64 `json:"settledSeconds,omitempty"`
	// started is when the first create was made.
	started           time.Time
	PerSecond         float64 `json:"perSecond"`
	PercentOfBaseline float64 `json:"percentOfBaseline"`
	Decision          Latency `json:"decisionLatency"`
	DeployTask        Latency `json:"deployTaskLatency"`
	// EarlyEvents counts watch events that arrived before the create call
	// returned to the client; their latency counts as 0.
	EarlyEvents   int `json:"earlyEvents"`
	WatchRestarts int `json:"watchRestarts"`
	// ServerDecision is stella_promotion_decision_seconds{result="allow"}:
	// from the reconciler first seeing a promotion to its decision.
	ServerDecision HistogramSummary `json:"serverDecision"`
	Progress       []ProgressSample `json:"progress"`
}

// Latency is measured from a promotion's create call returning. The
// percentiles count promotions never seen as slower than any seen: nil
// when a percentile falls among those. When some are missing, SeenP50Ms and
// SeenMaxMs describe the ones seen.
type Latency struct {
	Seen      int      `json:"seen"`
	Missing   int      `json:"missing"`
	P50Ms     *float64 `json:"p50Ms"`
	P99Ms     *float64 `json:"p99Ms"`
	MaxMs     *float64 `json:"maxMs"`
	SeenP50Ms float64  `json:"seenP50Ms,omitempty"`
	SeenMaxMs float64  `json:"seenMaxMs,omitempty"`
}

type ProgressSample struct {
	Seconds  float64 `json:"seconds"`
	Created  int     `json:"created"`
	Decided  int     `json:"decided"`
	WithTask int     `json:"withDeployTask"`
}

// promotionBench holds the state shared by the phases of the promotions
// mode.
type promotionBench struct {
	session
	opts        promotionOptions
	res         PromotionResults
	metricsURL  string
	metricsHTTP *http.Client
}

func runPromotions(ctx context.Context, o promotionOptions) error {
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

	p := &promotionBench{
		session: session{
			stella: o.stella, work: work, dataDir: filepath.Join(work, "data"),
			serverArgs: append([]string{"--metrics-listen", metricsAddr}, noScan...),
		},
		opts:        o,
		metricsURL:  "http://" + metricsAddr + "/metrics",
		metricsHTTP: &http.Client{Timeout: 10 * time.Second},
	}
	if o.cpuProfile != "" {
		p.serverArgs = append(p.serverArgs, "--profiling")
	}
	p.res.Promotions = o.promotions
	p.res.SteadyRate = o.steadyRate
	p.res.Namespace = namespace
	p.res.Machine = describeMachine(ctx, o.stella)
	defer p.stopServer()

	// The phases end finishReserve before the time limit; what they
	// measured by then is reported.
	phaseCtx, cancel := context.WithCancel(ctx)
	if limit, ok := ctx.Deadline(); ok {
		phaseCtx, cancel = context.WithDeadlineCause(ctx, limit.Add(-finishReserve), errTimeLimit)
	}
	defer cancel()
	phases := []struct {
		name string
		run  func(context.Context) error
	}{
		{"start on a fresh data directory", p.start},
		{"create Releases (baseline)", p.measureBaseline},
		{"set up Gates, Targets and Environments", p.setUp},
		{"create Promotions at a steady rate", p.measureSteady},
		{"create Promotions as fast as 8 clients can", p.measurePromotions},
	}
	for _, ph := range phases {
		progress("%s", ph.name)
		err := ph.run(phaseCtx)
		if err == nil {
			continue
		}
		cause := context.Cause(phaseCtx)
		if !errors.Is(cause, errTimeLimit) {
			p.printServerLogTail()
			if cause != nil && !errors.Is(err, cause) {
				err = fmt.Errorf("%w (%v)", err, cause) // such as a signal
			}
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		p.res.StoppedIn = fmt.Sprintf("%s: %v", ph.name, err)
		progress("time limit reached in %s", p.res.StoppedIn)
		break
	}
	p.res.ServerLogErrors = p.serverLogErrors()
	p.stopServer()
	p.res.ServerStopLogErrors = len(p.serverLogErrors()) - len(p.res.ServerLogErrors)
	p.res.Machine.LoadAverageEnd = loadAverage()
	p.res.ServerExits = p.exits
	p.res.evaluateTargets()

	printPromotionResults(os.Stdout, &p.res)
	if o.out != "" {
		return writeJSON(o.out, &p.res)
	}
	return nil
}

// start starts the server and warms it up: each client creates one
// Release, since the first creates after start-up can take seconds.
func (p *promotionBench) start(ctx context.Context) error {
	ready, err := p.startServer(ctx, "fresh")
	if err != nil {
		return err
	}
	p.res.Startup = ready
	if err := p.connect(ctx, namespace, baselineNamespace); err != nil {
		return err
	}
	t, err := createObjects(ctx, p.workers, len(p.workers), 0, func(i int) client.Object {
		return newRelease(baselineNamespace, fmt.Sprintf("warm-up-%d", i))
	}, nil)
	if err != nil {
		return err
	}
	progress("  warm-up: %d Releases, slowest %.0f ms", t.Objects, t.MaxMs)
	return p.waitQuiet(ctx)
}

// measureBaseline creates Releases in a namespace of their own, so that
// the promotions' reconcilers never list them, and waits until the release
// reconciler has caught up.
func (p *promotionBench) measureBaseline(ctx context.Context) error {
	obs, err := p.observe(ctx)
	if err != nil {
		return err
	}
	defer obs.stop() // when the Releases fail before all are Ready
	t, err := createReleases(ctx, p.workers, baselineNamespace, 0, p.opts.baseline)
	if err != nil {
		return err
	}
	p.res.Baseline = t
	progress("  %s: %d Releases in %.1f s, %.0f/s", clients(t.Clients), t.Objects, t.Seconds, t.PerSecond)
	created, want := time.Now(), p.opts.baseline+len(p.workers)
	if err := waitFor(ctx, "Releases Ready", func(ctx context.Context) (bool, string, error) {
		ready, err := countReady(ctx, p.client, baselineNamespace)
		return ready >= want, fmt.Sprintf("%d of %d", ready, want), err
	}); err != nil {
		return err
	}
	p.res.BaselineReady = time.Since(created).Seconds()
	obs.finish(ctx)
	p.res.BaselineServer = obs.server()
	return p.waitQuiet(ctx)
}

// setUp creates the Gates and the Release, then the Targets and last the
// Environments: a Target wakes every Environment of its namespace, so
// created first they wake none. Each Environment still lists every Target
// when it is reconciled, so the set-up grows with the square of n.
func (p *promotionBench) setUp(ctx context.Context) error {
	start := time.Now()
	obs, err := p.observe(ctx)
	if err != nil {
		return err
	}
	defer func() {
		obs.finish(ctx)
		p.res.Setup.Server, p.res.Setup.Controllers = obs.server(), obs.controllers()
	}()
	for _, obj := range []client.Object{newPolicyGate(), newFreezeGate(), newRelease(namespace, releaseName)} {
		if err := p.client.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %s %s: %w", kindOf(obj), obj.GetName(), err)
		}
	}
	n := p.opts.promotions + p.opts.steady
	for _, step := range []struct {
		into   *Throughput
		kind   string
		create func(int) client.Object
	}{
		{&p.res.Setup.Targets, "Targets", newTarget},
		{&p.res.Setup.Environments, "Environments", newEnvironment},
	} {
		t, err := createObjects(ctx, p.workers, n, 0, step.create, nil)
		if err != nil {
			return err
		}
		*step.into = t
		progress("  %s: %d %s in %.1f s, %.0f/s", clients(t.Clients), n, step.kind, t.Seconds, t.PerSecond)
	}
	// Listing every Environment each second would load the server while
	// it works through the set-up; the work queues say when it is done.
	created := time.Now()
	if err := waitFor(ctx, "Gates Ready, freeze window open", p.gatesReady); err != nil {
		return err
	}
	if err := p.waitQuiet(ctx); err != nil {
		return err
	}
	if err := waitFor(ctx, "Environments counting their Target", p.environmentsReady); err != nil {
		return err
	}
	p.res.Setup.ReconciledSeconds = time.Since(created).Seconds()
	p.res.Setup.Seconds = time.Since(start).Seconds()
	progress("  set up in %.1f s, reconciled %.1f s after the last create", p.res.Setup.Seconds, p.res.Setup.ReconciledSeconds)
	return nil
}

func (p *promotionBench) gatesReady(ctx context.Context) (bool, string, error) {
	var list v1alpha1.GateList
	if err := p.client.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return false, "", err
	}
	ready := 0
	for _, g := range list.Items {
		open := g.Spec.FreezeWindow == nil || (g.Status.Closed != nil && !*g.Status.Closed)
		if g.Status.ObservedGeneration == g.Generation && meta.IsStatusConditionTrue(g.Status.Conditions, v1alpha1.ConditionReady) && open {
			ready++
		}
	}
	return ready == 2, fmt.Sprintf("%d of 2", ready), nil
}

func (p *promotionBench) environmentsReady(ctx context.Context) (bool, string, error) {
	ready, cont := 0, ""
	for {
		list := &v1alpha1.EnvironmentList{}
		if err := p.client.List(ctx, list, client.InNamespace(namespace), client.Limit(listPageSize), client.Continue(cont)); err != nil {
			return false, "", err
		}
		for _, e := range list.Items {
			if e.Status.ObservedGeneration == e.Generation && e.Status.Targets.Total == 1 && meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionReady) {
				ready++
			}
		}
		if cont = list.Continue; cont == "" {
			want := p.opts.promotions + p.opts.steady
			return ready >= want, fmt.Sprintf("%d of %d", ready, want), nil
		}
	}
}

// waitQuiet waits until no reconciler has work queued or in hand for
// quietTime.
func (p *promotionBench) waitQuiet(ctx context.Context) error {
	_, err := p.waitQuietSince(ctx)
	return err
}

// waitQuietSince is waitQuiet that also says when the quiet began.
func (p *promotionBench) waitQuietSince(ctx context.Context) (time.Time, error) {
	var quietSince time.Time
	err := waitFor(ctx, "work queues empty", func(ctx context.Context) (bool, string, error) {
		m, err := p.scrape(ctx)
		if err != nil {
			return false, "", err
		}
		queued, working := m.sum("workqueue_depth"), m.sum("controller_runtime_active_workers")
		if queued > 0 || working > 0 {
			quietSince = time.Time{}
		} else if quietSince.IsZero() {
			quietSince = time.Now()
		}
		return !quietSince.IsZero() && time.Since(quietSince) >= quietTime, fmt.Sprintf("%.0f queued, %.0f in hand", queued, working), nil
	})
	return quietSince, err
}

// waitFor polls check until it reports done, saying where it stands every
// progressInterval.
func waitFor(ctx context.Context, what string, check func(context.Context) (bool, string, error)) error {
	start, said := time.Now(), time.Now()
	for {
		done, status, err := check(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if done {
			progress("  %s after %.1f s", what, time.Since(start).Seconds())
			return nil
		}
		if time.Since(said) >= progressInterval {
			progress("  waiting for %s: %s", what, status)
			said = time.Now()
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return fmt.Errorf("%s (%s): %w", what, status, err)
		}
	}
}

// measureSteady creates the steady-rate promotions, into Environments of
// their own, and waits until the follow-up work of the server (evidence,
// environment status) has drained before the saturated run.
func (p *promotionBench) measureSteady(ctx context.Context) error {
	o := p.opts
	if o.steady == 0 {
		return nil
	}
	every := time.Duration(float64(time.Second) / o.steadyRate)
	run, obs, err := p.promote(ctx, o.promotions, o.steady, every)
	p.res.Steady = run
	if err != nil {
		return err
	}
	p.res.SteadyServer = obs.server()
	return p.waitQuiet(ctx)
}

// measurePromotions creates the promotions as fast as 8 clients can, then
// waits for the work they left behind: sealing, events, environments.
func (p *promotionBench) measurePromotions(ctx context.Context) error {
	run, obs, err := p.promote(ctx, 0, p.opts.promotions, 0)
	if err == nil {
		var quiet time.Time
		if quiet, err = p.waitQuietSince(ctx); err == nil {
			run.SettledSeconds = quiet.Sub(run.started).Seconds()
			var settled *observation
			if settled, err = obs.until(ctx); err == nil {
				p.res.Settled = settled.server()
				p.res.APIRequests = settled.apiRequests(p.opts.promotions)
			}
		}
	}
	p.res.Run = run
	if obs != nil {
		p.res.Server, p.res.Controllers = obs.server(), obs.controllers()
		p.res.Run.ServerDecision = obs.histogram("stella_promotion_decision_seconds", "result", string(v1alpha1.DecisionAllow))
		if mem, err := p.rss(); err == nil {
			p.res.Server.RSSMB, p.res.Server.PeakRSSMB = mem.rssMB(), mem.hwmMB()
		}
	}
	return err
}

// promote creates the n promotions numbered from first, every apart (0: as
// fast as the clients can), and follows them until every one is done or
// ctx reaches the time limit. The observation covers the run when there is
// one.
func (p *promotionBench) promote(ctx context.Context, first, n int, every time.Duration) (PromotionRun, *observation, error) {
	var run PromotionRun
	runCtx, failRun := context.WithCancelCause(ctx)
	defer failRun(nil)

	tr := newPromotionTracker(first, n)
	watchCtx, stopWatching := context.WithCancel(runCtx)
	var watches sync.WaitGroup
	defer func() {
		stopWatching()
		watches.Wait()
	}()
	for _, w := range []struct {
		list client.ObjectList
		seen func(client.Object, time.Time)
	}{
		{&v1alpha1.PromotionList{}, tr.promotionSeen},
		{&v1alpha1.DeployTaskList{}, tr.deployTaskSeen},
	} {
		c, err := newClient(ctx, p.restCfg)
		if err != nil {
			return run, nil, err
		}
		rv, err := currentResourceVersion(ctx, c, w.list)
		if err != nil {
			return run, nil, err
		}
		watches.Go(func() {
			if err := tr.follow(watchCtx, c, w.list, rv, w.seen); err != nil {
				failRun(fmt.Errorf("watch %s: %w", kindOf(w.list), err))
			}
		})
	}

	obs, err := p.observe(ctx)
	if err != nil {
		return run, nil, err
	}
	start := time.Now()
	run.started = start
	watches.Go(func() { reportProgress(watchCtx, tr, start) })
	if p.opts.cpuProfile != "" && every == 0 {
		watches.Go(func() { p.profile(watchCtx) })
	}
	creates, err := createObjects(runCtx, p.workers, n, every, func(i int) client.Object { return newPromotion(first + i) }, tr.noteCreated)
	if err == nil {
		run.Creates = creates
		progress("  %s: %d Promotions created in %.1f s, %.0f/s", clients(creates.Clients), n, creates.Seconds, creates.PerSecond)
		err = tr.wait(runCtx)
	}
	end := time.Now()
	timedOut := err != nil && errors.Is(context.Cause(ctx), errTimeLimit)
	if err != nil && !timedOut {
		if cause := context.Cause(runCtx); cause != nil {
			err = cause // a failed watch stops the creates too
		}
		return run, nil, err
	}
	stopWatching()
	watches.Wait()
	obs.finish(ctx)

	p.summarize(&run, tr, n, start, end, timedOut)
	if timedOut {
		return run, obs, fmt.Errorf("%d of %d promotions done: %w", run.Done, n, context.Cause(ctx))
	}
	return run, obs, nil
}

// steadyName starts the names of the steady run's verdicts.
const steadyName = "steady rate: "

// errTimeLimit ends the phases when the run's time limit is near.
var errTimeLimit = errors.New("time limit of the run reached")

// reportProgress says where the promotions stand every progressInterval
// until ctx ends.
// profile fetches a CPU profile of the server from its API server's
// /debug/pprof, which --profiling turned on.
func (p *promotionBench) profile(ctx context.Context) {
	data, err := p.getFromAPIServer(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", profileSeconds))
	if err == nil {
		err = os.WriteFile(p.opts.cpuProfile, data, 0o644)
	}
	if err != nil {
		progress("  cpu profile: %v", err)
		return
	}
	progress("  cpu profile of %d s written to %s", profileSeconds, p.opts.cpuProfile)
}

// getFromAPIServer reads path from the API server with the admin
// credential.
func (p *promotionBench) getFromAPIServer(ctx context.Context, path string) ([]byte, error) {
	hc, err := rest.HTTPClientFor(p.restCfg)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.restCfg.Host+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %.200s", path, resp.Status, data)
	}
	return data, err
}

func reportProgress(ctx context.Context, tr *promotionTracker, start time.Time) {
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s := tr.sample(time.Since(start))
			progress("  after %3.0f s: %d created, %d decided, %d with a DeployTask", s.Seconds, s.Created, s.Decided, s.WithTask)
		}
	}
}

func (p *promotionBench) summarize(r *PromotionRun, tr *promotionTracker, n int, start, end time.Time, timedOut bool) {
	r.Progress = tr.progressSamples()
	r.Created, r.Decided, r.WithTask, r.Done = tr.counts()
	r.Failed, r.Failures = tr.failureList(maxFailures)
	r.TimedOut = timedOut
	r.Seconds = end.Sub(start).Seconds()
	if !r.TimedOut {
		r.Seconds = tr.last.Sub(start).Seconds()
	}
	r.PerSecond = float64(r.Done) / r.Seconds
	if p.res.Baseline.PerSecond > 0 {
		r.PercentOfBaseline = 100 * r.PerSecond / p.res.Baseline.PerSecond
	}
	var early int
	r.Decision, early = tr.latency(tr.decided)
	r.EarlyEvents += early
	r.DeployTask, early = tr.latency(tr.tasked)
	r.EarlyEvents += early
	r.WatchRestarts = int(tr.restarts.Load())
	progress("  %d of %d promotions done in %.1f s, %.0f/s (%.0f%% of the baseline)", r.Done, n, r.Seconds, r.PerSecond, r.PercentOfBaseline)
}

func (r *PromotionResults) evaluateTargets() {
	run := &r.Run
	add := func(v Verdict, measured bool) {
		if !measured {
			v.Measured, v.Pass = -1, false
		}
		r.Targets = append(r.Targets, v)
	}
	add(newVerdict("share of the raw create throughput", run.PercentOfBaseline, "≥", goalPercentOfBaseline, "%"), run.Seconds > 0)
	goal := goalSecondsFor10000 * float64(r.Promotions) / 10000
	add(newVerdict(r.timeGoalName(), run.Seconds, "<", goal, "s"), run.Done == r.Promotions)
	add(newVerdict("decision latency p50", deref(run.Decision.P50Ms), "≤", goalDecisionP50Ms, "ms"), run.Decision.P50Ms != nil)
	add(newVerdict("decision latency p99", deref(run.Decision.P99Ms), "≤", goalDecisionP99Ms, "ms"), run.Decision.P99Ms != nil)
	steady := r.Steady.Decision
	add(newVerdict(steadyName+"decision latency p50", deref(steady.P50Ms), "≤", goalDecisionP50Ms, "ms"), steady.P50Ms != nil)
	add(newVerdict(steadyName+"decision latency p99", deref(steady.P99Ms), "≤", goalDecisionP99Ms, "ms"), steady.P99Ms != nil)
}

func (r *PromotionResults) timeGoalName() string {
	if r.Promotions == 10000 {
		return "time for 10000 promotions"
	}
	return fmt.Sprintf("time for %d promotions (goal scaled from 10000 in 100 s)", r.Promotions)
}

func (r *PromotionResults) verdict(name string) string {
	for _, v := range r.Targets {
		if v.Name == name {
			return v.column()
		}
	}
	return "\t"
}

func deref(f *float64) float64 {
	if f == nil {
		return -1
	}
	return *f
}

func environmentName(i int) string { return fmt.Sprintf("env-%06d", i) }
func targetName(i int) string      { return fmt.Sprintf("target-%06d", i) }
func promotionName(i int) string   { return fmt.Sprintf("promo-%06d", i) }

func newPolicyGate() *v1alpha1.Gate {
	return &v1alpha1.Gate{
		ObjectMeta: metav1.ObjectMeta{Name: policyGateName, Namespace: namespace},
		Spec:       v1alpha1.GateSpec{Policy: &v1alpha1.PolicyGate{Source: policySource}},
	}
}

// newFreezeGate freezes a day in the past, so the gate is evaluated and
// open.
func newFreezeGate() *v1alpha1.Gate {
	day := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	return &v1alpha1.Gate{
		ObjectMeta: metav1.ObjectMeta{Name: freezeGateName, Namespace: namespace},
		Spec: v1alpha1.GateSpec{FreezeWindow: &v1alpha1.FreezeWindowGate{Windows: []v1alpha1.TimeWindow{{
			Start: metav1.NewTime(day), End: metav1.NewTime(day.AddDate(0, 0, 1)), Reason: "benchmark: a window in the past",
		}}}},
	}
}

// newTarget makes target i, selected only by environment i.
func newTarget(i int) client.Object {
	return &v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Name: targetName(i), Namespace: namespace, Labels: map[string]string{environmentLabel: environmentName(i)}},
		Spec:       v1alpha1.TargetSpec{Type: v1alpha1.TargetTypeDocker, Agent: agentName},
	}
}

func newEnvironment(i int) client.Object {
	return &v1alpha1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: environmentName(i), Namespace: namespace},
		Spec: v1alpha1.EnvironmentSpec{
			Gates:          []v1alpha1.LocalObjectReference{{Name: policyGateName}, {Name: freezeGateName}},
			TargetSelector: &metav1.LabelSelector{MatchLabels: map[string]string{environmentLabel: environmentName(i)}},
			Strategy:       &v1alpha1.DeployStrategy{Type: v1alpha1.StrategyAllAtOnce},
		},
	}
}

func newPromotion(i int) client.Object {
	return &v1alpha1.Promotion{
		ObjectMeta: metav1.ObjectMeta{Name: promotionName(i), Namespace: namespace},
		Spec:       v1alpha1.PromotionSpec{Release: releaseName, Environment: environmentName(i), Reason: "benchmark"},
	}
}

// currentResourceVersion is where a watch starts that sees every change
// from now on, and nothing from before.
func currentResourceVersion(ctx context.Context, c client.Reader, list client.ObjectList) (string, error) {
	list = list.DeepCopyObject().(client.ObjectList)
	if err := c.List(ctx, list, client.InNamespace(namespace), client.Limit(1)); err != nil {
		return "", err
	}
	return list.GetResourceVersion(), nil
}

// latencyOf summarises the sorted latencies seen out of total.
func latencyOf(sorted []time.Duration, total int) Latency {
	l := Latency{Seen: len(sorted), Missing: total - len(sorted)}
	at := func(q float64) *float64 {
		i := int(q * float64(total-1))
		if i >= len(sorted) {
			return nil
		}
		ms := milliseconds(sorted[i])
		return &ms
	}
	l.P50Ms, l.P99Ms, l.MaxMs = at(0.50), at(0.99), at(1)
	if l.Missing > 0 && l.Seen > 0 {
		l.SeenP50Ms, l.SeenMaxMs = milliseconds(percentile(sorted, 0.50)), milliseconds(sorted[len(sorted)-1])
	}
	return l
}
