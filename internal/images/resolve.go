// Package images pins image references to digests. Stella resolves a tag
// exactly once, when a release is created; everything after that works with
// the digest.
package images

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Resolver looks image references up in their registries.
type Resolver struct {
	// Keychain supplies registry credentials; the Docker config
	// (~/.docker/config.json and its credential helpers) by default.
	Keychain authn.Keychain
}

// Pin returns ref as repository@sha256:<digest>. A tag is resolved to the
// digest the registry serves for it now; a digest is checked to exist. A
// reference without tag or digest means the tag "latest", as in Docker.
func (r Resolver) Pin(ctx context.Context, ref string) (string, error) {
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("%q is not an image reference: %w", ref, err)
	}
	keychain := r.Keychain
	if keychain == nil {
		keychain = authn.DefaultKeychain
	}
	desc, err := remote.Head(parsed, remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain))
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	if d, ok := parsed.(name.Digest); ok && d.DigestStr() != desc.Digest.String() {
		return "", fmt.Errorf("resolve %s: the registry serves %s for it", ref, desc.Digest)
	}
	return repository(parsed) + "@" + desc.Digest.String(), nil
}

// repository is the reference's repository as the user wrote it, without
// the defaults go-containerregistry fills in (index.docker.io/library/).
func repository(ref name.Reference) string {
	repo := ref.Context().String()
	if reg := ref.Context().RegistryStr(); reg == name.DefaultRegistry {
		repo = strings.TrimPrefix(strings.TrimPrefix(repo, reg+"/"), "library/")
		if !strings.Contains(repo, "/") {
			return "docker.io/library/" + repo
		}
		return "docker.io/" + repo
	}
	return repo
}
