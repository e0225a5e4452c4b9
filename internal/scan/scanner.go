package scan

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Options configure a Scanner.
type Options struct {
	// Dir holds the layer cache and the advisory store.
	Dir string
	// Parallel bounds the layers read at once.
	Parallel int
	// Registries are the only registries images are read from (host, or
	// host:port); empty allows any.
	Registries []string
	// Layouts are OCI image layout directories looked in before any
	// registry, for sites without one.
	Layouts []string
	// Trust orders VEX issuers, most trusted first.
	Trust []string
	// Keychain supplies registry credentials; the Docker config of the
	// process by default.
	Keychain authn.Keychain
}

// Scanner scans images by digest against the active advisory snapshot.
type Scanner struct {
	Cataloguer *Cataloguer
	Advisories *AdvisoryStore
	opts       Options

	mu          sync.Mutex
	subscribers []chan string
}

// Open prepares a scanner whose cache and advisories live in o.Dir.
func Open(o Options) (*Scanner, error) {
	c, err := NewCataloguer(filepath.Join(o.Dir, "layers"), max(1, o.Parallel))
	if err != nil {
		return nil, err
	}
	store, err := OpenAdvisoryStore(AdvisoryDir(o.Dir))
	if err != nil {
		return nil, err
	}
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	return &Scanner{Cataloguer: c, Advisories: store, opts: o}, nil
}

// AdvisoryDir is where the advisory store of a scanner directory is.
func AdvisoryDir(scanDir string) string { return filepath.Join(scanDir, "advisories") }

// Trust is the VEX issuer trust order.
func (s *Scanner) Trust() []string { return s.opts.Trust }

// Inventory reads what an image pinned by digest holds: from the cache when
// the image was read before, else from an OCI layout or its registry. Of a
// multi-platform image, the linux/amd64 image is read.
func (s *Scanner) Inventory(ctx context.Context, ref string) (*Inventory, error) {
	digest, err := name.NewDigest(ref)
	if err != nil {
		return nil, fmt.Errorf("%q is not an image reference pinned by digest: %w", ref, err)
	}
	if inv, ok := s.Cataloguer.Cached(digest.DigestStr()); ok {
		return inv, nil
	}
	hash, err := v1.NewHash(digest.DigestStr())
	if err != nil {
		return nil, err
	}
	img, err := s.image(ctx, digest, hash)
	if err != nil {
		return nil, err
	}
	return s.Cataloguer.InventoryAs(ctx, hash, img)
}

// image finds an image in the OCI layouts, else in its registry.
func (s *Scanner) image(ctx context.Context, ref name.Digest, hash v1.Hash) (v1.Image, error) {
	for _, dir := range s.opts.Layouts {
		p, err := layout.FromPath(dir)
		if err != nil {
			return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
		}
		root, err := p.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
		}
		if img, err := root.Image(hash); err == nil {
			return img, nil
		}
		if index, err := root.ImageIndex(hash); err == nil {
			return linuxAMD64(index)
		}
		if d, err := root.Digest(); err == nil && d == hash {
			return linuxAMD64(root)
		}
	}
	registry := ref.Context().RegistryStr()
	if !s.registryAllowed(registry) {
		where := ""
		if len(s.opts.Layouts) > 0 {
			where = " and the image is in none of the OCI layouts " + strings.Join(s.opts.Layouts, ", ")
		}
		return nil, fmt.Errorf("the scanner reads images only from the registries %s (--scan-registries)%s: add %s, or put the image in an OCI layout (--scan-oci-layouts)",
			strings.Join(s.opts.Registries, ", "), where, registry)
	}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(s.opts.Keychain))
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", ref, err)
	}
	return img, nil
}

// linuxAMD64 is the linux/amd64 image of a multi-platform index, as a
// registry's default platform picks it.
func linuxAMD64(index v1.ImageIndex) (v1.Image, error) {
	m, err := index.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == "amd64" {
			return index.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("the image index holds no linux/amd64 image")
}

func (s *Scanner) registryAllowed(registry string) bool {
	if len(s.opts.Registries) == 0 {
		return true
	}
	host, _, err := net.SplitHostPort(registry)
	if err != nil {
		host = registry
	}
	return slices.Contains(s.opts.Registries, registry) || slices.Contains(s.opts.Registries, host)
}

// Import stores a snapshot, makes it active and tells the subscribers.
func (s *Scanner) Import(snap *Snapshot, source string, now time.Time) (SnapshotInfo, bool, error) {
	info, activated, err := s.Advisories.Import(snap, source, now)
	if err == nil && activated {
		s.mu.Lock()
		for _, ch := range s.subscribers {
			select {
			case ch <- snap.Digest:
			default: // a notice is pending; the subscriber reads the store then
			}
		}
		s.mu.Unlock()
	}
	return info, activated, err
}

// Activations notifies of each snapshot that becomes active.
func (s *Scanner) Activations() <-chan string {
	ch := make(chan string, 1)
	s.mu.Lock()
	s.subscribers = append(s.subscribers, ch)
	s.mu.Unlock()
	return ch
}
