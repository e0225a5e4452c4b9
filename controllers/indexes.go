package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Field indexes of the reconcilers' cache. Every lookup a reconciler or an
// event handler makes by one of these touches only the matching objects, so
// that the work per event does not grow with the namespace: a namespace
// with 10,000 environments and promotions is the benchmark's case.
const (
	// indexEnvironment holds a promotion's environment, or the one a soak
	// or dependency gate reads.
	indexEnvironment = "spec.environment"
	indexRelease     = "spec.release"
	indexPromotion   = "spec.promotion"
	// indexOwnerPromotion holds the UID of the Promotion that owns a
	// DeployTask: a promotion created again under a deleted one's name
	// must not take the old one's tasks, not yet garbage collected, as its
	// own.
	indexOwnerPromotion = "metadata.ownerReferences.promotion"
	indexGates          = "spec.gates"
	indexUpstreams      = "spec.promotesFrom"
	indexAutoPromote    = "spec.autoPromote"
	// indexReleasesRun holds the releases an environment runs now or ran.
	indexReleasesRun = "status.releases"
	// indexSelectorLabels holds each key=value an environment's target
	// selector requires, or anySelector when it requires none exactly.
	indexSelectorLabels = "spec.targetSelector.matchLabels"
	// indexLabels holds each key=value label of a target.
	indexLabels = "metadata.labels"
	// indexEvidencePacket holds the EvidencePacket a promotion's status
	// names.
	indexEvidencePacket = "status.evidencePacket"
	// indexRolloutPacket holds the EvidencePacket of a promotion's
	// finished rollout.
	indexRolloutPacket = "status.rolloutPacket"
	// indexDigest holds the digest a scan report is about, or those a
	// release pins.
	indexDigest = "spec.image.digest"
)

// anySelector indexes the environments whose target selector has no
// matchLabels, which any target may match.
const anySelector = "*"

type fieldIndex struct {
	obj     client.Object
	field   string
	extract client.IndexerFunc
}

var fieldIndexes = []fieldIndex{
	{&v1alpha1.Promotion{}, indexEnvironment, func(o client.Object) []string { return []string{o.(*v1alpha1.Promotion).Spec.Environment} }},
	{&v1alpha1.Promotion{}, indexRelease, func(o client.Object) []string { return []string{o.(*v1alpha1.Promotion).Spec.Release} }},
	{&v1alpha1.Promotion{}, indexEvidencePacket, func(o client.Object) []string {
		if name := o.(*v1alpha1.Promotion).Status.EvidencePacket; name != "" {
			return []string{name}
		}
		return nil
	}},
	{&v1alpha1.Promotion{}, indexRolloutPacket, func(o client.Object) []string {
		if name := rolloutPacketName(o.(*v1alpha1.Promotion)); name != "" {
			return []string{name}
		}
		return nil
	}},
	{&v1alpha1.Approval{}, indexPromotion, func(o client.Object) []string { return []string{o.(*v1alpha1.Approval).Spec.Promotion} }},
	{&v1alpha1.DeployTask{}, indexOwnerPromotion, func(o client.Object) []string {
		if owner := metav1.GetControllerOf(o); owner != nil && owner.Kind == "Promotion" {
			return []string{string(owner.UID)}
		}
		return nil
	}},
	{&v1alpha1.Gate{}, indexEnvironment, func(o client.Object) []string {
		g := o.(*v1alpha1.Gate)
		switch {
		case g.Spec.Soak != nil:
			return []string{g.Spec.Soak.Environment}
		case g.Spec.Dependency != nil:
			return []string{g.Spec.Dependency.Environment}
		}
		return nil
	}},
	{&v1alpha1.Release{}, indexDigest, func(o client.Object) []string {
		var digests []string
		for _, c := range o.(*v1alpha1.Release).Spec.Components {
			digests = append(digests, c.Image.Digest())
		}
		return digests
	}},
	{&v1alpha1.Environment{}, indexGates, func(o client.Object) []string {
		var names []string
		for _, g := range o.(*v1alpha1.Environment).Spec.Gates {
			names = append(names, g.Name)
		}
		return names
	}},
	{&v1alpha1.Environment{}, indexUpstreams, func(o client.Object) []string { return o.(*v1alpha1.Environment).Spec.PromotesFrom }},
	{&v1alpha1.Environment{}, indexAutoPromote, func(o client.Object) []string {
		return []string{fmt.Sprint(o.(*v1alpha1.Environment).Spec.AutoPromote)}
	}},
	{&v1alpha1.Environment{}, indexReleasesRun, releasesRun},
	{&v1alpha1.Environment{}, indexSelectorLabels, func(o client.Object) []string {
		sel := o.(*v1alpha1.Environment).Spec.TargetSelector
		if sel == nil {
			return nil
		}
		if len(sel.MatchLabels) == 0 {
			return []string{anySelector}
		}
		return labelPairs(sel.MatchLabels)
	}},
	{&v1alpha1.Target{}, indexLabels, func(o client.Object) []string { return labelPairs(o.GetLabels()) }},
	{&v1alpha1.Target{}, v1alpha1.FieldTargetAgent, func(o client.Object) []string { return []string{o.(*v1alpha1.Target).Spec.Agent} }},
	{&v1alpha1.ScanReport{}, indexDigest, func(o client.Object) []string { return []string{o.(*v1alpha1.ScanReport).Spec.Image.Digest()} }},
}

