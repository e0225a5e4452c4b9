package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// promotionNames are what `describe` accepts as the promotion kind.
var promotionNames = map[string]bool{"promotion": true, "promotions": true, "promo": true, "promotion.stella-ops.org": true, "promotions.stella-ops.org": true}

// withPromotionDescriber makes `describe promotion NAME...` print a view for
// people (gates and their reasons, approvals and whether they counted, the
// rollout per target, events) and leaves every other kind to kubectl's
// generic describer.
func withPromotionDescriber(cmd *cobra.Command, f cmdutil.Factory) {
	generic := cmd.Run
	cmd.Run = func(cmd *cobra.Command, args []string) {
		names, ok := promotionArgs(args)
		if !ok {
			generic(cmd, args)
			return
		}
		cmdutil.CheckErr(describePromotions(cmd.Context(), f, cmd.OutOrStdout(), names))
	}
}

// promotionArgs recognises "promotion NAME..." and "promotion/NAME...".
func promotionArgs(args []string) ([]string, bool) {
	if len(args) >= 2 && promotionNames[args[0]] {
		return args[1:], true
	}
	var names []string
	for _, a := range args {
		kind, name, ok := strings.Cut(a, "/")
		if !ok || !promotionNames[kind] {
			return nil, false
		}
		names = append(names, name)
	}
	return names, len(names) > 0
}

func describePromotions(ctx context.Context, f cmdutil.Factory, out io.Writer, names []string) error {
	c, ns, err := clientFor(f)
	if err != nil {
		return err
	}
	for i, name := range names {
		if i > 0 {
			fmt.Fprintln(out)
		}
		if err := describePromotion(ctx, c, ns, name, out); err != nil {
			return err
		}
	}
	return nil
}

func describePromotion(ctx context.Context, c client.Client, ns, name string, out io.Writer) error {
	p := &v1alpha1.Promotion{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		return err
	}
	var approvals v1alpha1.ApprovalList
	if err := c.List(ctx, &approvals, client.InNamespace(ns)); err != nil {
		return err
	}
	var events corev1.EventList
	if err := c.List(ctx, &events, client.InNamespace(ns)); err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	line := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }

	line("Name:\t%s", p.Name)
	line("Namespace:\t%s", p.Namespace)
	line("Release:\t%s", p.Spec.Release)
	line("Environment:\t%s", p.Spec.Environment)
	if p.Spec.Rollback {
		line("Rollback:\ttrue")
	}
	line("Requested by:\t%s", p.Spec.RequestedBy)
	line("Reason:\t%s", p.Spec.Reason)
	line("Phase:\t%s", p.Status.Phase)
	for _, cond := range p.Status.Conditions {
		line("%s:\t%s (%s) %s", cond.Type, cond.Status, cond.Reason, cond.Message)
	}
	line("Started:\t%s", ago(p.Status.StartedAt))
	line("Finished:\t%s", ago(p.Status.FinishedAt))
	if d := p.Status.Decision; d != nil {
		line("Decision:\t%s %s", d.Result, strings.Join(d.ReasonCodes, ", "))
		line("  Decided:\t%s", ago(d.DecidedAt))
		line("  Determinism hash:\t%s", d.DeterminismHash)
		if d.PolicyDigest != "" {
			line("  Policy digest:\t%s", d.PolicyDigest)
		}
	}
	line("Gates:")
	if len(p.Status.Gates) == 0 {
		line("  <none evaluated yet>")
	}
	for _, g := range p.Status.Gates {
		retry := ""
		if g.RetryAt != nil {
			retry = " (again at " + g.RetryAt.UTC().Format(time.RFC3339) + ")"
		}
		line("  %s\t%s\t%s\t%s\t%s%s", g.Name, g.Type, g.Result, strings.Join(g.ReasonCodes, ","), g.Message, retry)
	}
	line("Approvals:")
	n := 0
	for _, a := range approvals.Items {
		if a.Spec.Promotion != p.Name {
			continue
		}
		n++
		counted := "pending"
		if a.Status.Counted != nil {
			counted = map[bool]string{true: "counted", false: "ignored: " + a.Status.Reason}[*a.Status.Counted]
		}
		line("  %s\t%s\t%s\t%q", a.Spec.Approver, a.Spec.Decision, counted, a.Spec.Comment)
	}
	if n == 0 {
		line("  <none>")
	}
	line("Targets:")
	if len(p.Status.Targets) == 0 {
		line("  <none yet>")
	}
	for _, t := range p.Status.Targets {
		line("  %s\tbatch %d\t%s\t%s\t%s", t.Target, t.Batch+1, t.Phase, t.DeployTask, t.Message)
	}
	line("Events:")
	n = 0
	for _, e := range events.Items {
		if e.InvolvedObject.UID != p.UID {
			continue
		}
		n++
		line("  %s\t%s\t%s", ago(&e.LastTimestamp), e.Reason, e.Message)
	}
	if n == 0 {
		line("  <none>")
	}
	return nil
}

// ago shows a time as people read it: how long ago, and when.
func ago(t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s ago (%s)", duration.HumanDuration(time.Since(t.Time)), t.UTC().Format(time.RFC3339))
}
