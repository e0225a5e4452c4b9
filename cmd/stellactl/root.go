package main

import (
	"flag"
	"os"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/kubectl/pkg/cmd/apiresources"
	"k8s.io/kubectl/pkg/cmd/delete"
	"k8s.io/kubectl/pkg/cmd/describe"
	"k8s.io/kubectl/pkg/cmd/explain"
	"k8s.io/kubectl/pkg/cmd/get"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/cmd/wait"
	utilcomp "k8s.io/kubectl/pkg/util/completion"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// name is the command name that the kubectl library weaves into its help
// texts and error hints ("See 'stellactl get -h'").
const name = "stellactl"

const rootLong = `stellactl controls a Stella release control plane.

Stella's API is Kubernetes-compatible: stellactl is built on kubectl's own
command library, so get, describe, apply, delete and wait behave as in kubectl,
and every Stella kind is in the "stella" category ("stellactl get stella").

Which kubeconfig is used, first match wins:
  1. --kubeconfig FILE
  2. $KUBECONFIG (a list of files, merged as kubectl does)
  3. the local Stella data directory's admin.kubeconfig, if it exists:
     $STELLA_DATA_DIR/admin.kubeconfig, else ~/.local/share/stella/admin.kubeconfig
     (written by "stella serve" on first start)
  4. ~/.kube/config
--context, --namespace and the other connection flags then override parts of
the chosen file, as in kubectl.`

const rootExample = `  # List everything Stella knows about in the current namespace
  stellactl get stella

  # Create or update objects from a file, a directory or stdin (server-side apply)
  stellactl apply -f release.yaml

  # Wait until a release is ready
  stellactl wait --for=condition=Ready release/shop-1.0.0

  # Give alice the releaser role in namespace shop and write her kubeconfig
  stellactl auth create-user alice --role releaser -n shop > alice.kubeconfig`

// rootCommand assembles stellactl. The kubectl library commands share one
// Factory so that discovery, the REST mapper and the kubeconfig are resolved
// once per invocation.
func rootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	configFlags := genericclioptions.NewConfigFlags(true).
		WithDiscoveryBurst(300).
		WithDiscoveryQPS(50).
		WithWarningPrinter(streams)
	getter := &clientGetter{ConfigFlags: configFlags}
	f := cmdutil.NewFactory(getter)

	root := &cobra.Command{
		Use:           name,
		Short:         "stellactl controls a Stella release control plane",
		Long:          rootLong,
		Example:       rootExample,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			// Deprecation and validation warnings from the server go to
			// stderr, once each, like kubectl.
			rest.SetDefaultWarningHandler(rest.NewWarningWriter(streams.ErrOut, rest.WarningWriterOptions{Deduplicate: true}))
			in := kubeconfigInputs{
				Flag:          *configFlags.KubeConfig,
				EnvKubeconfig: os.Getenv("KUBECONFIG"),
				StellaDataDir: os.Getenv("STELLA_DATA_DIR"),
				Home:          homeDir(),
				Exists:        fileExists,
			}
			path, from := resolveKubeconfig(in)
			klog.V(2).InfoS("Choosing the kubeconfig", "path", path, "from", from)
			if path != "" {
				*configFlags.KubeConfig = path
			}
			if *configFlags.APIServer == "" {
				switch from {
				case "":
					getter.missing = noKubeconfigError(in)
				case "$KUBECONFIG":
					getter.missing = missingEnvKubeconfigError(in)
				}
			}
			// The Kubernetes libraries log what they also return (discovery
			// failures five times over): at the default verbosity only the
			// returned error is shown, once.
			if !klog.V(1).Enabled() {
				klog.SetLogger(logr.Discard())
			}
		},
	}

	flags := root.PersistentFlags()
	configFlags.AddFlags(flags)
	addVerbosityFlag(root)
	registerFlagCompletion(root, f, configFlags)

	getCmd := get.NewCmdGet(name, f, streams)
	getCmd.ValidArgsFunction = utilcomp.ResourceTypeAndNameCompletionFunc(f)
	getCmd.Example = getExample
	describeCmd := describe.NewCmdDescribe(name, f, streams)
	describeCmd.Long = describeLong
	describeCmd.Example = describeExample
	registerPromotionDescriber()
	describeArchivedPromotions(describeCmd, f, streams)
	deleteCmd := delete.NewCmdDelete(f, streams)
	deleteCmd.Long = deleteLong
	deleteCmd.Example = deleteExample
	waitCmd := wait.NewCmdWait(f, streams)
	waitCmd.Example = waitExample
	explainCmd := explain.NewCmdExplain(name, f, streams)
	explainCmd.Example = explainExample
	apiResourcesCmd := apiresources.NewCmdAPIResources(f, streams)
	apiResourcesCmd.Example = apiResourcesExample

	root.AddCommand(
		getCmd,
		describeCmd,
		applyCommand(f, streams),
		deleteCmd,
		waitCmd,
		explainCmd,
		apiResourcesCmd,
		releaseCommand(f, streams),
		promoteCommand(f, streams),
		gatesCommand(f, streams),
		rollbackCommand(f, streams),
		approvalCommand(f, streams, v1alpha1.ApprovalApprove),
		approvalCommand(f, streams, v1alpha1.ApprovalReject),
		evidenceCommand(f, streams),
		scanCommand(f, streams),
		advisoriesCommand(f, streams),
		agentCommand(f, streams),
		logCommand(f, streams),
		replayCommand(f, streams),
		historyCommand(f, streams),
		authCommand(f, configFlags, streams),
		versionCommand(f, streams),
	)
	rewordKubectlFlags(root)
	completeStellaNames(root, f)
	// cobra adds "completion bash|zsh|fish|powershell" on Execute; make it
	// visible in the command list, as it is one of stellactl's commands.
	root.CompletionOptions.HiddenDefaultCmd = false
	return root
}

// rewordKubectlFlags replaces the kubectl library's flag texts that speak of
// pods and kubectl, wherever a command has the flag.
func rewordKubectlFlags(cmd *cobra.Command) {
	for flag, usage := range map[string]string{"cascade": cascadeUsage, "prune": pruneUsage, "record": recordUsage} {
		if fl := cmd.LocalFlags().Lookup(flag); fl != nil {
			fl.Usage = usage
		}
	}
	for _, sub := range cmd.Commands() {
		rewordKubectlFlags(sub)
	}
}

// addVerbosityFlag exposes klog's -v so that `-v=6` shows the HTTP requests,
// as it does for kubectl. klog's other flags are left out on purpose.
func addVerbosityFlag(root *cobra.Command) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	klog.InitFlags(fs)
	v := fs.Lookup("v")
	v.Usage = "Log verbosity: 6 shows each request to the server, 8 also the bodies"
	root.PersistentFlags().AddGoFlag(v)
}

// registerFlagCompletion completes --namespace and --context from the server
// and from the kubeconfig that stellactl itself would use (kubectl's helpers
// read only kubectl's default files).
func registerFlagCompletion(root *cobra.Command, f cmdutil.Factory, configFlags *genericclioptions.ConfigFlags) {
	cmdutil.CheckErr(root.RegisterFlagCompletionFunc("namespace",
		func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			return utilcomp.CompGetResource(f, "namespace", toComplete), cobra.ShellCompDirectiveNoFileComp
		}))
	cmdutil.CheckErr(root.RegisterFlagCompletionFunc("context",
		func(_ *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
			raw, err := configFlags.ToRawKubeConfigLoader().RawConfig()
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			names := make([]string, 0, len(raw.Contexts))
			for n := range raw.Contexts {
				names = append(names, n)
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		}))
}
