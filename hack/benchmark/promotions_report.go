package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

func printPromotionResults(w io.Writer, r *PromotionResults) {
	m, run := r.Machine, &r.Run
	fmt.Fprintf(w, "\nStella promotions benchmark: %d promotions, one per Environment, in namespace %s\n", r.Promotions, r.Namespace)
	fmt.Fprintf(w, "machine: nproc %d, %s, %s %s, load average %s at start, %s at end\n",
		m.NProc, m.CPU, m.GoVersion, m.Platform, m.LoadAverageStart, m.LoadAverageEnd)
	fmt.Fprintf(w, "stella:  %s\n", m.Stella)
	if r.StoppedIn != "" {
		fmt.Fprintf(w, "TIME LIMIT reached in %s\n", r.StoppedIn)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")) }
	throughput := func(t Throughput) string {
		return fmt.Sprintf("%d in %s; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms", t.Objects, seconds(t.Seconds), t.P50Ms, t.P99Ms, t.MaxMs)
	}
	b := r.Baseline
	row("BASELINE", "measured", "goal", "", "")
	row("  ready, fresh data dir", seconds(r.Startup.Seconds), "\t", "")
	row("  create Releases, "+clients(b.Clients), rate(b.PerSecond), "\t", throughput(b))
	row("  all Ready after the creates", seconds(r.BaselineReady), "\t", "the release reconciler's status patches")
	if perRelease := cpuPer(r.BaselineServer, b.Objects); perRelease > 0 {
		row("  server CPU per Release", ms(perRelease), "\t", "first create until every Release was Ready")
	}

	s := r.Setup
	row("SET-UP (not measured)", "", "\t", "")
	row("  Gates", "2", "\t", "policy (CUE) and freezeWindow (a window in the past: open); no approval gate, its count must be ≥ 1")
	row("  create Targets, "+clients(s.Targets.Clients), rate(s.Targets.PerSecond), "\t", throughput(s.Targets))
	row("  create Environments, "+clients(s.Environments.Clients), rate(s.Environments.PerSecond), "\t", throughput(s.Environments))
	if s.Seconds > 0 {
		row("  reconciled, queues empty", seconds(s.ReconciledSeconds), "\t", "after the last create")
		row("  set-up in all", seconds(s.Seconds), "\t", "")
	}
	if s.Server.Seconds > 0 {
		row("  server CPU", fmt.Sprintf("%.1f s", s.Server.CPUSeconds), "\t", cpuNote(s.Server, m.NProc))
	}

	steadyRows(row, r, throughput)
	row(fmt.Sprintf("PROMOTIONS, %s as fast as they can", clients(concurrentClients)), "", "\t", "")
	if run.Seconds == 0 {
		row("  not run", "", "\t", "")
		for _, v := range r.Targets {
			row("  "+v.Name, "—", v.column(), "")
		}
	} else {
		promotionRows(row, r, throughput)
	}
	if sv := r.Server; sv.Seconds > 0 {
		row(fmt.Sprintf("SERVER while promoting (%s)", seconds(sv.Seconds)), "", "\t", "")
		row("  CPU", fmt.Sprintf("%.1f s", sv.CPUSeconds), "\t", cpuNote(sv, m.NProc))
		row("  memory (VmRSS)", megabytes(sv.RSSMB), "\t", fmt.Sprintf("peak (VmHWM) %s", megabytes(sv.PeakRSSMB)))
	}
	_ = tw.Flush()

	printControllers(w, "reconcilers during the set-up", r.Setup.Controllers)
	printControllers(w, "reconcilers while promoting", r.Controllers)
	printAPIRequests(w, r.APIRequests)

	if run.Failed > 0 {
		fmt.Fprintf(w, "\n%d promotion(s) ended without a DeployTask:\n", run.Failed)
		for _, f := range run.Failures {
			fmt.Fprintf(w, "  %.300s\n", f)
		}
	}
	fmt.Fprintf(w, "\nserver log: %d error line(s) before the server was stopped, %d while it stopped\n", len(r.ServerLogErrors), r.ServerStopLogErrors)
	for _, line := range r.ServerLogErrors[:min(len(r.ServerLogErrors), 10)] {
		fmt.Fprintf(w, "  %.300s\n", line)
	}
	for _, e := range r.ServerExits {
		if e.Error != "" {
			fmt.Fprintf(w, "server %s: %s\n", e.Name, e.Error)
		}
	}
}

// steadyRows print the run at a steady rate, when there was one.
func steadyRows(row func(...string), r *PromotionResults, throughput func(Throughput) string) {
	st := &r.Steady
	if st.Seconds == 0 {
		return
	}
	row(fmt.Sprintf("PROMOTIONS at a steady %s, own Environments", rate(r.SteadyRate)), "", "\t", "")
	row("  create calls", rate(st.Creates.PerSecond), "\t", throughput(st.Creates))
	row("  end to end", rate(st.PerSecond), "\t", fmt.Sprintf("%d of %d done in %s", st.Done, st.Decision.Seen+st.Decision.Missing, seconds(st.Seconds)))
	latencyRows(row, r, steadyName+"decision latency", st.Decision, "first watch event with status.decision.result allow")
	latencyRows(row, r, steadyName+"DeployTask latency", st.DeployTask, "first watch event of its DeployTask")
	if sv := r.SteadyServer; sv.Seconds > 0 {
		row("  server CPU", fmt.Sprintf("%.1f s", sv.CPUSeconds), "\t", cpuNote(sv, r.Machine.NProc))
	}
}

func promotionRows(row func(...string), r *PromotionResults, throughput func(Throughput) string) {
	run := &r.Run
	if run.Creates.Objects > 0 {
		row("  create calls", rate(run.Creates.PerSecond), "\t", throughput(run.Creates))
	} else {
		row("  create calls", "—", "\t", fmt.Sprintf("%d of %d created before the time limit", run.Created, r.Promotions))
	}
	done := fmt.Sprintf("%d of %d done (decision allow and DeployTask seen)", run.Done, r.Promotions)
	if run.TimedOut {
		done += fmt.Sprintf("; at the time limit %d decided, %d with a DeployTask", run.Decided, run.WithTask)
	}
	row("  end to end", rate(run.PerSecond), "\t", done)
	row("  share of the raw create throughput", significant(run.PercentOfBaseline)+" %", r.verdict("share of the raw create throughput"),
		fmt.Sprintf("%s of %s", rate(run.PerSecond), rate(r.Baseline.PerSecond)))
	timeNote := "first create to the last promotion done"
	if run.TimedOut {
		timeNote = "stopped at the time limit"
	}
	row("  "+r.timeGoalName(), seconds(run.Seconds), r.verdict(r.timeGoalName()), timeNote)
	if run.SettledSeconds > 0 {
		row("  until the work queues ran empty", seconds(run.SettledSeconds), "\t", "first create to every decision sealed and every Environment's status written")
	}
	if perPromotion, perRelease := cpuPer(r.Settled, r.Promotions), cpuPer(r.BaselineServer, r.Baseline.Objects); perPromotion > 0 && perRelease > 0 {
		row("  server CPU per promotion", ms(perPromotion), "\t", fmt.Sprintf(
			"first create until the work queues ran empty, sealing included: %.1f times that of a raw create", perPromotion/perRelease))
	}
	latencyRows(row, r, "decision latency", run.Decision, "first watch event with status.decision.result allow")
	latencyRows(row, r, "DeployTask latency", run.DeployTask, "first watch event of its DeployTask")
	if h := run.ServerDecision; h.Count > 0 {
		row("  server-side decision time", ms(h.MeanMs), "\t",
			fmt.Sprintf("mean of %.0f; p50 ≤ %s, p99 ≤ %s (stella_promotion_decision_seconds, first reconcile to decision)", h.Count, bucketBound(h.P50UpToMs), bucketBound(h.P99UpToMs)))
	}
	if run.EarlyEvents > 0 || run.WatchRestarts > 0 {
		row("  watch", "", "\t", fmt.Sprintf("%d event(s) before their create returned (counted as 0 ms), %d restart(s)", run.EarlyEvents, run.WatchRestarts))
	}
}

// latencyRows prints p50, p99 and max of l, with the goals of the ones
// that have one.
func latencyRows(row func(...string), r *PromotionResults, name string, l Latency, how string) {
	for i, q := range []struct {
		label string
		ms    *float64
	}{{"p50", l.P50Ms}, {"p99", l.P99Ms}, {"max", l.MaxMs}} {
		value := "not reached"
		if q.ms != nil {
			value = ms(*q.ms)
		}
		note := ""
		switch {
		case i == 0:
			note = fmt.Sprintf("%d of %d seen; from the create call returning to the %s", l.Seen, l.Seen+l.Missing, how)
		case i == 1 && l.Missing > 0 && l.Seen > 0:
			note = fmt.Sprintf("the %d seen: p50 %s, max %s", l.Seen, ms(l.SeenP50Ms), ms(l.SeenMaxMs))
		}
		full := name + " " + q.label
		row("  "+full, value, r.verdict(full), note)
	}
}

func cpuNote(l ServerLoad, cores int) string {
	return fmt.Sprintf("%.2f of %d cores over %s; the benchmark itself %.1f s", l.CPUSeconds/l.Seconds, cores, seconds(l.Seconds), l.BenchmarkCPUSeconds)
}

// printControllers prints the reconcilers that did any work.
func printControllers(w io.Writer, title string, loads []ControllerLoad) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := false
	for _, c := range loads {
		if c.Reconciles == 0 {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\n%s:\n", title)
			fmt.Fprintln(tw, "controller\treconciles\terrors\ttime reconciling\tmean reconcile\tmean wait in queue\tmax queue depth\t")
			header = true
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.1f s\t%.1f ms\t%.1f ms\t%.0f\t\n",
			c.Name, c.Reconciles, c.Errors, c.ReconcileSeconds, c.MeanReconcileMs, c.MeanQueueWaitMs, c.MaxQueueDepth)
	}
	_ = tw.Flush()
}

