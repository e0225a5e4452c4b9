package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/kubectl/pkg/describe"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/scheme"
)

// promotionKind is the GroupKind that describePromotion describes.
var promotionKind = v1alpha1.GroupVersion.WithKind("Promotion").GroupKind()

// registerPromotionDescriber gives kubectl's describe machinery a view of
// Promotions for people (gates and their reasons, approvals and whether they
// counted, the rollout per target, events), keyed by the Promotion's
// GroupKind; `describe` resolves names, short names and "kind/name" itself,
// and every other kind keeps kubectl's generic describer.
func registerPromotionDescriber() {
	describe.DescriberFn = describerFor
}

func describerFor(getter genericclioptions.RESTClientGetter, mapping *meta.RESTMapping) (describe.ResourceDescriber, error) {
	if mapping.GroupVersionKind.GroupKind() != promotionKind {
		return describe.Describer(getter, mapping)
	}
	cfg, err := getter.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("client for describing promotions: %w", err)
	}
	return promotionDescriber{c}, nil
}

// promotionDescriber describes one Promotion, reading that promotion, its
// Approvals (by the selectable field spec.promotion) and its Events (by
// involvedObject.uid), and nothing else of the namespace.
type promotionDescriber struct {
	reader client.Reader
}

// Describe is kubectl's describer interface, which passes no context: like
// kubectl's own describers it reads with context.TODO.
func (d promotionDescriber) Describe(namespace, name string, settings describe.DescriberSettings) (string, error) {
	var out strings.Builder
	err := describePromotion(context.TODO(), d.reader, namespace, name, settings.ShowEvents, &out)
	return out.String(), err
}

func describePromotion(ctx context.Context, c client.Reader, ns, name string, showEvents bool, out io.Writer) error {
	p := &v1alpha1.Promotion{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		return err
	}
	var approvals v1alpha1.ApprovalList
	if err := c.List(ctx, &approvals, client.InNamespace(ns), client.MatchingFields{v1alpha1.FieldApprovalPromotion: p.Name}); err != nil {
		return fmt.Errorf("listing the approvals of promotion %s: %w", p.Name, err)
	}
	var events corev1.EventList
	if showEvents {
		if err := c.List(ctx, &events, client.InNamespace(ns), client.MatchingFields{"involvedObject.uid": string(p.UID)}); err != nil {
			return fmt.Errorf("listing the events of promotion %s: %w", p.Name, err)
		}
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
	for _, a := range approvals.Items {
		counted := "pending"
		if a.Status.Counted != nil {
			counted = map[bool]string{true: "counted", false: "ignored: " + a.Status.Reason}[*a.Status.Counted]
		}
		line("  %s\t%s\t%s\t%q", a.Spec.Approver, a.Spec.Decision, counted, a.Spec.Comment)
	}
	if len(approvals.Items) == 0 {
		line("  <none>")
	}
	line("Targets:")
	if len(p.Status.Targets) == 0 {
		line("  <none yet>")
	}
	for _, t := range p.Status.Targets {
		line("  %s\tbatch %d\t%s\t%s\t%s", t.Target, t.Batch+1, t.Phase, t.DeployTask, t.Message)
	}
	if !showEvents {
		return nil
	}
	line("Events:")
	for _, e := range events.Items {
		line("  %s\t%s\t%s", ago(&e.LastTimestamp), e.Reason, e.Message)
	}
	if len(events.Items) == 0 {
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
