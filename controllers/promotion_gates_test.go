package controllers

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/decision"
	"github.com/stella-ops/stella/internal/inputs"
	"github.com/stella-ops/stella/internal/scheme"
)

// gateObjects are a namespace where a promotion of shop-2 into prod reads
// approvals, gates, an upstream environment, promotions and scan reports,
// beside objects of another namespace and of other promotions that it must
// not read.
func gateObjects() []client.Object {
	image := func(hex string) v1alpha1.ImageDigestRef {
		return v1alpha1.ImageDigestRef("registry.example.com/shop/api@sha256:" + strings.Repeat(hex, 64))
	}
	meta := func(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }
	release := func(ns, name string, images ...v1alpha1.ImageDigestRef) client.Object {
		rel := &v1alpha1.Release{ObjectMeta: meta(ns, name)}
		for i, img := range images {
			rel.Spec.Components = append(rel.Spec.Components, v1alpha1.ReleaseComponent{Name: string(rune('a' + i)), Image: img})
		}
		return rel
	}
	report := func(ns, name string, img v1alpha1.ImageDigestRef) client.Object {
		return &v1alpha1.ScanReport{ObjectMeta: meta(ns, name), Spec: v1alpha1.ScanReportSpec{Image: img}}
	}
	approval := func(ns, name, promotion string) client.Object {
		return &v1alpha1.Approval{ObjectMeta: meta(ns, name), Spec: v1alpha1.ApprovalSpec{Promotion: promotion, Decision: v1alpha1.ApprovalDecision("approve")}}
	}
	promotion := func(ns, name, release, env string, phase v1alpha1.PromotionPhase) client.Object {
		return &v1alpha1.Promotion{ObjectMeta: meta(ns, name), Spec: v1alpha1.PromotionSpec{Release: release, Environment: env}, Status: v1alpha1.PromotionStatus{Phase: phase}}
	}
	return []client.Object{
		release("ns", "shop-2", image("1"), image("2"), image("1")),
		release("ns", "db-7", image("7")),
		report("ns", "report-1", image("1")),
		report("ns", "report-2", image("2")),
		report("ns", "report-7", image("7")),
		report("other", "report-1", image("1")),
		&v1alpha1.Environment{ObjectMeta: meta("ns", "prod"), Spec: v1alpha1.EnvironmentSpec{
			PromotesFrom: []string{"stage"},
			Gates:        []v1alpha1.LocalObjectReference{{Name: "two-approvals"}, {Name: "soak-in-stage"}, {Name: "db-in-stage"}, {Name: "gone"}},
		}},
		&v1alpha1.Environment{ObjectMeta: meta("ns", "stage"), Status: v1alpha1.EnvironmentStatus{CurrentRelease: "db-7"}},
		&v1alpha1.Gate{ObjectMeta: meta("ns", "two-approvals"), Spec: v1alpha1.GateSpec{Approval: &v1alpha1.ApprovalGate{Count: 2}}},
		&v1alpha1.Gate{ObjectMeta: meta("ns", "soak-in-stage"), Spec: v1alpha1.GateSpec{Soak: &v1alpha1.SoakGate{Environment: "stage", Duration: metav1.Duration{Duration: time.Hour}}}},
		&v1alpha1.Gate{ObjectMeta: meta("ns", "db-in-stage"), Spec: v1alpha1.GateSpec{Dependency: &v1alpha1.DependencyGate{Environment: "stage"}}},
		approval("ns", "alice", "shop-2-to-prod"),
		approval("ns", "bob", "shop-2-to-prod"),
		approval("ns", "carol", "shop-1-to-prod"),
		approval("other", "dave", "shop-2-to-prod"),
		promotion("ns", "shop-2-to-stage", "shop-2", "stage", v1alpha1.PromotionSucceeded),
		promotion("ns", "shop-2-to-qa", "shop-2", "qa", v1alpha1.PromotionSucceeded),
		promotion("other", "shop-2-to-stage", "shop-2", "stage", v1alpha1.PromotionSucceeded),
	}
}

// TestGateInputsMatchListReader gathers one promotion's inputs through the
// reconcilers' indexed cache and through stellactl's listing reader: what
// `stellactl gates check` explains must be what the reconciler decides on.
func TestGateInputsMatchListReader(t *testing.T) {
	ctx := context.Background()
	indexed := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(gateObjects()...)
	indexed = withFieldIndexes(indexed)
	cached := indexed.Build()
	plain := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(gateObjects()...).Build()

	promo := &v1alpha1.Promotion{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shop-2-to-prod"}, Spec: v1alpha1.PromotionSpec{Release: "shop-2", Environment: "prod"}}
	rel, env := &v1alpha1.Release{}, &v1alpha1.Environment{}
	if err := plain.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "shop-2"}, rel); err != nil {
		t.Fatal(err)
	}
	if err := plain.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "prod"}, env); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	fromCache, err := inputs.Gather(ctx, (&PromotionReconciler{Client: cached}).reader(), promo, rel, env, now)
	if err != nil {
		t.Fatal(err)
	}
	listed, err := inputs.Gather(ctx, inputs.ListReader{Reader: plain}, promo, rel, env, now)
	if err != nil {
		t.Fatal(err)
	}

	a, _ := json.Marshal(fromCache)
	b, _ := json.Marshal(listed)
	if string(a) != string(b) {
		t.Fatalf("inputs differ:\nfrom the cache: %s\nlisted:         %s", a, b)
	}
	gateNames := func(in decision.Inputs) []string {
		var out []string
		for _, g := range in.Gates {
			out = append(out, g.Name)
		}
		return out
	}
	approvalNames := func(in decision.Inputs) []string {
		var out []string
		for _, a := range in.Approvals {
			out = append(out, a.Name)
		}
		return slices.Sorted(slices.Values(out))
	}
	reportNames := func(in decision.Inputs) []string {
		var out []string
		for _, r := range in.ScanReports {
			out = append(out, r.Name)
		}
		return slices.Sorted(slices.Values(out))
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"gates that exist, in the environment's order", gateNames(listed), []string{"two-approvals", "soak-in-stage", "db-in-stage"}},
		{"approvals of the promotion in its namespace", approvalNames(listed), []string{"alice", "bob"}},
		{"scan reports of the release's images in its namespace", reportNames(listed), []string{"report-1", "report-2"}},
		{"environments promoted from where the release succeeded", listed.SucceededIn, []string{"stage"}},
		{"environments the gates read", []string{listed.Upstream[0].Name}, []string{"stage"}},
		{"releases the dependency gate compares", []string{listed.OtherReleases[0].Name}, []string{"db-7"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
}
