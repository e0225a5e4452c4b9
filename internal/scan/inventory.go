package scan

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/stella-ops/stella/internal/pki"
)

// Inventory is what is installed in one image.
type Inventory struct {
	// Image is the image's manifest digest.
	Image string `json:"image"`
	// OS is the image's distribution, from its os-release.
	OS OSRelease `json:"os"`
	// Packages, sorted by file, type, name and version.
	Packages []Package `json:"packages"`
	// Problems are files an extractor could not read; their packages are
	// missing from the inventory.
	Problems []string `json:"problems,omitempty"`
}

// Cataloguer reads the inventories of images, layer by layer, keeping what
// each layer holds in a cache under the layer's digest.
type Cataloguer struct {
	extractors *extractors
	// dir holds the cache; empty keeps nothing.
	dir    string
	slots  chan struct{}
	flight singleflight.Group
	// layersRead counts layers read from their image rather than the cache.
	layersRead atomic.Int64
}

// NewCataloguer keeps its cache in dir (none if empty) and reads at most
// parallel layers at once.
func NewCataloguer(dir string, parallel int) (*Cataloguer, error) {
	x, err := newExtractors()
	if err != nil {
		return nil, fmt.Errorf("set up the package extractors: %w", err)
	}
	if dir != "" {
		dir = filepath.Join(dir, x.id)
		for _, sub := range []string{"layers", "images", "spool"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				return nil, fmt.Errorf("create the scan cache: %w", err)
			}
		}
	}
	return &Cataloguer{extractors: x, dir: dir, slots: make(chan struct{}, max(1, parallel))}, nil
}

// LayersRead is how many layers the cataloguer has read from images rather
// than from its cache.
func (c *Cataloguer) LayersRead() int64 { return c.layersRead.Load() }

// Inventory reads what is installed in an image.
func (c *Cataloguer) Inventory(ctx context.Context, img v1.Image) (*Inventory, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("read the image manifest: %w", err)
	}
	return c.InventoryAs(ctx, digest, img)
}

// InventoryAs reads what is installed in an image and keeps it under
// digest: the digest a release pins, which for a multi-platform image is
// its index's, not the digest of the platform's image that is read.
func (c *Cataloguer) InventoryAs(ctx context.Context, digest v1.Hash, img v1.Image) (*Inventory, error) {
	if inv, ok := c.Cached(digest.String()); ok {
		return inv, nil
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("read the layers of image %s: %w", digest, err)
	}
	records := make([]*layerRecord, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	for i, l := range layers {
		g.Go(func() error {
			rec, err := c.layer(gctx, l)
			if err != nil {
				d, _ := l.Digest()
				return fmt.Errorf("layer %d (%s) of image %s: %w", i+1, d, digest, err)
			}
			records[i] = rec
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	inv := compose(digest.String(), records)
	c.store(filepath.Join("images", hexOf(digest)), &inv)
	return &inv, nil
}

// Cached is the inventory of an image read before, by manifest digest.
func (c *Cataloguer) Cached(digest string) (*Inventory, bool) {
	var inv Inventory
	h, err := v1.NewHash(digest)
	if err == nil && c.load(filepath.Join("images", hexOf(h)), &inv) && inv.Image == digest {
		return &inv, true
	}
	return nil, false
}

// layer reads what a layer holds, from the cache or, once however many scans
// ask at the same time, from the layer.
func (c *Cataloguer) layer(ctx context.Context, l v1.Layer) (*layerRecord, error) {
	digest, err := l.Digest()
	if err != nil {
		return nil, err
	}
	key := filepath.Join("layers", hexOf(digest))
	var rec layerRecord
	if c.load(key, &rec) && rec.Format == recordFormat {
		return &rec, nil
	}
	v, err, _ := c.flight.Do(digest.String(), func() (any, error) {
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { <-c.slots }()
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, fmt.Errorf("open the layer: %w", err)
		}
		defer rc.Close()
		c.layersRead.Add(1)
		rec, err := c.extractors.extractLayer(ctx, rc, c.spool())
		if err == nil {
			err = rc.Close() // the digest check of some readers reports here
		}
		if err != nil {
			return nil, err
		}
		c.store(key, rec)
		return rec, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*layerRecord), nil
}

// compose stacks the layers' records bottom to top, as the image's root
// filesystem stacks the layers.
func compose(image string, records []*layerRecord) Inventory {
	files := map[string]fileRecord{}
	hide := func(dir string) {
		for p := range files {
			if p == dir || strings.HasPrefix(p, dir+"/") {
				delete(files, p)
			}
		}
	}
	inv := Inventory{Image: image, Packages: []Package{}}
	for _, rec := range records {
		for _, dir := range rec.Opaque {
			if dir == "" {
				clear(files)
			} else {
				hide(dir)
			}
		}
		for _, p := range rec.Deleted {
			hide(p)
		}
		for _, f := range rec.Files {
			files[f.Path] = f
		}
		inv.Problems = append(inv.Problems, rec.Problems...)
	}
	for _, p := range osReleasePaths {
		if f, ok := files[p]; ok && f.OSRelease != "" {
			inv.OS = parseOSRelease(f.OSRelease)
			break
		}
	}
	for _, f := range files {
		for _, p := range f.Packages {
			p.Ecosystem, p.Distro = ecosystemOf(p, inv.OS)
			if p.Type != TypeDebian && p.Type != TypeAlpine && p.Type != TypeRPM {
				p.Distro = ""
			}
			inv.Packages = append(inv.Packages, p)
		}
	}
	slices.SortFunc(inv.Packages, comparePackages)
	slices.Sort(inv.Problems)
	inv.Problems = slices.Compact(inv.Problems)
	return inv
}

// load reads a cache entry; false when there is none or it does not parse.
func (c *Cataloguer) load(key string, v any) bool {
	if c.dir == "" {
		return false
	}
	b, err := os.ReadFile(filepath.Join(c.dir, key+".json"))
	if err != nil {
		return false
	}
	return json.Unmarshal(b, v) == nil
}

// store writes a cache entry. A cache that cannot be written costs the next
// scan the time to read the layer again, and nothing else.
func (c *Cataloguer) store(key string, v any) {
	if c.dir == "" {
		return
	}
	if b, err := json.Marshal(v); err == nil {
		_ = pki.WriteFileAtomic(filepath.Join(c.dir, key+".json"), b, 0o600)
	}
}

func (c *Cataloguer) spool() string {
	if c.dir == "" {
		return ""
	}
	return filepath.Join(c.dir, "spool")
}

func hexOf(h v1.Hash) string { return cmp.Or(h.Hex, "none") }
