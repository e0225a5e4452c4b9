package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ServerLoad is what the server and the benchmark used while the
// promotions ran.
type ServerLoad struct {
	Seconds float64 `json:"seconds"`
	// CPUSeconds is process_cpu_seconds_total of the server (API server,
	// etcd and reconcilers share the process).
	CPUSeconds          float64 `json:"cpuSeconds"`
	BenchmarkCPUSeconds float64 `json:"benchmarkCPUSeconds"`
	RSSMB               float64 `json:"rssMB"`
	PeakRSSMB           float64 `json:"peakRSSMB"`
}

// ControllerLoad is one reconciler's work while the promotions ran, from
// the controller-runtime and workqueue metrics.
type ControllerLoad struct {
	Name             string  `json:"name"`
	Reconciles       float64 `json:"reconciles"`
	Errors           float64 `json:"errors"`
	ReconcileSeconds float64 `json:"reconcileSeconds"`
	MeanReconcileMs  float64 `json:"meanReconcileMs"`
	MeanQueueWaitMs  float64 `json:"meanQueueWaitMs"`
	MaxQueueDepth    float64 `json:"maxQueueDepth"`
}

// HistogramSummary is a server histogram's change over the measurement;
// the percentiles are the upper bounds of the buckets they fall in.
type HistogramSummary struct {
	Count     float64 `json:"count"`
	MeanMs    float64 `json:"meanMs"`
	P50UpToMs float64 `json:"p50UpToMs"`
	P99UpToMs float64 `json:"p99UpToMs"`
}

// metrics is one scrape of the manager's Prometheus endpoint: the value of
// each series, keyed by its name and labels as the endpoint writes them.
type metrics map[string]float64

