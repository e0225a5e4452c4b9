// Command stella-agent runs next to a deploy target. It heartbeats for its
// Agent, deploys the DeployTasks of the Targets it serves, and reports what
// really runs on them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/stella-ops/stella/agents"
	"github.com/stella-ops/stella/agents/compose"
	"github.com/stella-ops/stella/agents/docker"
	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agent"
	kubecfg "github.com/stella-ops/stella/internal/kubeconfig"
	"github.com/stella-ops/stella/internal/logging"
	"github.com/stella-ops/stella/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := rootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "stella-agent",
		Short:         "Stella's agent on a deploy target",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCommand(), versionCommand())
	return root
}

func runCommand() *cobra.Command {
	var (
		o          agent.Options
		join       agent.JoinOptions
		kubeconfig string
		stateDir   string
		verbosity  int
	)
	cmd := &cobra.Command{
		Use:   "run --name NAME -n NAMESPACE (--server URL --ca-cert-hash HASH --join-token TOKEN | --kubeconfig FILE)",
		Short: "Deploy the DeployTasks of this agent's Targets and report what runs, until stopped",
		Long: `Run the agent: renew its heartbeat Lease (agent-NAME in the Agent's
namespace) and report the Agent's status; deploy every DeployTask of the
Targets that name this agent through the Docker Engine (DOCKER_HOST, else
/var/run/docker.sock), for compose targets with 'docker compose' or
'docker-compose', whichever is installed; and observe what really runs on those Targets every
--observe-every and on Docker events, reporting drift and health in their
status.

The agent's identity: 'stellactl agent join-token NAME -n NAMESPACE' prints
the first command to run, with a one-time join token. With it the agent
checks the server against --ca-cert-hash, has its own client certificate
signed, keeps it in <state-dir>/credentials and renews it before it
expires; later starts need only --name, -n and --state-dir. That identity
reads only its own Agent, the Targets that name it and their DeployTasks.
Instead, --kubeconfig may carry a credential with the stella-agent role in
the namespace (stellactl auth create-user NAME --role agent -n NAMESPACE),
which the server does not confine to one agent's objects.

Registry credentials come from the Docker config of the user running the
agent. On SIGTERM the agent finishes nothing half way: a task it was running
is resumed by its next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logging.Setup(verbosity)
			if o.Name == "" || o.Namespace == "" {
				return fmt.Errorf("--name and --namespace are required: they name the Agent object this agent reports for")
			}
			cfg, err := serverConfig(cmd.Context(), kubeconfig, filepath.Join(stateDir, "credentials"), join, &o, log)
			if err != nil {
				return err
			}
			engine, err := client.New(client.FromEnv)
			if err != nil {
				return fmt.Errorf("set up the Docker client: %w", err)
			}
			defer engine.Close()
			dockerDriver := docker.New(engine, agents.LocalHost{}, stateDir)
			o.Drivers = map[v1alpha1.TargetType]agents.Driver{v1alpha1.TargetTypeDocker: dockerDriver}
			if composeDriver, err := compose.New(cmd.Context(), engine, agents.LocalHost{}, stateDir); err != nil {
				log.Info("Compose targets cannot be served", "reason", err.Error())
			} else {
				o.Drivers[v1alpha1.TargetTypeCompose] = composeDriver
			}
			o.Changes = dockerDriver.Changes(cmd.Context(), o.Namespace, log)
			return agent.Run(cmd.Context(), cfg, o, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "", "name of the Agent object")
	f.StringVarP(&o.Namespace, "namespace", "n", "", "namespace of the Agent object")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig with a credential of the stella-agent role, instead of the agent's own identity")
	f.StringVar(&join.Server, "server", "", "URL of the Stella server to join, such as https://stella.example.com:6443")
	f.StringVar(&join.CAHash, "ca-cert-hash", "", "sha256:<hex> of the server's CA, as stellactl agent join-token prints it")
	f.StringVar(&join.Token, "join-token", "", "one-time join token from stellactl agent join-token")
	f.DurationVar(&join.CertTTL, "cert-ttl", 30*24*time.Hour, "how long the agent's certificates live; each is renewed after two thirds of that")
	f.DurationVar(&o.Heartbeat, "heartbeat", 10*time.Second, "how often to renew the Lease and report status")
	f.DurationVar(&o.ObserveEvery, "observe-every", 30*time.Second, "how often to observe each Target when nothing happens on it")
	f.IntVar(&o.Parallel, "parallel", 4, "how many DeployTasks run at once, each on its own Target")
	f.StringVar(&stateDir, "state-dir", "/var/lib/stella", "where version stickers go when a Target sets no stickerPath: <state-dir>/<target>/stella.version.json")
	f.IntVarP(&verbosity, "v", "v", 0, "log verbosity")
	return cmd
}

// serverConfig is how the agent talks to the server: through the given
// kubeconfig, or with its own identity, joining first when it has none.
func serverConfig(ctx context.Context, kubeconfig, credentials string, join agent.JoinOptions, o *agent.Options, log logr.Logger) (*rest.Config, error) {
	if kubeconfig != "" {
		return kubecfg.Load(kubeconfig)
	}
	if !agent.HasIdentity(credentials) {
		if join.Token == "" || join.Server == "" || join.CAHash == "" {
			return nil, fmt.Errorf("%s holds no identity yet: give --server, --ca-cert-hash and --join-token (stellactl agent join-token %s -n %s prints them), or --kubeconfig", credentials, o.Name, o.Namespace)
		}
		if err := agent.Join(ctx, credentials, o.Namespace, o.Name, join); err != nil {
			return nil, err
		}
		log.Info("Joined", "server", join.Server, "identity", credentials)
	}
	id, err := agent.LoadIdentity(credentials, o.Namespace, o.Name, join.CertTTL)
	if err != nil {
		return nil, err
	}
	o.Alongside = append(o.Alongside, id.Renew(log))
	return id.RESTConfig()
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "stella-agent", version.String())
		},
	}
}
