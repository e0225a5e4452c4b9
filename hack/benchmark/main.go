// Command benchmark measures a Stella control plane started from its binary:
// start-up time, memory, Release create throughput and list latency, or, with
// the promotions argument, promotions end to end (see promotions.go).
// hack/bench (make bench) runs it. The numbers are measurements, not tests: a
// missed target is reported and never fails the run.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stella-ops/stella/apis/v1alpha1"
	stellascheme "github.com/stella-ops/stella/internal/scheme"
)

const (
	namespace         = "bench"
	concurrentClients = 8
	listRuns          = 5
	listPageSize      = 500
	clientQPS         = 5000
	clientBurst       = 10000

	readyLine        = "Stella control plane is ready"
	readyTimeout     = 2 * time.Minute
	readyzInterval   = 10 * time.Millisecond
	stopTimeout      = 30 * time.Second
	settleTime       = 5 * time.Second
	reconcileTimeout = 5 * time.Minute
	overallTimeout   = 30 * time.Minute

	// Targets are printed next to the measurements.
	targetReadySeconds = 3.0
	targetIdleRSSMB    = 300.0
	targetListSeconds  = 1.0
)

type options struct {
	objects    int
	sequential int
	stella     string
	out        string
}

func main() {
	// The clients log nothing the benchmark needs; without a logger,
	// controller-runtime complains about it once it is 30 s old.
	log.SetLogger(logr.Discard())
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == promotionsMode:
		o := parsePromotionFlags(os.Args[2:])
		err = runWithSignals(o.timeout, func(ctx context.Context) error { return runPromotions(ctx, o) })
	case len(os.Args) > 1 && os.Args[1] == agentsMode:
		o := parseAgentFlags(os.Args[2:])
		err = runWithSignals(o.timeout, func(ctx context.Context) error { return runAgents(ctx, o) })
	case len(os.Args) > 1 && os.Args[1] == deploysMode:
		o := parseDeployFlags(os.Args[2:])
		err = runWithSignals(overallTimeout, func(ctx context.Context) error { return runDeploys(ctx, o) })
	default:
		o := parseFlags()
		err = runWithSignals(overallTimeout, func(ctx context.Context) error { return run(ctx, o) })
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmark:", err)
		os.Exit(1)
	}
}

// runWithSignals bounds the whole run in time and turns Ctrl-C into a
// cancelled context, so that run's cleanup (stop the server, remove the
// temporary directory) happens on every way out.
func runWithSignals(timeout time.Duration, run func(context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return run(ctx)
}

func parseFlags() options {
	var o options
	flag.IntVar(&o.objects, "n", 10000, "Releases in the namespace for the list and memory measurements")
	flag.IntVar(&o.sequential, "seq", 2000, "Releases created by each create-throughput run (1 client, then 8 clients)")
	flag.StringVar(&o.stella, "stella", "bin/stella", "stella binary to benchmark")
	flag.StringVar(&o.out, "o", "", "also write the results as JSON to this file")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: benchmark [flags]\n       benchmark %s [flags]  (-h lists its flags)\n", promotionsMode)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 || o.objects < 1 || o.sequential < 1 {
		flag.Usage()
		os.Exit(2)
	}
	return o
}

