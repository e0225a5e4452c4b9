package images

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Cleanup removes every container and image labelled with the test run,
// running or not.
func Cleanup(ctx context.Context, docker *client.Client, run string) error {
	filter := make(client.Filters).Add("label", LabelTestRun+"="+run)
	containers, err := docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		return fmt.Errorf("list the test's containers: %w", err)
	}
	var errs []error
	for _, c := range containers.Items {
		// A conflict is a removal already under way, by whoever ran it.
		if _, err := docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID, err))
		}
	}
	imgs, err := docker.ImageList(ctx, client.ImageListOptions{Filters: filter})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list the test's images: %w", err))...)
	}
	for _, img := range imgs.Items {
		if _, err := docker.ImageRemove(ctx, img.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove image %s: %w", img.ID, err))
		}
	}
	return errors.Join(errs...)
}
