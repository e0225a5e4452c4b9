// Command stella-agent runs next to a deploy target. It reports its Agent's
// status and heartbeats with a Lease, so the control plane knows it is alive
// and what it serves.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

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
		o          agentOptions
		kubeconfig string
		namespace  string
		verbosity  int
	)
	cmd := &cobra.Command{
		Use:   "run --name NAME -n NAMESPACE --kubeconfig FILE",
		Short: "Report the agent's status and heartbeat until stopped",
		Long: `Report the Agent's status (version, hostname, the Targets it serves) and
renew its heartbeat Lease (agent-NAME in the Agent's namespace) until stopped.

The Agent object must exist (an admin creates it), and the kubeconfig must
carry a credential with the stella-agent role in its namespace, for example
one made with 'stellactl auth create-user NAME --role agent -n NAMESPACE'.
On SIGTERM the agent reports itself stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logging.Setup(verbosity)
			if o.name == "" || namespace == "" {
				return fmt.Errorf("--name and --namespace are required: they name the Agent object this agent reports for")
			}
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
			if err != nil {
				return fmt.Errorf("load kubeconfig: %w", err)
			}
			a, err := newAgent(cfg, namespace, o, log)
			if err != nil {
				return err
			}
			return a.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "name of the Agent object")
	f.StringVarP(&namespace, "namespace", "n", "", "namespace of the Agent object")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig with the agent's credential (default: $KUBECONFIG, then ~/.kube/config)")
	f.DurationVar(&o.heartbeat, "heartbeat", 10*time.Second, "how often to renew the Lease and report status")
	f.IntVarP(&verbosity, "v", "v", 0, "log verbosity")
	return cmd
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