func run(ctx context.Context, o options) error {
	if _, err := os.Stat(o.stella); err != nil {
		return fmt.Errorf("%w (run make build first)", err)
	}
	work, err := os.MkdirTemp("", "stella-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	b := &bench{session: session{stella: o.stella, work: work, dataDir: filepath.Join(work, "data"), serverArgs: noScan}, opts: o}
	b.res.Objects = o.objects
	b.res.Namespace = namespace
	b.res.Machine = describeMachine(ctx, o.stella)
	defer b.stopServer()

	phases := []struct {
		name string
		run  func(context.Context) error
	}{
		{"start on a fresh data directory", b.measureFreshStart},
		{"restart on the same data directory", b.measureRestart},
		{"create Releases", b.measureCreates},
		{"wait for the reconciler", b.measureReconciled},
		{"list Releases", b.measureLists},
		{"restart with the Releases stored", b.measureLoadedRestart},
	}
	for _, p := range phases {
		progress("%s", p.name)
		if err := p.run(ctx); err != nil {
			b.printServerLogTail()
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	b.res.Machine.LoadAverageEnd = loadAverage()
	b.res.ServerLogErrors = b.serverLogErrors()
	b.res.ServerExits = b.exits
	b.res.evaluateTargets()

	printResults(os.Stdout, &b.res)
	if o.out != "" {
		return writeJSON(o.out, &b.res)
	}
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// sleep waits for d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Results is everything measured; it is printed as a table and written as JSON.
type Results struct {
	Machine         Machine       `json:"machine"`
	Objects         int           `json:"objects"`
	Namespace       string        `json:"namespace"`
	Startup         Startup       `json:"startup"`
	MemoryMB        Memory        `json:"memoryMB"`
	Creates         Creates       `json:"creates"`
	ReconcileLag    float64       `json:"reconciledSecondsAfterFill"`
	Lists           []ListLatency `json:"lists"`
	Targets         []Verdict     `json:"targets"`
	ServerLogErrors []string      `json:"serverLogErrors"`
	ServerExits     []ServerExit  `json:"serverExits"`
}

type Machine struct {
	NProc            int    `json:"nproc"`
	CPU              string `json:"cpu"`
	GoVersion        string `json:"goVersion"`
	Platform         string `json:"platform"`
	Stella           string `json:"stella"`
	LoadAverageStart string `json:"loadAverageStart"`
	LoadAverageEnd   string `json:"loadAverageEnd"`
}

// Ready is how long a server took from process start.
type Ready struct {
	// LogLineSeconds is when the ready line appeared on stderr.
	LogLineSeconds float64 `json:"logLineSeconds"`
	// Seconds is when, after that line, /readyz first answered 200.
	Seconds float64 `json:"seconds"`
}

type Startup struct {
	Fresh             Ready   `json:"fresh"`
	Restart           Ready   `json:"restart"`
	RestartLoaded     Ready   `json:"restartLoaded"`
	StopIdleSeconds   float64 `json:"stopIdleSeconds"`
	StopLoadedSeconds float64 `json:"stopLoadedSeconds"`
}

// Memory is the server's resident set size in MB (10^6 bytes).
type Memory struct {
	Idle       float64 `json:"idle"`
	Loaded     float64 `json:"loaded"`
	AfterLists float64 `json:"afterLists"`
	Peak       float64 `json:"peak"`
}

type Creates struct {
	Sequential Throughput `json:"sequential"`
	Concurrent Throughput `json:"concurrent"`
	Fill       Throughput `json:"fill"`
}

type Throughput struct {
	Clients   int     `json:"clients"`
	Objects   int     `json:"objects"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"perSecond"`
	P50Ms     float64 `json:"p50Ms"`
	P99Ms     float64 `json:"p99Ms"`
	MaxMs     float64 `json:"maxMs"`
}

type ListLatency struct {
	Name          string  `json:"name"`
	PageSize      int     `json:"pageSize"`
	Runs          int     `json:"runs"`
	Items         int     `json:"items"`
	JSONBytes     int64   `json:"jsonBytes,omitempty"`
	MedianSeconds float64 `json:"medianSeconds"`
	MaxSeconds    float64 `json:"maxSeconds"`
}

// Verdict compares a measurement with its target: Op says which way, ≤ or
// < for times and sizes, ≥ for rates.
type Verdict struct {
	Name     string  `json:"name"`
	Measured float64 `json:"measured"`
	Op       string  `json:"op"`
	Target   float64 `json:"target"`
	Unit     string  `json:"unit"`
	Pass     bool    `json:"pass"`
}

func newVerdict(name string, measured float64, op string, target float64, unit string) Verdict {
	pass := false
	switch op {
	case "≤":
		pass = measured <= target
	case "<":
		pass = measured < target
	case "≥":
		pass = measured >= target
	}
	return Verdict{Name: name, Measured: measured, Op: op, Target: target, Unit: unit, Pass: pass}
}

// column is the target and PASS or MISS, as two table cells.
func (v Verdict) column() string {
	word := "MISS"
	if v.Pass {
		word = "PASS"
	}
	return fmt.Sprintf("%s %g %s\t%s", v.Op, v.Target, v.Unit, word)
}

type ServerExit struct {
	Name  string `json:"name"`
	Error string `json:"error,omitempty"`
}

func (r *Results) evaluateTargets() {
	add := func(name string, measured, target float64, unit string) {
		r.Targets = append(r.Targets, newVerdict(name, measured, "≤", target, unit))
	}
	add("ready, fresh data dir", r.Startup.Fresh.Seconds, targetReadySeconds, "s")
	add("ready, restart", r.Startup.Restart.Seconds, targetReadySeconds, "s")
	add(fmt.Sprintf("ready, restart with %d Releases", r.Objects), r.Startup.RestartLoaded.Seconds, targetReadySeconds, "s")
	add("idle RSS", r.MemoryMB.Idle, targetIdleRSSMB, "MB")
	for _, l := range r.Lists {
		add(l.Name, l.MedianSeconds, targetListSeconds, "s")
	}
}

func (r *Results) verdict(name string) string {
	for _, v := range r.Targets {
		if v.Name == name {
			return v.column()
		}
	}
	return "\t"
}

// session is what both modes share: the stella server on a temporary data
// directory, the servers started so far and the clients talking to it.
type session struct {
	stella string
	// serverArgs are added to stella serve's own flags.
	serverArgs []string
	work       string
	dataDir    string

	srv     *server
	servers []*server
	exits   []ServerExit
	client  client.WithWatch
	workers []client.Client
	restCfg *rest.Config
}

// bench holds the state shared by the phases of the default mode.
type bench struct {
	session
	opts     options
	res      Results
	fillDone time.Time
}

func (b *session) kubeconfig() string { return filepath.Join(b.dataDir, "admin.kubeconfig") }

// startServer starts stella on the data directory and waits until it is ready.
func (b *session) startServer(ctx context.Context, name string) (Ready, error) {
	srv, err := startServer(b.stella, b.dataDir, filepath.Join(b.work, name+".log"), name, b.serverArgs...)
	if err != nil {
		return Ready{}, err
	}
	b.srv = srv
	b.servers = append(b.servers, srv)
	ready, err := srv.waitReady(ctx, b.kubeconfig())
	if err != nil {
		return Ready{}, err
	}
	progress("  %s: ready after %.2f s", name, ready.Seconds)
	return ready, nil
}

// stopServer stops the current server, if any, and says how long it took.
func (b *session) stopServer() float64 {
	if b.srv == nil {
		return 0
	}
	took, err := b.srv.stop()
	exit := ServerExit{Name: b.srv.name}
	if err != nil {
		exit.Error = err.Error()
		progress("  %s: %v", b.srv.name, err)
	}
	b.exits = append(b.exits, exit)
	b.srv = nil
	return took.Seconds()
}

func (b *session) rss() (procMemory, error) {
	return readProcMemory(b.srv.cmd.Process.Pid)
}

func (b *bench) measureFreshStart(ctx context.Context) error {
	ready, err := b.startServer(ctx, "fresh")
	if err != nil {
		return err
	}
	b.res.Startup.Fresh = ready
	if err := sleep(ctx, settleTime); err != nil {
		return err
	}
	mem, err := b.rss()
	if err != nil {
		return err
	}
	b.res.MemoryMB.Idle = mem.rssMB()
	b.res.Startup.StopIdleSeconds = b.stopServer()
	return nil
}

func (b *bench) measureRestart(ctx context.Context) error {
	ready, err := b.startServer(ctx, "restart")
	if err != nil {
		return err
	}
	b.res.Startup.Restart = ready
	return b.connect(ctx, namespace)
}

// connect makes the clients for the load phases and the namespaces they use.
func (b *session) connect(ctx context.Context, namespaces ...string) error {
	cfg, err := loadConfig(b.kubeconfig())
	if err != nil {
		return err
	}
	b.restCfg = cfg
	if b.client, err = newClient(ctx, cfg); err != nil {
		return err
	}
	for range concurrentClients {
		c, err := newClient(ctx, cfg)
		if err != nil {
			return err
		}
		b.workers = append(b.workers, c)
	}
	for _, name := range namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := b.client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
	}
	return nil
}

// measureCreates runs the sequential and the concurrent create runs, then
// fills the namespace up to the wanted count. The runs count towards the
// fill, so a small -n shortens them.
func (b *bench) measureCreates(ctx context.Context) error {
	seq := min(b.opts.sequential, b.opts.objects/2)
	conc := min(b.opts.sequential, b.opts.objects-seq)
	fill := b.opts.objects - seq - conc
	runs := []struct {
		into    *Throughput
		clients []client.Client
		count   int
	}{
		{&b.res.Creates.Sequential, []client.Client{b.client}, seq},
		{&b.res.Creates.Concurrent, b.workers, conc},
		{&b.res.Creates.Fill, b.workers, fill},
	}
	next := 0
	for _, r := range runs {
		if r.count == 0 {
			continue
		}
		t, err := createReleases(ctx, r.clients, namespace, next, r.count)
		if err != nil {
			return err
		}
		*r.into = t
		next += r.count
		progress("  %s: %d Releases in %.1f s, %.0f/s", clients(t.Clients), t.Objects, t.Seconds, t.PerSecond)
	}
	b.fillDone = time.Now()
	return nil
}

// measureReconciled waits until the reconciler has caught up with the fill
// (its status writes would otherwise disturb the list runs), lets the
// server settle and measures its memory.
func (b *bench) measureReconciled(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, reconcileTimeout)
	defer cancel()
	for {
		ready, err := countReady(ctx, b.client, namespace)
		if err != nil {
			return err
		}
		if ready >= b.opts.objects {
			break
		}
		if err := sleep(ctx, time.Second); err != nil {
			return fmt.Errorf("%d of %d Releases Ready: %w", ready, b.opts.objects, err)
		}
	}
	b.res.ReconcileLag = time.Since(b.fillDone).Seconds()
	progress("  all %d Releases Ready %.1f s after the fill", b.opts.objects, b.res.ReconcileLag)
	if err := sleep(ctx, settleTime); err != nil {
		return err
	}
	mem, err := b.rss()
	if err != nil {
		return err
	}
	b.res.MemoryMB.Loaded = mem.rssMB()
	return nil
}

func (b *bench) measureLists(ctx context.Context) error {
	hc, err := rest.HTTPClientFor(b.restCfg)
	if err != nil {
		return err
	}
	host := b.restCfg.Host
	rows := []struct {
		name     string
		pageSize int
		list     lister
	}{
		{"controller-runtime List, one page", 0, clientList(b.client, 0)},
		{"controller-runtime List, pages of 500", listPageSize, clientList(b.client, listPageSize)},
		{"REST GET JSON (gzip), one page", 0, restList(hc, host, 0, "")},
		{"REST GET JSON (gzip), pages of 500", listPageSize, restList(hc, host, listPageSize, "")},
		{"REST GET JSON (identity), one page", 0, restList(hc, host, 0, "identity")},
	}
	for _, r := range rows {
		l, err := measureList(ctx, r.name, r.list, b.opts.objects)
		if err != nil {
			return err
		}
		l.PageSize = r.pageSize
		b.res.Lists = append(b.res.Lists, l)
		progress("  %s: median %.3f s, max %.3f s", l.Name, l.MedianSeconds, l.MaxSeconds)
	}
	mem, err := b.rss()
	if err != nil {
		return err
	}
	b.res.MemoryMB.AfterLists = mem.rssMB()
	b.res.MemoryMB.Peak = mem.hwmMB()
	return nil
}

func (b *bench) measureLoadedRestart(ctx context.Context) error {
	b.res.Startup.StopLoadedSeconds = b.stopServer()
	ready, err := b.startServer(ctx, "restart-loaded")
	if err != nil {
		return err
	}
	b.res.Startup.RestartLoaded = ready
	b.stopServer()
	return nil
}

func (b *session) serverLogErrors() []string {
	var errs []string
	for _, s := range b.servers {
		for _, line := range s.log.errorLines() {
			errs = append(errs, s.name+": "+line)
		}
	}
	return errs
}

func (b *session) printServerLogTail() {
	if b.srv == nil && len(b.servers) == 0 {
		return
	}
	s := b.srv
	if s == nil {
		s = b.servers[len(b.servers)-1]
	}
	fmt.Fprintf(os.Stderr, "--- last lines of the %s server's log:\n%s\n---\n", s.name, strings.Join(s.log.tailLines(), "\n"))
}

// server is a running `stella serve` process.
type server struct {
	name     string
	cmd      *exec.Cmd
	log      *serverLog
	started  time.Time
	exited   chan struct{}
	waitErr  error
	stopOnce sync.Once
	stopTook time.Duration
	stopErr  error
}

// noScan keeps the scanner out of the control-plane measurements: most of
// their release images do not exist, and scanning is measured on its own
// (go test -bench . ./internal/scan).
var noScan = []string{"--scan=false"}

func startServer(bin, dataDir, logPath, name string, args ...string) (*server, error) {
	listen, err := freeLoopbackAddress()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	s := &server{name: name, log: newServerLog(logFile), exited: make(chan struct{})}
	s.cmd = exec.Command(bin, append([]string{"serve", "--data-dir", dataDir, "--listen", listen}, args...)...)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	// Its own process group keeps a terminal's Ctrl-C away from the server,
	// so the benchmark decides how it stops; Pdeathsig kills it should the
	// benchmark itself be killed.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	s.started = time.Now()
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	return s, nil
}

func freeLoopbackAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitReady returns once the server has logged its ready line and /readyz
// answers 200 to the admin credential.
func (s *server) waitReady(ctx context.Context, kubeconfig string) (Ready, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	select {
	case <-s.log.ready:
	case <-s.exited:
		return Ready{}, fmt.Errorf("stella exited before it was ready: %v", s.waitErr)
	case <-ctx.Done():
		return Ready{}, fmt.Errorf("no ready line: %w", ctx.Err())
	}
	cfg, err := loadConfig(kubeconfig)
	if err != nil {
		return Ready{}, err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return Ready{}, err
	}
	for !readyzOK(ctx, hc, cfg.Host) {
		if err := sleep(ctx, readyzInterval); err != nil {
			return Ready{}, fmt.Errorf("/readyz never answered 200: %w", err)
		}
	}
	return Ready{
		LogLineSeconds: s.log.readyAt.Sub(s.started).Seconds(),
		Seconds:        time.Since(s.started).Seconds(),
	}, nil
}

func readyzOK(ctx context.Context, hc *http.Client, host string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, host+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// stop sends SIGTERM and waits for the process to exit, killing it after
// stopTimeout. It is safe to call more than once.
func (s *server) stop() (time.Duration, error) {
	s.stopOnce.Do(func() {
		start := time.Now()
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
			if s.waitErr != nil {
				s.stopErr = fmt.Errorf("exited with %w after SIGTERM", s.waitErr)
			}
		case <-time.After(stopTimeout):
			_ = s.cmd.Process.Kill()
			<-s.exited
			s.stopErr = fmt.Errorf("still running %s after SIGTERM: killed", stopTimeout)
		}
		s.stopTook = time.Since(start)
	})
	return s.stopTook, s.stopErr
}

// serverLog copies the server's output to a file, signals the ready line
// and keeps the error lines and the last lines for the report.
type serverLog struct {
	mu      sync.Mutex
	out     io.Writer
	partial []byte
	tail    []string
	errors  []string
	ready   chan struct{}
	readyAt time.Time
}

const (
	logTailLines  = 30
	logErrorLines = 50
)

// klogError matches klog's error header, such as "E1128 18:29:15.123456".
var klogError = regexp.MustCompile(`^E\d{4} `)

func newServerLog(out io.Writer) *serverLog {
	return &serverLog{out: out, ready: make(chan struct{})}
}

func (l *serverLog) Write(p []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.out.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.addLine(string(l.partial[:i]), now)
		l.partial = l.partial[i+1:]
	}
}

func (l *serverLog) addLine(line string, at time.Time) {
	if strings.Contains(line, readyLine) && l.readyAt.IsZero() {
		l.readyAt = at
		close(l.ready)
	}
	if (klogError.MatchString(line) || strings.HasPrefix(line, "error:")) && len(l.errors) < logErrorLines {
		l.errors = append(l.errors, line)
	}
	l.tail = append(l.tail, line)
	if len(l.tail) > logTailLines {
		l.tail = l.tail[1:]
	}
}

func (l *serverLog) errorLines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errors)
}

