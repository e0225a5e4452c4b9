package docker

import (
	"context"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Changes streams the names of the Targets of namespace whose containers
// started, stopped, died, changed health or went away, until ctx ends. A
// broken event stream is opened again; the periodic observation covers
// what happened in between.
func (d *Driver) Changes(ctx context.Context, namespace string, log logr.Logger) <-chan string {
	out := make(chan string, 64)
	go func() {
		defer close(out)
		filter := make(client.Filters).Add("type", string(events.ContainerEventType)).Add("label", agents.LabelNamespace+"="+namespace)
		for ctx.Err() == nil {
			stream := d.docker.Events(ctx, client.EventsListOptions{Filters: filter})
			if err := forward(ctx, stream, out); err != nil && ctx.Err() == nil {
				log.V(1).Info("Docker event stream broke; opening it again", "err", err.Error())
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
				}
			}
		}
	}()
	return out
}

func forward(ctx context.Context, stream client.EventsResult, out chan<- string) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-stream.Err:
			return err
		case m := <-stream.Messages:
			if !relevant(m.Action) {
				continue
			}
			if target := m.Actor.Attributes[v1alpha1.LabelTarget]; target != "" {
				select {
				case out <- target:
				default: // the observer is behind; it will see this change anyway
				}
			}
		}
	}
}

func relevant(a events.Action) bool {
	switch a {
	case events.ActionStart, events.ActionStop, events.ActionDie, events.ActionDestroy, events.ActionKill, events.ActionRename:
		return true
	}
	return strings.HasPrefix(string(a), string(events.ActionHealthStatus))
}