// printAPIRequests prints what the API server served while promoting, per
// promotion.
func printAPIRequests(w io.Writer, reqs []APIRequests) {
	if len(reqs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nAPI requests of the saturated run, until the work queues ran empty (watches left out):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "verb\tresource\trequests\tper promotion\t")
	var total float64
	for _, r := range reqs {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2f\t\n", r.Verb, r.Resource, r.Count, r.PerPromotion)
		total += r.PerPromotion
	}
	fmt.Fprintf(tw, "\tall\t\t%.2f\t\n", total)
	_ = tw.Flush()
}

// rate is a throughput with the digits that matter, also when it is low.
func rate(perSecond float64) string { return significant(perSecond) + " /s" }

func significant(v float64) string {
	switch {
	case v >= 10:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// ms prints a latency in milliseconds, or in seconds from one second on.
func ms(v float64) string {
	if v >= 1000 {
		return seconds(v / 1000)
	}
	return fmt.Sprintf("%.1f ms", v)
}

func bucketBound(upToMs float64) string {
	if upToMs < 0 {
		return "+Inf"
	}
	return seconds(upToMs / 1000)
}

// cpuPer is the server's CPU time in milliseconds per object over load;
// zero when it was not measured.
func cpuPer(load ServerLoad, objects int) float64 {
	if load.Seconds == 0 || objects == 0 {
		return 0
	}
	return 1000 * load.CPUSeconds / float64(objects)
}