func (l *serverLog) tailLines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.tail)
}

type procMemory struct{ rssKB, hwmKB int64 }

func (m procMemory) rssMB() float64 { return float64(m.rssKB) * 1024 / 1e6 }
func (m procMemory) hwmMB() float64 { return float64(m.hwmKB) * 1024 / 1e6 }

// readProcMemory reads VmRSS and VmHWM (peak RSS) from /proc/PID/status.
func readProcMemory(pid int) (procMemory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMemory{}, err
	}
	defer f.Close()
	var m procMemory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, _ := strings.Cut(sc.Text(), ":")
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch {
		case key == "VmRSS" && err == nil:
			m.rssKB = kb
		case key == "VmHWM" && err == nil:
			m.hwmKB = kb
		}
	}
	if m.rssKB == 0 {
		return m, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, sc.Err()
}

// loadConfig reads the admin kubeconfig with client-side throttling raised
// far enough that it does not limit the measurements.
func loadConfig(kubeconfig string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", kubeconfig, err)
	}
	cfg.QPS = clientQPS
	cfg.Burst = clientBurst
	cfg.UserAgent = "stella-benchmark"
	return cfg, nil
}

var scheme = stellascheme.New()

// newClient returns an uncached controller-runtime client (what a manager's
// APIReader is) with its own connection, warmed up by one small list so
// that discovery and the TLS handshake stay out of the measurements.
func newClient(ctx context.Context, cfg *rest.Config) (client.WithWatch, error) {
	cfg = rest.CopyConfig(cfg)
	// client-go shares one cached transport, hence one HTTP/2 connection,
	// between configs it cannot tell apart; a Proxy func opts out of that
	// cache. It never proxies: everything stays on loopback.
	cfg.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	if err := c.List(ctx, &v1alpha1.ReleaseList{}, client.InNamespace(namespace), client.Limit(1)); err != nil {
		return nil, fmt.Errorf("warm up client: %w", err)
	}
	return c, nil
}