func (p *promotionBench) scrape(ctx context.Context) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.metricsHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", p.metricsURL, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text format, which puts one sample on
// each line that is not a comment: series, a space, the value.
func parseMetrics(r io.Reader) (metrics, error) {
	m := metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// splitSeries splits `name{a="x",b="y"}` into the name and its labels.
func splitSeries(series string) (string, map[string]string) {
	name, rest, ok := strings.Cut(series, "{")
	labels := map[string]string{}
	if !ok {
		return name, labels
	}
	rest = strings.TrimSuffix(rest, "}")
	for rest != "" {
		key, value, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		quoted, err := strconv.QuotedPrefix(value)
		if err != nil {
			break
		}
		labels[key], _ = strconv.Unquote(quoted)
		rest = strings.TrimPrefix(value[len(quoted):], ",")
	}
	return name, labels
}

// sum adds the series of metric name whose labels include the given
// key, value pairs.
func (m metrics) sum(name string, keyValues ...string) float64 {
	total := 0.0
	for series, v := range m {
		if n, labels := splitSeries(series); n == name && hasLabels(labels, keyValues) {
			total += v
		}
	}
	return total
}

func hasLabels(labels map[string]string, keyValues []string) bool {
	for i := 0; i+1 < len(keyValues); i += 2 {
		if labels[keyValues[i]] != keyValues[i+1] {
			return false
		}
	}
	return true
}

// labelValues lists the values label key takes in the series of name.
func (m metrics) labelValues(name, key string) []string {
	var out []string
	for series := range m {
		if n, labels := splitSeries(series); n == name && labels[key] != "" && !slices.Contains(out, labels[key]) {
			out = append(out, labels[key])
		}
	}
	slices.Sort(out)
	return out
}

// APIRequests counts the API server's requests of one verb on one
// resource while the promotions ran (apiserver_request_total).
type APIRequests struct {
	Verb         string  `json:"verb"`
	Resource     string  `json:"resource"`
	Count        float64 `json:"count"`
	PerPromotion float64 `json:"perPromotion"`
}

// serverSample is the server's metrics, its API server's and the
// benchmark's CPU time at one moment.
type serverSample struct {
	at           time.Time
	metrics      metrics
	api          metrics
	benchmarkCPU time.Duration
}

// scrapeAPIServer reads the API server's own metrics, which only an admin
// may.
func (p *promotionBench) scrapeAPIServer(ctx context.Context) (metrics, error) {
	data, err := p.getFromAPIServer(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	return parseMetrics(bytes.NewReader(data))
}

func (p *promotionBench) sampleServer(ctx context.Context) (serverSample, error) {
	m, err := p.scrape(ctx)
	if err != nil {
		return serverSample{}, err
	}
	api, err := p.scrapeAPIServer(ctx)
	if err != nil {
		return serverSample{}, err
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return serverSample{}, err
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return serverSample{at: time.Now(), metrics: m, api: api, benchmarkCPU: cpu}, nil
}

// observation follows the server from a first sample: the deepest work
// queue of each controller, once a second, and at finish the change of
// the server's metrics and CPU time.
type observation struct {
	p             *promotionBench
	before, after serverSample
	depths        map[string]float64
	stop          context.CancelFunc
	sampling      sync.WaitGroup
}

func (p *promotionBench) observe(ctx context.Context) (*observation, error) {
	before, err := p.sampleServer(ctx)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	o := &observation{p: p, before: before, depths: map[string]float64{}, stop: stop}
	o.sampling.Go(func() { o.sampleDepths(ctx) })
	return o, nil
}

func (o *observation) sampleDepths(ctx context.Context) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		m, err := o.p.scrape(ctx)
		if err != nil {
			continue
		}
		for _, c := range m.labelValues("workqueue_depth", "controller") {
			o.depths[c] = max(o.depths[c], m.sum("workqueue_depth", "controller", c))
		}
	}
}

// finish stops the sampling and takes the last sample, also when ctx has
// ended.
func (o *observation) finish(ctx context.Context) {
	o.stop()
	o.sampling.Wait()
	after, err := o.p.sampleServer(context.WithoutCancel(ctx))
	if err != nil {
		progress("  server metrics: %v", err)
		return
	}
	o.after = after
}

// until is the observation from the same first sample to one taken now.
func (o *observation) until(ctx context.Context) (*observation, error) {
	after, err := o.p.sampleServer(ctx)
	if err != nil {
		return nil, err
	}
	return &observation{p: o.p, before: o.before, after: after}, nil
}

func (o *observation) server() ServerLoad {
	if o.after.metrics == nil {
		return ServerLoad{}
	}
	return serverLoad(o.before, o.after)
}

func (o *observation) controllers() []ControllerLoad {
	if o.after.metrics == nil {
		return nil
	}
	return controllerLoads(o.before.metrics, o.after.metrics, o.depths)
}

func (o *observation) histogram(name string, keyValues ...string) HistogramSummary {
	if o.after.metrics == nil {
		return HistogramSummary{}
	}
	return histogramSummary(o.before.metrics, o.after.metrics, name, keyValues...)
}

// apiRequests are the API requests between the samples, by verb and
// resource (with its subresource), most first; watches are left out, since
// they count connections rather than work.
func (o *observation) apiRequests(promotions int) []APIRequests {
	if o.after.api == nil {
		return nil
	}
	counts := map[[2]string]float64{}
	for _, m := range []struct {
		sample metrics
		sign   float64
	}{{o.before.api, -1}, {o.after.api, 1}} {
		for series, v := range m.sample {
			name, labels := splitSeries(series)
			if name != "apiserver_request_total" || labels["verb"] == "WATCH" {
				continue
			}
			resource := labels["resource"]
			if sub := labels["subresource"]; sub != "" {
				resource += "/" + sub
			}
			counts[[2]string{labels["verb"], resource}] += m.sign * v
		}
	}
	var out []APIRequests
	for k, n := range counts {
		if n > 0 {
			out = append(out, APIRequests{Verb: k[0], Resource: k[1], Count: n, PerPromotion: n / float64(promotions)})
		}
	}
	slices.SortFunc(out, func(a, b APIRequests) int {
		if c := cmpFloat(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Verb+a.Resource, b.Verb+b.Resource)
	})
	return out
}

func serverLoad(before, after serverSample) ServerLoad {
	return ServerLoad{
		Seconds:             after.at.Sub(before.at).Seconds(),
		CPUSeconds:          after.metrics.sum("process_cpu_seconds_total") - before.metrics.sum("process_cpu_seconds_total"),
		BenchmarkCPUSeconds: (after.benchmarkCPU - before.benchmarkCPU).Seconds(),
	}
}

// controllerLoads is each controller's work between two scrapes, busiest
// first.
func controllerLoads(before, after metrics, depths map[string]float64) []ControllerLoad {
	var out []ControllerLoad
	for _, name := range after.labelValues("controller_runtime_reconcile_total", "controller") {
		delta := func(metric string, keyValues ...string) float64 {
			keyValues = append([]string{"controller", name}, keyValues...)
			return after.sum(metric, keyValues...) - before.sum(metric, keyValues...)
		}
		c := ControllerLoad{
			Name:             name,
			Reconciles:       delta("controller_runtime_reconcile_total"),
			Errors:           delta("controller_runtime_reconcile_errors_total"),
			ReconcileSeconds: delta("workqueue_work_duration_seconds_sum"),
			MaxQueueDepth:    depths[name],
		}
		if works := delta("workqueue_work_duration_seconds_count"); works > 0 {
			c.MeanReconcileMs = 1000 * c.ReconcileSeconds / works
		}
		if waits := delta("workqueue_queue_duration_seconds_count"); waits > 0 {
			c.MeanQueueWaitMs = 1000 * delta("workqueue_queue_duration_seconds_sum") / waits
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b ControllerLoad) int { return -cmpFloat(a.ReconcileSeconds, b.ReconcileSeconds) })
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// histogramSummary is the change of histogram name (series with the given
// labels) between two scrapes.
func histogramSummary(before, after metrics, name string, keyValues ...string) HistogramSummary {
	delta := func(metric string) float64 { return after.sum(metric, keyValues...) - before.sum(metric, keyValues...) }
	h := HistogramSummary{Count: delta(name + "_count")}
	if h.Count == 0 {
		return h
	}
	h.MeanMs = 1000 * delta(name+"_sum") / h.Count
	type bucket struct{ le, count float64 }
	var buckets []bucket
	for _, le := range after.labelValues(name+"_bucket", "le") {
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		kv := append([]string{"le", le}, keyValues...)
		buckets = append(buckets, bucket{bound, after.sum(name+"_bucket", kv...) - before.sum(name+"_bucket", kv...)})
	}
	slices.SortFunc(buckets, func(a, b bucket) int { return cmpFloat(a.le, b.le) })
	upTo := func(q float64) float64 {
		for _, b := range buckets {
			if b.count >= q*h.Count {
				if math.IsInf(b.le, 1) {
					return -1
				}
				return 1000 * b.le
			}
		}
		return -1
	}
	h.P50UpToMs, h.P99UpToMs = upTo(0.50), upTo(0.99)
	return h
}
