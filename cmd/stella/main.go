// Command stella is the Stella server: `stella serve` runs the whole control
// plane in one process; `stella controllers` runs only the reconcilers
// against an existing Kubernetes API server.
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
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/stella-ops/stella/controllers"
	"github.com/stella-ops/stella/internal/agent/serverdeploy"
	"github.com/stella-ops/stella/internal/controlplane"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/evidence/s3store"
	"github.com/stella-ops/stella/internal/gctune"
	"github.com/stella-ops/stella/internal/install"
	kubecfg "github.com/stella-ops/stella/internal/kubeconfig"
	"github.com/stella-ops/stella/internal/logging"
	"github.com/stella-ops/stella/internal/scan"
	"github.com/stella-ops/stella/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The first signal asks for an orderly stop; a second one ends the
	// process at once, whatever it was waiting on.
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := rootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// log receives Stella's own messages; set up before any command runs.
var log logr.Logger

func rootCommand() *cobra.Command {
	var verbosity int
	root := &cobra.Command{
		Use:           "stella",
		Short:         "Stella release control plane server",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			log = logging.Setup(verbosity)
		},
	}
	root.PersistentFlags().IntVarP(&verbosity, "v", "v", 0, "log verbosity: 0 shows errors and Stella's own messages, 1 and up everything the Kubernetes libraries log")
	root.AddCommand(serveCommand(), controllersCommand(), installCRDsCommand(), keysCommand(), advisoriesCommand(), logCommand(), snapshotCommand(), versionCommand())
	return root
}

// defaultDataDir is where `stella serve` keeps its state unless told otherwise.
func defaultDataDir() string {
	if d := os.Getenv("STELLA_DATA_DIR"); d != "" {
		return d
	}
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".local", "share", "stella")
	}
	return "stella-data"
}

