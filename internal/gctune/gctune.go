// Package gctune lets the garbage collector trade memory for CPU while the
// server is busy.
//
// With Go's default (GOGC=100) the collector runs each time the heap doubles,
// so its cost grows with the allocation rate. Under a burst of API requests
// the server spent 23% of its CPU collecting (profiled with `hack/bench
// promotions -cpuprofile`); letting the heap grow to five times the live data
// instead of twice brought that to about 10%. Idle, the same
// setting would only hold more memory for nothing, so the server keeps Go's
// default until it allocates fast, and goes back to it a while after.
package gctune

import (
	"bufio"
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// Settings of the tuner. A busy server allocates hundreds of MB/s; an idle
// one a few.
const (
	idlePercent = 100
	busyPercent = 400
	// busyAllocRate is the allocation rate, in bytes per second, from which
	// the server counts as busy.
	busyAllocRate = 64 << 20
	// idleAfter is how long the rate must stay below busyAllocRate before
	// the default comes back, so that bursts a few seconds apart keep the
	// busy setting.
	idleAfter = 30 * time.Second
	interval  = time.Second
	// While busy the heap goal stays within 1/memoryShare of the machine's
	// memory; where even the default would pass it, the default applies.
	memoryShare = 4
)

const (
	metricAllocs = "/gc/heap/allocs:bytes"
	metricLive   = "/gc/heap/live:bytes"
)

// Run tunes the collector until ctx ends. It does nothing when GOGC or
// GOMEMLIMIT is set: the operator chose.
func Run(ctx context.Context) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	heapCap := memoryTotal() / memoryShare
	samples := []metrics.Sample{{Name: metricAllocs}, {Name: metricLive}}
	metrics.Read(samples)
	lastAllocs, lastAt := samples[0].Value.Uint64(), time.Now()
	var lastBusy time.Time
	current := idlePercent
	defer debug.SetGCPercent(idlePercent)

	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			metrics.Read(samples)
			allocs, live := samples[0].Value.Uint64(), samples[1].Value.Uint64()
			rate := float64(allocs-lastAllocs) / now.Sub(lastAt).Seconds()
			lastAllocs, lastAt = allocs, now
			if rate >= busyAllocRate {
				lastBusy = now
			}
			// Going back needs no forced collection: that would stall
			// allocations while gigabytes are returned at once, and the
			// runtime's scavenger returns what the smaller goal leaves
			// over in the background.
			if p := gcPercent(now.Sub(lastBusy) < idleAfter, live, heapCap); p != current {
				debug.SetGCPercent(p)
				current = p
			}
		}
	}
}

// gcPercent is the GOGC value for the state of the server: the default when
// idle; when busy, as much above it as keeps the heap goal, live × (1 +
// percent/100), within heapCap.
func gcPercent(busy bool, live, heapCap uint64) int {
	if !busy || live == 0 || heapCap <= 2*live {
		return idlePercent
	}
	fits := int((heapCap - live) * 100 / live)
	return max(idlePercent, min(busyPercent, fits))
}

// memoryTotal is the memory this process may use: the machine's, or its
// cgroup's limit when lower; 0 when neither can be read.
func memoryTotal() uint64 {
	var total uint64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		lines := bufio.NewScanner(f)
		for lines.Scan() {
			if kb, ok := strings.CutPrefix(lines.Text(), "MemTotal:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(kb, "kB")), 10, 64)
				total = n << 10
				break
			}
		}
	}
	if data, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if limit, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil && (total == 0 || limit < total) {
			total = limit // "max" means no limit and does not parse
		}
	}
	return total
}
