package scan

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stella-ops/stella/test/images"
)

// benchImage pushes a Debian-like image of about 100 MB (uncompressed) to a
// registry on 127.0.0.1: a base layer with a dpkg database of 400 packages,
// four layers of 20 MB of files, and the test program (a Go binary).
func benchImage(b *testing.B) (ref string, packages int) {
	b.Helper()
	reg, err := images.StartRegistry()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { reg.Close() })
	var status strings.Builder
	const debs = 400
	for i := range debs {
		fmt.Fprintf(&status, "Package: lib%03d\nStatus: install ok installed\nArchitecture: amd64\nSource: src%03d\nVersion: 1.%d.0-1+deb12u1\n\n", i, i, i)
	}
	base, err := images.Layer(
		images.File{Name: "etc/os-release", Body: []byte("ID=debian\nVERSION_ID=12\n")},
		images.File{Name: "var/lib/dpkg/status", Body: []byte(status.String())},
	)
	if err != nil {
		b.Fatal(err)
	}
	layers := []v1.Layer{base}
	rng := rand.New(rand.NewPCG(1, 2))
	for l := range 4 {
		var files []images.File
		for f := range 20 {
			// Text-like bytes: they compress about 2:1, as binaries and
			// data in images do, so that reading costs real gunzip work.
			body := make([]byte, 1<<20)
			for i := range body {
				body[i] = "abcdefghijklmnop\n"[rng.Uint32()%17]
			}
			files = append(files, images.File{Name: fmt.Sprintf("usr/share/data%d/blob%02d", l, f), Body: body})
		}
		layer, err := images.Layer(files...)
		if err != nil {
			b.Fatal(err)
		}
		layers = append(layers, layer)
	}
	program, err := images.Program(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	app, err := images.Layer(images.File{Name: "usr/local/bin/app", Mode: 0o755, Body: program})
	if err != nil {
		b.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, append(layers, app)...)
	if err != nil {
		b.Fatal(err)
	}
	ref, err = reg.Push("bench/api", "1", img)
	if err != nil {
		b.Fatal(err)
	}
	return ref, debs
}

func benchRemote(b *testing.B, ref string) v1.Image {
	b.Helper()
	d, err := name.NewDigest(ref)
	if err != nil {
		b.Fatal(err)
	}
	img, err := remote.Image(d)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// BenchmarkScanCold reads every layer of a ~100 MB image from the registry,
// with an empty cache: go test -run NONE -bench ScanCold ./internal/scan
func BenchmarkScanCold(b *testing.B) {
	ref, debs := benchImage(b)
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		c, err := NewCataloguer(dir, 2)
		if err != nil {
			b.Fatal(err)
		}
		inv, err := c.Inventory(context.Background(), benchRemote(b, ref))
		if err != nil {
			b.Fatal(err)
		}
		if len(inv.Packages) < debs {
			b.Fatalf("%d packages", len(inv.Packages))
		}
	}
}

// BenchmarkScanWarm scans the same image again with every layer in the
// cache (its image entry removed, so the layers are put together again),
// and matches it: go test -run NONE -bench ScanWarm ./internal/scan
func BenchmarkScanWarm(b *testing.B) {
	ref, _ := benchImage(b)
	dir := b.TempDir()
	c, err := NewCataloguer(dir, 2)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Inventory(context.Background(), benchRemote(b, ref)); err != nil {
		b.Fatal(err)
	}
	snap := benchSnapshot(b, 2000)
	digest := ref[strings.LastIndex(ref, "@sha256:")+len("@sha256:"):]
	for b.Loop() {
		b.StopTimer()
		if err := os.Remove(filepath.Join(c.dir, "images", digest+".json")); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		inv, err := c.Inventory(context.Background(), benchRemote(b, ref))
		if err != nil {
			b.Fatal(err)
		}
		Evaluate(inv, snap, nil, nil)
	}
	if c.LayersRead() != 6 {
		b.Fatalf("read %d layers from the registry; the cache was missed", c.LayersRead())
	}
}

// benchSnapshot is n Debian advisories on 800 source packages (src000 to
// src799, installed as 1.<k>.0-1+deb12u1 for src<k>): one in 20 is fixed
// in a later upload of the installed version, the others long before it,
// so an image of 400 of these packages has about 25 findings, as images of
// a maintained distribution do.
func benchSnapshot(b *testing.B, n int) *Snapshot {
	b.Helper()
	docs := make([]Document, 0, n)
	for i := range n {
		k := i % 800
		fix := fmt.Sprintf("1.%d.0-0", k)
		if i%20 == 0 {
			fix = fmt.Sprintf("1.%d.0-1+deb12u2", k)
		}
		raw := fmt.Sprintf(`{"id":"DEBIAN-CVE-2099-%05d","modified":"2099-01-01T00:00:00Z","database_specific":{"severity":"HIGH"},
			"affected":[{"package":{"ecosystem":"Debian:12","name":"src%03d"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"%s"}]}]}]}`,
			i, k, fix)
		a, err := ParseAdvisory([]byte(raw))
		if err != nil {
			b.Fatal(err)
		}
		docs = append(docs, Document{Name: a.ID, Raw: []byte(raw), Advisory: a})
	}
	snap, err := NewSnapshot(docs)
	if err != nil {
		b.Fatal(err)
	}
	return snap
}

// BenchmarkRematch1000 matches 1,000 cached inventories of 400 packages
// (800 distinct package versions among them, as images sharing base layers
// have) against a new snapshot of 20,000 advisories, as an import does:
// go test -run NONE -bench Rematch ./internal/scan
func BenchmarkRematch1000(b *testing.B) {
	invs := make([]*Inventory, 1000)
	for i := range invs {
		inv := &Inventory{Image: fmt.Sprintf("sha256:%064x", i), OS: OSRelease{ID: "debian", VersionID: "12"}}
		for p := range 400 {
			inv.Packages = append(inv.Packages, Package{Name: fmt.Sprintf("lib%03d", p), Source: fmt.Sprintf("src%03d", (p+i)%800),
				Version: fmt.Sprintf("1.%d.0-1+deb12u1", (p+i)%800), Type: TypeDebian, Path: "var/lib/dpkg/status", Ecosystem: "Debian:12", Distro: "debian-12"})
		}
		invs[i] = inv
	}
	docs := benchSnapshot(b, 20000).Documents
	for b.Loop() {
		// A snapshot made anew each time, as an import makes it: nothing
		// of an earlier matching is remembered.
		b.StopTimer()
		snap, err := NewSnapshot(docs)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		findings := 0
		for _, inv := range invs {
			findings += len(Evaluate(inv, snap, nil, nil).Findings)
		}
		if findings == 0 {
			b.Fatal("no findings")
		}
	}
}