func serveCommand() *cobra.Command {
	o := controlplane.Options{NewManager: controllers.NewBareManager}
	var s3 func() *s3store.Options
	var metricsListen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the control plane: embedded etcd, the API server, and the reconcilers",
		Long: `Run the whole control plane in one process.

The first start creates a CA, a serving certificate, a service-account key and
an admin credential in the data directory and writes <data-dir>/admin.kubeconfig
for kubectl and stellactl. Later starts reuse them.

With --etcd-servers, state lives in an external etcd cluster and several
replicas may run at once; only the one holding the leader Lease reconciles.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Log = log
			o.EvidenceS3 = s3()
			o.NewReconcilers = func(cfg *rest.Config, sealer *evidence.Sealer, scanner *scan.Scanner) (manager.Manager, error) {
				return controllers.NewManager(cfg, controllers.Options{MetricsAddr: metricsListen, Evidence: sealer,
					Scan: controllers.ScanOptions{Scanner: scanner, RescanEvery: o.Scan.RescanEvery, Parallel: o.Scan.Parallel}})
			}
			return controlplane.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	s3 = s3store.AddFlags(f)
	f.StringVar(&o.DataDir, "data-dir", defaultDataDir(), "directory for certificates, keys, the admin kubeconfig and embedded etcd data ($STELLA_DATA_DIR)")
	f.StringVar(&o.Listen, "listen", "127.0.0.1:6443", "address the API server serves HTTPS on")
	f.StringSliceVar(&o.EtcdServers, "etcd-servers", nil, "client URLs of an external etcd cluster (default: run etcd embedded in the data directory)")
	f.StringVar(&o.EtcdPrefix, "etcd-prefix", "/registry", "key prefix of the objects in etcd")
	f.BoolVar(&o.Controllers, "controllers", true, "run the Stella reconcilers in this process")
	f.StringVar(&o.EvidenceDir, "evidence-dir", "", "directory of the evidence signing keys, transparency log and blobs; replicas may share one, and only the holder of the leader Lease appends to the log (default: evidence in the data directory)")
	f.StringVar(&metricsListen, "metrics-listen", "", "host:port to serve Prometheus metrics on over HTTP, such as 127.0.0.1:9090 (default: none)")
	f.BoolVar(&o.ReinitializeStore, "reinitialize-store", false, "begin an empty etcd store when the data directory was initialised but its store is missing or damaged (a damaged one is moved aside), keeping the PKI and the evidence log; without it such a directory is refused")
	f.BoolVar(&o.WatchCache, "watch-cache", true, "keep every object and its recent changes decoded in the API server's memory, so that lists and watches do not read etcd: faster, at about twice the memory under load (see README, Memory)")
	f.DurationVar(&o.AgentCertTTL, "cert-ttl", 30*24*time.Hour, "longest lifetime of an agent's certificate: a request asking for more, or for no lifetime, is granted this; agents renew after two thirds of it")
	f.BoolVar(&o.Profiling, "profiling", false, "serve Go profiles of the whole process at /debug/pprof on the API server (admins only)")
	addDeployerFlags(f, &o.Deployer)
	f.BoolVar(&o.Scan.Enabled, "scan", true, "scan the images of releases against the imported advisories (with --controllers)")
	f.StringVar(&o.Scan.Dir, "scan-dir", "", "directory of the scanner's layer cache and advisory snapshots (default: scan in the data directory)")
	addScanFlags(f, &o.Scan)
	return cmd
}

// addScanFlags sets how the scanner reads images and applies VEX.
func addScanFlags(f *pflag.FlagSet, o *controlplane.ScanOptions) {
	f.StringSliceVar(&o.Registries, "scan-registries", nil, "the only registries (host or host:port) the scanner reads images from (default: any)")
	f.StringSliceVar(&o.Layouts, "scan-oci-layouts", nil, "OCI image layout directories the scanner looks in before any registry, for sites without one")
	f.IntVar(&o.Parallel, "scan-parallel", 2, "how many scan reports are worked on at once, and how many layers are read at once in all")
	f.StringSliceVar(&o.Trust, "vex-trust", nil, "VEX issuers, most trusted first: settles statements of the same time that disagree")
	f.DurationVar(&o.RescanEvery, "rescan-every", 6*time.Hour, "how often each scan report is matched again, keeping it younger than the gates' maxReportAge")
}

// addDeployerFlags sets how the reconcilers deploy to the Targets that name
// no agent: SSH, Nomad and ECS targets.
func addDeployerFlags(f *pflag.FlagSet, o *serverdeploy.Options) {
	f.DurationVar(&o.ObserveEvery, "observe-every", 30*time.Second, "how often to observe each Target that names no agent (SSH, Nomad and ECS targets)")
	f.IntVar(&o.Parallel, "deploy-parallel", 4, "how many DeployTasks to Targets that name no agent run at once, each on its own Target")
	f.DurationVar(&o.ECSPollEvery, "ecs-poll-every", 15*time.Second, "least time between two looks at a deploying ECS service")
}

func controllersCommand() *cobra.Command {
	var kubeconfig, metricsListen, evidenceDir string
	var s3 func() *s3store.Options
	var deployer serverdeploy.Options
	var scanOpts controlplane.ScanOptions
	cmd := &cobra.Command{
		Use:   "controllers",
		Short: "Run only the Stella reconcilers against an existing API server",
		Long: `Run only the Stella reconcilers, against any Kubernetes API server that
serves the Stella CRDs (install them with 'stella install-crds' or
'kubectl apply -k config/crd'). Several replicas may run; the one holding the
leader Lease in the stella-system namespace reconciles.

The controllers need no admin credential: run them as the ServiceAccount
stella-system/stella-controllers, which install-crds creates and binds to the
role stella-controllers (see docs/operations.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := kubecfg.Load(kubeconfig)
			if err != nil {
				return err
			}
			if err := install.CheckServed(cmd.Context(), cfg); err != nil {
				return err
			}
			o := controllers.Options{MetricsAddr: metricsListen}
			if evidenceDir == "" {
				log.Info("No --evidence-dir: decisions are not sealed into evidence")
			} else {
				if o.Evidence, err = s3store.Open(evidenceDir, s3(), log); err != nil {
					return fmt.Errorf("--evidence-dir %s: %w", evidenceDir, err)
				}
				defer o.Evidence.Close()
			}
			if scanOpts.Dir == "" {
				log.Info("No --scan-dir: the images of releases are not scanned")
			} else {
				o.Scan = controllers.ScanOptions{RescanEvery: scanOpts.RescanEvery, Parallel: scanOpts.Parallel}
				if o.Scan.Scanner, err = scan.Open(scanOpts.Options); err != nil {
					return fmt.Errorf("--scan-dir %s: %w", scanOpts.Dir, err)
				}
			}
			mgr, err := controllers.NewManager(cfg, o)
			if err != nil {
				return err
			}
			if err := serverdeploy.AddToManager(mgr, deployer, log); err != nil {
				return err
			}
			log.Info("Starting Stella controllers", "server", cfg.Host, "version", version.String())
			go gctune.Run(cmd.Context())
			return mgr.Start(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the API server (default: $KUBECONFIG, then ~/.kube/config)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "host:port to serve Prometheus metrics on over HTTP (default: none)")
	cmd.Flags().StringVar(&evidenceDir, "evidence-dir", "", "directory of the evidence signing keys, transparency log and blobs; replicas may share one, and only the holder of the leader Lease appends to the log (default: seal nothing)")
	s3 = s3store.AddFlags(cmd.Flags())
	addDeployerFlags(cmd.Flags(), &deployer)
	cmd.Flags().StringVar(&scanOpts.Dir, "scan-dir", "", "directory of the scanner's layer cache and advisory snapshots; one replica writes it at a time; import advisories into it with 'stella advisories import --scan-dir' (default: scan nothing)")
	addScanFlags(cmd.Flags(), &scanOpts)
	return cmd
}

func installCRDsCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "install-crds",
		Short: "Install or update the Stella CRDs, roles and admission policies on an API server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := kubecfg.Load(kubeconfig)
			if err != nil {
				return err
			}
			if err := install.Apply(cmd.Context(), cfg, install.Options{AdmissionPolicies: true}); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Stella CRDs, roles and admission policies installed on", cfg.Host)
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the API server (default: $KUBECONFIG, then ~/.kube/config)")
	return cmd
}

