package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/describe"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/archive"
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
	return writePromotion(out, p, approvals.Items, events.Items, showEvents)
}

// describeArchived describes a promotion that left the API from its archive
// record: the same view, without events (they are not archived), and where
// the record is.
func describeArchived(out io.Writer, record *archive.Record, digest v1alpha1.Digest) error {
	if err := writePromotion(out, &record.Promotion, record.Approvals, nil, false); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "Archived:     record %s (its events are not archived)\n", digest)
	return err
}

// describeArchivedPromotions lets `describe promotion NAME` describe a
// promotion that left the API from its archive record. kubectl's describe
// reads the object before any describer runs, so the archive is asked
// first, and only for a promotion the API does not hold; everything else
// goes to kubectl's describe as it is.
func describeArchivedPromotions(cmd *cobra.Command, f cmdutil.Factory, streams genericiooptions.IOStreams) {
	kubectlDescribe := cmd.Run
	cmd.Run = func(c *cobra.Command, args []string) {
		if name, ok := promotionNamed(f, args); ok {
			described, err := describeIfArchived(c.Context(), f, streams.Out, name)
			cmdutil.CheckErr(err)
			if described {
				return
			}
		}
		kubectlDescribe(c, args)
	}
}

// promotionNamed reads `describe` arguments that name one promotion:
// TYPE NAME or TYPE/NAME, TYPE being any name kubectl knows Promotions by.
func promotionNamed(f cmdutil.Factory, args []string) (string, bool) {
	var resource, name string
	switch {
	case len(args) == 2 && !strings.Contains(args[0], "/"):
		resource, name = args[0], args[1]
	case len(args) == 1 && strings.Count(args[0], "/") == 1:
		resource, name, _ = strings.Cut(args[0], "/")
	default:
		return "", false
	}
	mapper, err := f.ToRESTMapper()
	if err != nil {
		return "", false
	}
	gvk, err := mapper.KindFor(schema.ParseGroupResource(resource).WithVersion(""))
	return name, err == nil && gvk.GroupKind() == promotionKind
}

// describeIfArchived describes the promotion from the archive when the API
// does not hold it and the archive does.
func describeIfArchived(ctx context.Context, f cmdutil.Factory, out io.Writer, name string) (bool, error) {
	c, ns, err := clientFor(f)
	if err != nil {
		return false, err
	}
	notFound := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &v1alpha1.Promotion{})
	if !apierrors.IsNotFound(notFound) {
		return false, nil // kubectl's describe reads it again, and says what went wrong
	}
	cs, err := clientset(f)
	if err != nil {
		return false, err
	}
	record, digest, err := archivedPromotion(ctx, cs, ns, name, notFound)
	if errors.Is(err, notFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, describeArchived(out, record, digest)
}

// writePromotion writes the view of a promotion for people.
func writePromotion(out io.Writer, p *v1alpha1.Promotion, approvals []v1alpha1.Approval, events []corev1.Event, showEvents bool) error {
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
	for _, a := range approvals {
		counted := "pending"
		if a.Status.Counted != nil {
			counted = map[bool]string{true: "counted", false: "ignored: " + a.Status.Reason}[*a.Status.Counted]
		}
		line("  %s\t%s\t%s\t%q", a.Spec.Approver, a.Spec.Decision, counted, a.Spec.Comment)
	}
	if len(approvals) == 0 {
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
	for _, e := range events {
		line("  %s\t%s\t%s", ago(&e.LastTimestamp), e.Reason, e.Message)
	}
	if len(events) == 0 {
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
