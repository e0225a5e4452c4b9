// Package serverdeploy is the deploying the server does itself, to the
// Targets that name no agent: SSH, Nomad and ECS targets, reached over the
// network with credentials kept in Secrets. It runs the agent's task runner
// and observer with those drivers; only the server imports it, so that
// stella-agent links none of them.
package serverdeploy

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/agents/ecs"
	"github.com/stella-ops/stella/agents/nomad"
	"github.com/stella-ops/stella/agents/ssh"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agent"
)

// Options configure the deploying the server does itself.
type Options struct {
	agent.ServerOptions
	// ECSPollEvery is the least time between two looks at a deploying ECS
	// service; 15s when zero, as ECS's own waiter.
	ECSPollEvery time.Duration
}

// The server deploys to the Targets that name no agent as an agent does,
// and reports on them and their DeployTasks.
// +kubebuilder:rbac:groups=stella-ops.org,resources=targets;deploytasks,verbs=get;list;watch
// +kubebuilder:rbac:groups=stella-ops.org,resources=targets/status;deploytasks/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// SSH pins the host key seen on first use in the Target's spec.
// +kubebuilder:rbac:groups=stella-ops.org,resources=targets,verbs=patch
// SSH, Nomad and ECS credentials are Secrets in the Target's namespace,
// which can be any: each is read by name when a task or an observation
// needs it, never listed or cached.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// AddToManager makes the server's manager deploy to the SSH, Nomad and ECS
// Targets and report what runs on them; only the replica that leads runs
// them.
func AddToManager(mgr ctrl.Manager, o Options, log logr.Logger) error {
	secrets := secretReader(mgr.GetAPIReader())
	drivers := map[v1alpha1.TargetType]agents.Driver{
		v1alpha1.TargetTypeSSH:   ssh.New(secrets, hostKeyRecorder(mgr.GetClient())),
		v1alpha1.TargetTypeNomad: nomad.New(secrets),
		v1alpha1.TargetTypeECS:   ecs.New(secrets, cmp.Or(o.ECSPollEvery, 15*time.Second)),
	}
	return agent.AddToServer(mgr, drivers, o.ServerOptions, log)
}

// secretReader reads Secrets from the server directly: they are not cached,
// so that the server does not hold every Secret in memory.
func secretReader(reader client.Reader) agents.SecretReader {
	return func(ctx context.Context, namespace, name string) (map[string][]byte, error) {
		secret := &corev1.Secret{}
		if err := reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, secret); err != nil {
			return nil, fmt.Errorf("read Secret %s/%s: %w", namespace, name, err)
		}
		return secret.Data, nil
	}
}

// hostKeyRecorder writes the host key seen on first use into the Target's
// spec.ssh.hostKey, only if no key was pinned there meanwhile.
func hostKeyRecorder(c client.Client) ssh.HostKeyRecorder {
	return func(ctx context.Context, target *v1alpha1.Target, hostKey string) error {
		pinned := target.DeepCopy()
		pinned.Spec.SSH.HostKey = hostKey
		return c.Patch(ctx, pinned, client.MergeFromWithOptions(target, client.MergeFromWithOptimisticLock{}))
	}
}