// kindOf names the kind of obj, or of the items of a list, for messages.
func kindOf(obj apiruntime.Object) string {
	gvks, _, err := scheme.ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return fmt.Sprintf("%T", obj)
	}
	return strings.TrimSuffix(gvks[0].Kind, "List")
}

func newRelease(ns, name string) *v1alpha1.Release {
	digest := sha256.Sum256([]byte(name))
	return &v1alpha1.Release{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.ReleaseSpec{
			Version: "1.0.0",
			Components: []v1alpha1.ReleaseComponent{{
				Name:  "api",
				Image: v1alpha1.ImageDigestRef("127.0.0.1:5000/shop/api@sha256:" + hex.EncodeToString(digest[:])),
			}},
		},
	}
}

// createReleases creates count Releases in ns numbered from first.
func createReleases(ctx context.Context, clients []client.Client, ns string, first, count int) (Throughput, error) {
	return createObjects(ctx, clients, count, 0, func(i int) client.Object {
		return newRelease(ns, fmt.Sprintf("bench-%06d", first+i))
	}, nil)
}

// createObjects creates the count objects newObject makes from 0 to
// count-1, the clients taking the next number as each finishes: as fast as
// they can, or, with every > 0, object i no sooner than i × every after the
// start, which is a steady rate while the server keeps up. created, when
// set, hears of each object as its create returns. The first error stops
// the run.
func createObjects(ctx context.Context, clients []client.Client, count int, every time.Duration, newObject func(int) client.Object, created func(i int, at time.Time)) (Throughput, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	latencies := make([][]time.Duration, len(clients))
	var wg sync.WaitGroup
	start := time.Now()
	for w, c := range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= count {
					return
				}
				if every > 0 {
					if err := sleep(ctx, time.Until(start.Add(time.Duration(i)*every))); err != nil {
						return
					}
				}
				obj := newObject(i)
				t := time.Now()
				if err := c.Create(ctx, obj); err != nil {
					cancel(fmt.Errorf("create %s %s: %w", kindOf(obj), obj.GetName(), err))
					return
				}
				done := time.Now()
				latencies[w] = append(latencies[w], done.Sub(t))
				if created != nil {
					created(i, done)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return Throughput{}, err
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	return Throughput{
		Clients:   len(clients),
		Objects:   count,
		Seconds:   elapsed.Seconds(),
		PerSecond: float64(count) / elapsed.Seconds(),
		P50Ms:     milliseconds(percentile(all, 0.50)),
		P99Ms:     milliseconds(percentile(all, 0.99)),
		MaxMs:     milliseconds(all[len(all)-1]),
	}, nil
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	return sorted[int(q*float64(len(sorted)-1))]
}

func milliseconds(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// countReady counts the Releases of ns whose Ready condition is true for
// their current generation, listing in pages to keep the polling light.
func countReady(ctx context.Context, c client.Reader, ns string) (int, error) {
	ready := 0
	cont := ""
	for {
		list := &v1alpha1.ReleaseList{}
		if err := c.List(ctx, list, client.InNamespace(ns), client.Limit(listPageSize), client.Continue(cont)); err != nil {
			return 0, err
		}
		for _, rel := range list.Items {
			if rel.Status.ObservedGeneration == rel.Generation && meta.IsStatusConditionTrue(rel.Status.Conditions, v1alpha1.ConditionReady) {
				ready++
			}
		}
		if cont = list.Continue; cont == "" {
			return ready, nil
		}
	}
}

type listStats struct {
	items   int
	bytes   int64
	elapsed time.Duration
}

// lister lists every Release in the namespace once, timing itself.
type lister func(context.Context) (listStats, error)

func measureList(ctx context.Context, name string, list lister, want int) (ListLatency, error) {
	var times []time.Duration
	var last listStats
	for range listRuns {
		s, err := list(ctx)
		if err != nil {
			return ListLatency{}, fmt.Errorf("%s: %w", name, err)
		}
		if s.items != want {
			return ListLatency{}, fmt.Errorf("%s: listed %d Releases, want %d", name, s.items, want)
		}
		times = append(times, s.elapsed)
		last = s
	}
	slices.Sort(times)
	return ListLatency{
		Name:          name,
		Runs:          listRuns,
		Items:         last.items,
		JSONBytes:     last.bytes,
		MedianSeconds: times[len(times)/2].Seconds(),
		MaxSeconds:    times[len(times)-1].Seconds(),
	}, nil
}

// clientList lists with the controller-runtime client, decoding into typed
// Releases; pageSize 0 asks for everything in one response.
func clientList(c client.Reader, pageSize int) lister {
	return func(ctx context.Context) (listStats, error) {
		var s listStats
		start := time.Now()
		cont := ""
		for {
			opts := []client.ListOption{client.InNamespace(namespace)}
			if pageSize > 0 {
				opts = append(opts, client.Limit(int64(pageSize)), client.Continue(cont))
			}
			list := &v1alpha1.ReleaseList{}
			if err := c.List(ctx, list, opts...); err != nil {
				return s, err
			}
			s.items += len(list.Items)
			if cont = list.Continue; cont == "" {
				s.elapsed = time.Since(start)
				return s, nil
			}
		}
	}
}

// restList GETs the Releases as JSON and times only the requests and the
// reading of the bodies, not the decoding needed to follow the pages.
// encoding "" lets the transport ask for gzip, as every Go client does.
func restList(hc *http.Client, host string, pageSize int, encoding string) lister {
	return func(ctx context.Context) (listStats, error) {
		var s listStats
		cont := ""
		for {
			body, took, err := getJSON(ctx, hc, releasesURL(host, pageSize, cont), encoding)
			if err != nil {
				return s, err
			}
			s.elapsed += took
			s.bytes += int64(len(body))
			var page struct {
				Metadata struct {
					Continue string `json:"continue"`
				} `json:"metadata"`
				Items []json.RawMessage `json:"items"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				return s, fmt.Errorf("decode list: %w", err)
			}
			s.items += len(page.Items)
			if cont = page.Metadata.Continue; cont == "" {
				return s, nil
			}
		}
	}
}

func releasesURL(host string, pageSize int, cont string) string {
	u := fmt.Sprintf("%s/apis/%s/namespaces/%s/releases", host, v1alpha1.GroupVersion.String(), namespace)
	if pageSize == 0 {
		return u
	}
	q := url.Values{"limit": {strconv.Itoa(pageSize)}}
	if cont != "" {
		q.Set("continue", cont)
	}
	return u + "?" + q.Encode()
}

func getJSON(ctx context.Context, hc *http.Client, u, encoding string) ([]byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	if encoding != "" {
		req.Header.Set("Accept-Encoding", encoding)
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("GET %s: %s: %.200s", u, resp.Status, body)
	}
	return body, took, nil
}

func describeMachine(ctx context.Context, stella string) Machine {
	return Machine{
		NProc:            runtime.NumCPU(),
		CPU:              cpuModel(),
		GoVersion:        runtime.Version(),
		Platform:         runtime.GOOS + "/" + runtime.GOARCH,
		Stella:           stellaVersion(ctx, stella),
		LoadAverageStart: loadAverage(),
	}
}

func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(raw)) {
		if key, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(key) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown"
}

// loadAverage is the 1, 5 and 15 minute load average: other work on the
// machine shows up here.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}

func stellaVersion(ctx context.Context, stella string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, stella, "version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func writeJSON(path string, r any) error {
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	progress("results written to %s", path)
	return nil
}

func printResults(w io.Writer, r *Results) {
	m := r.Machine
	fmt.Fprintf(w, "\nStella benchmark: %d Releases in namespace %s\n", r.Objects, r.Namespace)
	fmt.Fprintf(w, "machine: nproc %d, %s, %s %s, load average %s at start, %s at end\n",
		m.NProc, m.CPU, m.GoVersion, m.Platform, m.LoadAverageStart, m.LoadAverageEnd)
	fmt.Fprintf(w, "stella:  %s\n\n", m.Stella)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")) }
	s := r.Startup
	loadedName := fmt.Sprintf("ready, restart with %d Releases", r.Objects)
	row("START-UP", "measured", "target", "", "")
	row("  ready, fresh data dir", seconds(s.Fresh.Seconds), r.verdict("ready, fresh data dir"), fmt.Sprintf("ready line at %s", seconds(s.Fresh.LogLineSeconds)))
	row("  ready, restart", seconds(s.Restart.Seconds), r.verdict("ready, restart"), fmt.Sprintf("ready line at %s", seconds(s.Restart.LogLineSeconds)))
	row("  "+loadedName, seconds(s.RestartLoaded.Seconds), r.verdict(loadedName), fmt.Sprintf("ready line at %s", seconds(s.RestartLoaded.LogLineSeconds)))
	row("  stop (SIGTERM to exit), idle", seconds(s.StopIdleSeconds), "\t", "")
	row(fmt.Sprintf("  stop, with %d Releases", r.Objects), seconds(s.StopLoadedSeconds), "\t", "")
	row("MEMORY (VmRSS)", "", "\t", "")
	row("  idle, ready + 5 s", megabytes(r.MemoryMB.Idle), r.verdict("idle RSS"), "fresh data dir")
	row(fmt.Sprintf("  with %d Releases", r.Objects), megabytes(r.MemoryMB.Loaded), "\t", "all Ready + 5 s")
	row("  after the list runs", megabytes(r.MemoryMB.AfterLists), "\t", "")
	row("  peak (VmHWM)", megabytes(r.MemoryMB.Peak), "\t", "")
	row("CREATE Releases", "", "\t", "")
	for _, c := range []struct {
		name string
		t    Throughput
	}{{"sequential", r.Creates.Sequential}, {"concurrent", r.Creates.Concurrent}, {"fill", r.Creates.Fill}} {
		row(fmt.Sprintf("  %s, %s", c.name, clients(c.t.Clients)), fmt.Sprintf("%.0f /s", c.t.PerSecond), "\t",
			fmt.Sprintf("%d in %s; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms", c.t.Objects, seconds(c.t.Seconds), c.t.P50Ms, c.t.P99Ms, c.t.MaxMs))
	}
	row("  all Ready after the fill", seconds(r.ReconcileLag), "\t", "the reconciler's status patches")
	row(fmt.Sprintf("LIST %d Releases", r.Objects), "median", "\t", fmt.Sprintf("over %d runs", listRuns))
	for _, l := range r.Lists {
		note := "max " + seconds(l.MaxSeconds)
		if l.JSONBytes > 0 {
			note += fmt.Sprintf(", %.1f MB of JSON", float64(l.JSONBytes)/1e6)
		}
		row("  "+l.Name, seconds(l.MedianSeconds), r.verdict(l.Name), note)
	}
	_ = tw.Flush()

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

func seconds(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.2f s", s)
}

func clients(n int) string {
	if n == 1 {
		return "1 client"
	}
	return fmt.Sprintf("%d clients", n)
}

func megabytes(mb float64) string { return fmt.Sprintf("%.0f MB", mb) }