// releasesRun are the releases an environment runs now or ran.
func releasesRun(o client.Object) []string {
	env := o.(*v1alpha1.Environment)
	var names []string
	if env.Status.CurrentRelease != "" {
		names = append(names, env.Status.CurrentRelease)
	}
	for _, h := range env.Status.History {
		names = append(names, h.Release)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func labelPairs(labels map[string]string) []string {
	pairs := make([]string, 0, len(labels))
	for k, v := range labels {
		pairs = append(pairs, k+"="+v)
	}
	return pairs
}

// AddIndexes registers the field indexes with a manager's cache; it must
// run before the cache starts.
func AddIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	for _, ix := range fieldIndexes {
		if err := indexer.IndexField(ctx, ix.obj, ix.field, ix.extract); err != nil {
			return fmt.Errorf("index %T by %s: %w", ix.obj, ix.field, err)
		}
	}
	return nil
}

// selectedTargets lists the targets env's selector selects, by name. An
// environment without a selector, or with an empty one, selects none.
func selectedTargets(ctx context.Context, c client.Reader, env *v1alpha1.Environment) ([]v1alpha1.Target, error) {
	if env.Spec.TargetSelector == nil {
		return nil, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(env.Spec.TargetSelector)
	if err != nil {
		return nil, fmt.Errorf("environment %s: spec.targetSelector: %w", env.Name, err)
	}
	if sel.Empty() {
		return nil, nil
	}
	opts := []client.ListOption{client.InNamespace(env.Namespace), client.MatchingLabelsSelector{Selector: sel}}
	if pairs := labelPairs(env.Spec.TargetSelector.MatchLabels); len(pairs) > 0 {
		opts = append(opts, client.MatchingFields{indexLabels: slices.Min(pairs)})
	}
	var list v1alpha1.TargetList
	if err := c.List(ctx, &list, opts...); err != nil {
		return nil, err
	}
	slices.SortFunc(list.Items, func(a, b v1alpha1.Target) int { return strings.Compare(a.Name, b.Name) })
	return list.Items, nil
}

// environmentsSelecting are the environments whose target selector selects
// a target with these labels.
func environmentsSelecting(ctx context.Context, c client.Reader, ns string, targetLabels map[string]string) []v1alpha1.Environment {
	var out []v1alpha1.Environment
	seen := map[string]bool{}
	for _, key := range append(labelPairs(targetLabels), anySelector) {
		var list v1alpha1.EnvironmentList
		if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{indexSelectorLabels: key}, client.UnsafeDisableDeepCopy); err != nil {
			return nil
		}
		for _, env := range list.Items {
			if seen[env.Name] {
				continue
			}
			seen[env.Name] = true
			sel, err := metav1.LabelSelectorAsSelector(env.Spec.TargetSelector)
			if err == nil && !sel.Empty() && sel.Matches(labels.Set(targetLabels)) {
				out = append(out, env)
			}
		}
	}
	return out
}
