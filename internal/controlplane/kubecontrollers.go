package controlplane

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/controller-manager/pkg/informerfactory"
	"k8s.io/kubernetes/pkg/controller/certificates/signer"
	"k8s.io/kubernetes/pkg/controller/garbagecollector"
	namespacecontroller "k8s.io/kubernetes/pkg/controller/namespace"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/stella-ops/stella/internal/pki"
)

// issuedCertLifetime caps client certificates signed through the
// certificates API (user credentials); a CSR may ask for less.
const issuedCertLifetime = 365 * 24 * time.Hour

// minCertTTL is the shortest lifetime the signer grants.
const minCertTTL = 10 * time.Minute

// kubeControllers are the parts of kube-controller-manager that a control
// plane without nodes needs: namespace deletion, garbage collection of owned
// objects, and signing of approved client certificate requests. They run
// only on the replica that holds the leader Lease.
func kubeControllers(cfg *rest.Config, ca pki.Dir) manager.RunnableFunc {
	return func(ctx context.Context) error {
		cfg := rest.CopyConfig(cfg)
		cfg.QPS, cfg.Burst = 100, 200
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		md, err := metadata.NewForConfig(cfg)
		if err != nil {
			return err
		}
		inf := informers.NewSharedInformerFactory(cs, 0)
		mdInf := metadatainformer.NewSharedInformerFactory(md, 0)

		ns := namespacecontroller.NewNamespaceController(ctx, cs, md,
			cs.Discovery().ServerPreferredNamespacedResources,
			inf.Core().V1().Namespaces(), 5*time.Minute, corev1.FinalizerKubernetes)

		mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
		started := make(chan struct{})
		gc, err := garbagecollector.NewGarbageCollector(ctx, cs, md, mapper,
			garbagecollector.DefaultIgnoredResources(),
			informerfactory.NewInformerFactory(inf, mdInf), started)
		if err != nil {
			return fmt.Errorf("garbage collector: %w", err)
		}

		csr, err := signer.NewKubeAPIServerClientCSRSigningController(ctx, cs,
			inf.Certificates().V1().CertificateSigningRequests(),
			ca.File(pki.CACertFile), ca.File(pki.CAKeyFile), issuedCertLifetime)
		if err != nil {
			return fmt.Errorf("certificate signer: %w", err)
		}

		inf.Start(ctx.Done())
		mdInf.Start(ctx.Done())
		close(started)
		go ns.Run(ctx, 2)
		go gc.Run(ctx, 2, 30*time.Second)
		go gc.Sync(ctx, cs.Discovery(), 30*time.Second)
		go csr.Run(ctx, 1)
		<-ctx.Done()
		inf.Shutdown()
		mdInf.Shutdown()
		return nil
	}
}