func keysCommand() *cobra.Command {
	var dataDir, evidenceDir string
	keys := &cobra.Command{Use: "keys", Short: "Manage the keys that sign evidence"}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Retire the evidence signing key and make a new one",
		Long: `Retire the Ed25519 key that signs evidence envelopes, keeping its public key
under evidence/retired/<key ID>.pub (served at /evidence/v1/keys/<key ID>.pub, so
packets it sealed still verify), and make a new one. A running server keeps
signing with the old key until it restarts. The log's checkpoint key does not
change.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if evidenceDir == "" {
				evidenceDir = filepath.Join(dataDir, "evidence")
			}
			oldID, newID, err := evidence.RotateSigningKey(evidenceDir)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "retired signing key %s; new signing key %s (used from the next start)\n", oldID, newID)
			return err
		},
	}
	rotate.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "data directory of the server ($STELLA_DATA_DIR)")
	rotate.Flags().StringVar(&evidenceDir, "evidence-dir", "", "evidence directory (default: evidence in the data directory)")
	keys.AddCommand(rotate)
	return keys
}

func advisoriesCommand() *cobra.Command {
	var dataDir, scanDir, source string
	advisories := &cobra.Command{Use: "advisories", Short: "Manage the scanner's advisory snapshots on this machine"}
	importCmd := &cobra.Command{
		Use:   "import PATH",
		Short: "Import OSV advisories into a scan directory, as the active snapshot",
		Long: `Import OSV JSON documents (a file, a directory of .json files, or a zip of them)
straight into a scan directory, where a running server or 'stella controllers'
finds the new active snapshot within ten seconds and matches every report
again. This is for deployments whose API server does not run the scanner
(stella controllers --scan-dir); with 'stella serve', use
'stellactl advisories import', which needs no access to the machine.`,
		Example: `  stella advisories import --scan-dir /var/lib/stella/scan Debian-all.zip --source osv.dev/Debian`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if scanDir == "" {
				scanDir = filepath.Join(dataDir, "scan")
			}
			snap, err := scan.ReadSnapshot(args[0])
			if err != nil {
				return err
			}
			store, err := scan.OpenAdvisoryStore(scan.AdvisoryDir(scanDir))
			if err != nil {
				return err
			}
			if source == "" {
				source = args[0]
			}
			info, activated, err := store.Import(snap, source, time.Now())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), scan.ImportResult{Snapshot: info, Activated: activated})
			return err
		},
	}
	importCmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "data directory of the server ($STELLA_DATA_DIR)")
	importCmd.Flags().StringVar(&scanDir, "scan-dir", "", "scan directory (default: scan in the data directory)")
	importCmd.Flags().StringVar(&source, "source", "", "where the advisories come from, kept with the snapshot (default: PATH)")
	advisories.AddCommand(importCmd)
	return advisories
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "stella", version.String())
		},
	}
}
