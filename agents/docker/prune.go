package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// retainedFile lists, next to the sticker, the images a target keeps: those
// of the release it runs and of the one before, for a rollback.
const retainedFile = "stella.images.json"

// Succeeded records that the target runs desired now and, when that is a
// new release, removes the images of the releases before the previous one:
// the previous release's stay for a rollback. An image some container still
// uses, or that is gone already, is left alone.
func Succeeded(ctx context.Context, docker *client.Client, host agents.Host, target *v1alpha1.Target, stickerPath string, desired agents.Desired) error {
	previous, err := agents.ReadSticker(ctx, host, stickerPath)
	if err != nil {
		return err
	}
	keep := refsOf(desired.Components)
	if previous != nil && slices.Equal(keep, refsOf(previous.Components)) {
		// The same release again (a retry, a rollback to it, a revert): no
		// newer release succeeded, so the older images stay.
		return agents.WriteSticker(ctx, host, stickerPath, target, desired.Sticker(time.Now()))
	}
	if previous != nil {
		keep = append(keep, refsOf(previous.Components)...)
	}
	slices.Sort(keep)
	keep = slices.Compact(keep)
	path := filepath.Join(filepath.Dir(stickerPath), retainedFile)
	before, err := readRetained(ctx, host, path)
	if err != nil {
		return err
	}
	for _, ref := range before {
		if slices.Contains(keep, ref) {
			continue
		}
		if _, err := docker.ImageRemove(ctx, ref, client.ImageRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			return fmt.Errorf("remove image %s of an older release: %w", ref, err)
		}
	}
	data, err := json.Marshal(keep)
	if err != nil {
		return err
	}
	if err := host.WriteFile(ctx, path, data); err != nil {
		return fmt.Errorf("record the images of Target %s: %w", target.Name, err)
	}
	return agents.WriteSticker(ctx, host, stickerPath, target, desired.Sticker(time.Now()))
}

func refsOf(components []v1alpha1.ComponentDigest) []string {
	refs := make([]string, 0, len(components))
	for _, c := range components {
		refs = append(refs, string(c.Image))
	}
	return refs
}

func readRetained(ctx context.Context, host agents.Host, path string) ([]string, error) {
	data, err := agents.ReadOptional(ctx, host, path)
	if err != nil || data == nil {
		return nil, err
	}
	var refs []string
	if err := json.Unmarshal(data, &refs); err != nil {
		return nil, fmt.Errorf("read %s: %w (remove it; the next deployment writes it again)", path, err)
	}
	return refs, nil
}
