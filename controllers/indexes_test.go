package controllers

import (
	"context"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/scheme"
)

func objects() []client.Object {
	target := func(name string, labels map[string]string) client.Object {
		return &v1alpha1.Target{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: labels}}
	}
	env := func(name string, sel *metav1.LabelSelector) client.Object {
		return &v1alpha1.Environment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: v1alpha1.EnvironmentSpec{TargetSelector: sel}}
	}
	return []client.Object{
		target("web-1", map[string]string{"env": "prod", "role": "web"}),
		target("web-2", map[string]string{"env": "prod", "role": "web"}),
		target("db-1", map[string]string{"env": "prod", "role": "db"}),
		target("dev-1", map[string]string{"env": "dev", "role": "web"}),
		env("prod-web", &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod", "role": "web"}}),
		env("prod", &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}),
		env("not-db", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "role", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"db"}}}}),
		env("none", nil),
		env("empty", &metav1.LabelSelector{}),
		&v1alpha1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a1"}, Spec: v1alpha1.ApprovalSpec{Promotion: "p1"}},
		&v1alpha1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a2"}, Spec: v1alpha1.ApprovalSpec{Promotion: "p2"}},
		&v1alpha1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "a3"}, Spec: v1alpha1.ApprovalSpec{Promotion: "p1"}},
	}
}

// indexedClient is a client with the reconcilers' indexes, as the cache has
// them.
// withFieldIndexes gives a fake client the reconcilers' field indexes, as
// the manager's cache has them.
func withFieldIndexes(b *fake.ClientBuilder) *fake.ClientBuilder {
	for _, ix := range fieldIndexes {
		b = b.WithIndex(ix.obj, ix.field, ix.extract)
	}
	return b
}

func indexedClient() client.Client {
	b := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objects()...)
	b = withFieldIndexes(b)
	return b.Build()
}

func names[T any](items []T, name func(*T) string) []string {
	out := []string{}
	for i := range items {
		out = append(out, name(&items[i]))
	}
	slices.Sort(out)
	return out
}

func TestSelectedTargetsAndSelectingEnvironments(t *testing.T) {
	ctx := context.Background()
	c := indexedClient()
	envName := func(e *v1alpha1.Environment) string { return e.Name }
	targetName := func(t *v1alpha1.Target) string { return t.Name }
	for _, tc := range []struct {
		env  string
		want []string
	}{
		{"prod-web", []string{"web-1", "web-2"}},
		{"prod", []string{"db-1", "web-1", "web-2"}},
		{"not-db", []string{"dev-1", "web-1", "web-2"}},
		{"none", []string{}},
		{"empty", []string{}},
	} {
		env := &v1alpha1.Environment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: tc.env}, env); err != nil {
			t.Fatal(err)
		}
		got, err := selectedTargets(ctx, c, env)
		if err != nil {
			t.Fatal(err)
		}
		if g := names(got, targetName); !slices.Equal(g, tc.want) {
			t.Errorf("%s selects %v, want %v", tc.env, g, tc.want)
		}
	}
	for _, tc := range []struct {
		labels map[string]string
		want   []string
	}{
		{map[string]string{"env": "prod", "role": "web"}, []string{"not-db", "prod", "prod-web"}},
		{map[string]string{"env": "prod", "role": "db"}, []string{"prod"}},
		{map[string]string{"env": "dev"}, []string{"not-db"}},
		{nil, []string{"not-db"}},
	} {
		if got := names(environmentsSelecting(ctx, c, "ns", tc.labels), envName); !slices.Equal(got, tc.want) {
			t.Errorf("labels %v are selected by %v, want %v", tc.labels, got, tc.want)
		}
	}
}
