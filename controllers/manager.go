// Package controllers holds Stella's reconcilers, one per kind, and the
// controller manager that runs them.
package controllers

import (
	"context"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/agentauth"
	"github.com/stella-ops/stella/internal/agentauth/agentid"
	"github.com/stella-ops/stella/internal/archive"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/scan"
	"github.com/stella-ops/stella/internal/scheme"
)

// Leader election timing. A replica that dies without releasing the Lease is
// replaced within LeaseDuration + RetryPeriod.
const (
	leaseDuration = 8 * time.Second
	renewDeadline = 6 * time.Second
	retryPeriod   = 1 * time.Second
)

// Options of the reconcilers' manager.
type Options struct {
	// MetricsAddr is where Prometheus metrics are served over HTTP; empty
	// or "0" serves none.
	MetricsAddr string
	// Evidence seals decisions into evidence; nil seals none.
	Evidence *evidence.Sealer
	// Scan configures the scanning of releases' images.
	Scan ScanOptions
}

// ScanOptions configure the scanner reconcilers.
type ScanOptions struct {
	// Scanner scans images; nil scans none (ScanReports from another
	// scanner still feed the gates).
	Scanner *scan.Scanner
	// RescanEvery re-matches each report at least this often.
	RescanEvery time.Duration
	// Parallel is how many reports are scanned at once.
	Parallel int
}

// The replicas elect the one that reconciles with the Lease
// LeaderElectionID in SystemNamespace, and write no other Lease.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=stella-system,resources=leases,verbs=create
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=stella-system,resources=leases,resourceNames=stella-controllers,verbs=get;update

// NewManager returns a controller manager with every Stella reconciler
// registered. Only the replica that holds the LeaderElectionID Lease runs
// them.
func NewManager(cfg *rest.Config, o Options) (manager.Manager, error) {
	mgr, err := newManager(cfg, v1alpha1.LeaderElectionID, o.MetricsAddr)
	if err != nil {
		return nil, err
	}
	if err := AddIndexes(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	c := mgr.GetClient()
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	// Finished promotions beyond their environment's retention move into
	// the archive, next to the evidence that seals them.
	var promotionArchive *archive.Archive
	if o.Evidence != nil {
		if promotionArchive, err = archive.Open(filepath.Join(o.Evidence.Dir(), archive.DirName), o.Evidence.Store); err != nil {
			return nil, err
		}
	}
	for _, r := range []interface{ SetupWithManager(ctrl.Manager) error }{
		&ReleaseReconciler{Client: c},
		&EnvironmentReconciler{Client: c, Recorder: mgr.GetEventRecorderFor("stella-environments")},
		&GateReconciler{Client: c},
		&AutoPromotionReconciler{Client: c, Archive: promotionArchive},
		&ApprovalReconciler{Client: c},
		&PromotionReconciler{Client: c, APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorderFor("stella-promotions"), Evidence: o.Evidence, Archive: promotionArchive},
		&AgentReconciler{Client: c, Recorder: mgr.GetEventRecorderFor("stella-agents")},
		&TargetReconciler{Client: c},
		&VEXStatementReconciler{Client: c},
		&agentauth.Approver{Client: c, Clientset: clientset},
		&agentauth.JoinTokenCleaner{Client: c},
	} {
		if err := r.SetupWithManager(mgr); err != nil {
			return nil, err
		}
	}
	var blobs evidence.BlobStore
	if o.Evidence != nil {
		// The sealer takes the transparency log's lock while this replica
		// holds the Lease, and lets it go when the Lease is lost: replicas
		// may share one evidence directory.
		if err := mgr.Add(o.Evidence); err != nil {
			return nil, err
		}
		if err := (&EvidencePacketReconciler{Client: c, Sealer: o.Evidence}).SetupWithManager(mgr); err != nil {
			return nil, err
		}
		if err := (&PromotionArchiver{Client: c, APIReader: mgr.GetAPIReader(), Archive: promotionArchive, Now: time.Now}).SetupWithManager(mgr); err != nil {
			return nil, err
		}
		blobs = o.Evidence.Store
	}
	if o.Scan.Scanner != nil {
		for _, r := range []interface{ SetupWithManager(ctrl.Manager) error }{
			&ReleaseScanReconciler{Client: c},
			&ScanReportReconciler{Client: c, Scanner: o.Scan.Scanner, Blobs: blobs, Recorder: mgr.GetEventRecorderFor("stella-scanner"),
				RescanEvery: o.Scan.RescanEvery, Parallel: o.Scan.Parallel},
		} {
			if err := r.SetupWithManager(mgr); err != nil {
				return nil, err
			}
		}
	}
	return mgr, nil
}

// NewBareManager returns a manager with no reconcilers whose runnables run
// only on the replica that holds the named Lease.
func NewBareManager(cfg *rest.Config, leaseName string) (manager.Manager, error) {
	return newManager(cfg, leaseName, "0")
}

func newManager(cfg *rest.Config, leaseName, metricsAddr string) (manager.Manager, error) {
	if metricsAddr == "" {
		metricsAddr = "0"
	}
	ld, rd, rp := leaseDuration, renewDeadline, retryPeriod
	return ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme.New(),
		LeaderElection:                true,
		LeaderElectionID:              leaseName,
		LeaderElectionNamespace:       v1alpha1.SystemNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &ld,
		RenewDeadline:                 &rd,
		RetryPeriod:                   &rp,
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		// Reconcilers never read managed fields; dropping them from the
		// cache keeps what it holds smaller. The only Secrets read through
		// the cache are the join tokens, so it holds no other: the
		// controllers' role may list Secrets in that namespace only.
		Cache: cache.Options{DefaultTransform: cache.TransformStripManagedFields(), ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{agentid.JoinTokenNamespace: {}}},
		}},
		HealthProbeBindAddress: "0",
	})
}
