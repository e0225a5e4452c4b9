package agents

import (
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

func TestAssess(t *testing.T) {
	img := func(c string) v1alpha1.ImageDigestRef {
		return v1alpha1.ImageDigestRef("reg.example/shop/api@sha256:" + strings.Repeat(c, 64))
	}
	deployed := &v1alpha1.VersionSticker{Release: "shop-2", Components: []v1alpha1.ComponentDigest{{Name: "api", Image: img("a")}, {Name: "web", Image: img("b")}}}
	healthy := func(name string, image v1alpha1.ImageDigestRef) ObservedComponent {
		return ObservedComponent{Name: name, Image: image, Running: true, Health: v1alpha1.HealthHealthy}
	}
	for _, tc := range []struct {
		name       string
		observed   Observed
		drift      v1alpha1.DriftState
		health     v1alpha1.HealthState
		messageHas string
	}{
		{"nothing deployed, nothing runs", Observed{}, v1alpha1.DriftInSync, v1alpha1.HealthUnknown, "nothing deployed yet"},
		{"nothing deployed, but something runs", Observed{Components: []ObservedComponent{healthy("api", img("a"))}},
			v1alpha1.DriftDrifted, v1alpha1.HealthHealthy, "no version sticker"},
		{"runs what was deployed", Observed{Deployed: deployed, Components: []ObservedComponent{healthy("api", img("a")), healthy("web", img("b"))}},
			v1alpha1.DriftInSync, v1alpha1.HealthHealthy, ""},
		{"another digest runs", Observed{Deployed: deployed, Components: []ObservedComponent{healthy("api", img("c")), healthy("web", img("b"))}},
			v1alpha1.DriftDrifted, v1alpha1.HealthHealthy, "component api runs sha256:ccc"},
		{"a component is gone", Observed{Deployed: deployed, Components: []ObservedComponent{healthy("api", img("a"))}},
			v1alpha1.DriftDrifted, v1alpha1.HealthDegraded, "component web does not run"},
		{"an image built locally", Observed{Deployed: deployed, Components: []ObservedComponent{healthy("api", ""), healthy("web", img("b"))}},
			v1alpha1.DriftDrifted, v1alpha1.HealthHealthy, "no registry digest"},
		{"right digest, unhealthy", Observed{Deployed: deployed, Components: []ObservedComponent{
			healthy("api", img("a")), {Name: "web", Image: img("b"), Running: true, Health: v1alpha1.HealthDegraded, Problem: "health check failed"}}},
			v1alpha1.DriftInSync, v1alpha1.HealthDegraded, "component web: health check failed"},
		{"right digest, still starting", Observed{Deployed: deployed, Components: []ObservedComponent{
			healthy("api", img("a")), {Name: "web", Image: img("b"), Running: true, Health: v1alpha1.HealthUnknown}}},
			v1alpha1.DriftInSync, v1alpha1.HealthUnknown, ""},
		{"right digest, stopped", Observed{Deployed: deployed, Components: []ObservedComponent{healthy("api", img("a")), {Name: "web", Image: img("b")}}},
			v1alpha1.DriftInSync, v1alpha1.HealthDegraded, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := Assess(tc.observed)
			if a.Drift != tc.drift || a.Health != tc.health || !strings.Contains(a.Message, tc.messageHas) {
				t.Fatalf("got %s/%s %q, want %s/%s with %q", a.Drift, a.Health, a.Message, tc.drift, tc.health, tc.messageHas)
			}
			if tc.observed.Deployed != nil && a.Running.Release != tc.observed.Deployed.Release {
				t.Fatalf("running release %q, want %q", a.Running.Release, tc.observed.Deployed.Release)
			}
		})
	}
}

func TestStickerRoundTrip(t *testing.T) {
	target := &v1alpha1.Target{}
	target.Namespace, target.Name = "shop", "web-1"
	path := StickerPath(target, t.TempDir())
	if s, err := ReadSticker(t.Context(), LocalHost{}, path); s != nil || err != nil {
		t.Fatalf("a missing sticker reads as %v, %v; want nothing", s, err)
	}
	d := Desired{Release: "shop-2", Version: "2.0.0", Promotion: "p", Components: []v1alpha1.ComponentDigest{
		{Name: "api", Image: v1alpha1.ImageDigestRef("reg.example/shop/api@sha256:" + strings.Repeat("a", 64))},
	}}
	if err := WriteSticker(t.Context(), LocalHost{}, path, target, d.Sticker(timeOf(t))); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSticker(t.Context(), LocalHost{}, path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Release != "shop-2" || got.Version != "2.0.0" || got.Promotion != "p" || got.Components[0] != d.Components[0] || !got.DeployedAt.Time.Equal(timeOf(t)) {
		t.Fatalf("read back %+v", got)
	}
}

func timeOf(t *testing.T) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, "2026-11-28T12:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	return at
}
