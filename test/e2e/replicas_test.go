package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/controllers"
	"github.com/stella-ops/stella/test/framework"
)

// leaseHolder is who holds the reconcilers' Lease, or "".
func leaseHolder(ctx context.Context, c client.Client) string {
	lease := &coordinationv1.Lease{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: controllers.SystemNamespace, Name: controllers.LeaderElectionID}, lease); err != nil {
		return ""
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// releaseReady reports whether the reconcilers marked the release Ready.
func releaseReady(ctx context.Context, c client.Client, ns, name string) bool {
	rel := &v1alpha1.Release{}
	return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, rel) == nil &&
		meta.IsStatusConditionTrue(rel.Status.Conditions, v1alpha1.ConditionReady)
}

// releaseSettled reports whether the release is Ready and lists the
// scanner's report of each of its images: after that, its status changes
// only when a report's verdict does.
func releaseSettled(ctx context.Context, c client.Client, ns, name string) bool {
	rel := &v1alpha1.Release{}
	return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, rel) == nil &&
		meta.IsStatusConditionTrue(rel.Status.Conditions, v1alpha1.ConditionReady) &&
		len(rel.Status.Components) == len(rel.Spec.Components)
}

// watchCacheOf says whether the server's API server keeps a watch cache
// of Releases: it reports the cache's metrics only then.
func watchCacheOf(ctx context.Context, s *framework.Server) bool {
	// The API server sets up a custom resource's storage on its first use.
	Expect(s.AdminClient().List(ctx, &v1alpha1.ReleaseList{}, client.Limit(1))).To(Succeed())
	body, err := discovery.NewDiscoveryClientForConfigOrDie(s.AdminConfig()).RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	Expect(err).NotTo(HaveOccurred(), string(body))
	return strings.Contains(string(body), `apiserver_watch_cache_initialization_duration_seconds_count{group="stella-ops.org",resource="releases"}`)
}

var _ = Describe("several replicas on an external etcd", func() {
	It("hands reconciling to the other replica within 15 seconds when the Lease holder dies", func(ctx SpecContext) {
		etcd, err := framework.StartEtcd(bin)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(etcd.Stop)

		first := startServer(framework.ServerOptions{EtcdServers: []string{etcd.ClientURL}})
		c := first.AdminClient()
		var holder string
		Eventually(func() string { holder = leaseHolder(ctx, c); return holder }).
			WithContext(ctx).WithTimeout(30 * time.Second).ShouldNot(BeEmpty())

		// The second replica runs without the API server's watch cache, as
		// a site short of memory would: what it reconciles after the
		// takeover it reads through etcd's own watches.
		// Each replica has its own data directory (one process holds a data
		// directory), with the first one's PKI and stella.json, as the README
		// says to set replicas up.
		secondDir := filepath.Join(GinkgoT().TempDir(), "second")
		Expect(os.CopyFS(filepath.Join(secondDir, "pki"), os.DirFS(filepath.Join(first.DataDir, "pki")))).To(Succeed())
		marker, err := os.ReadFile(filepath.Join(first.DataDir, "stella.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(secondDir, "stella.json"), marker, 0o600)).To(Succeed())
		second := startServer(framework.ServerOptions{EtcdServers: []string{etcd.ClientURL}, DataDir: secondDir, Args: []string{"--watch-cache=false"}})
		Eventually(func() bool { return watchCacheOf(ctx, first) }).WithContext(ctx).WithTimeout(10*time.Second).
			Should(BeTrue(), "the watch cache is on by default")
		Consistently(func() bool { return watchCacheOf(ctx, second) }).WithContext(ctx).WithTimeout(2*time.Second).
			Should(BeFalse(), "--watch-cache=false turns it off")
		c = second.AdminClient()
		ns := newNamespace(ctx, c)
		Expect(c.Create(ctx, release(ns, "before", "1.0.0"))).To(Succeed())
		Eventually(func() bool { return releaseReady(ctx, c, ns, "before") }).WithContext(ctx).WithTimeout(30 * time.Second).Should(BeTrue())
		Expect(leaseHolder(ctx, c)).To(Equal(holder), "the first replica keeps the Lease while it lives")

		first.Kill()
		killed := time.Now()
		Expect(c.Create(ctx, release(ns, "after", "1.0.0"))).To(Succeed())
		Eventually(func() bool { return releaseReady(ctx, c, ns, "after") }).
			WithContext(ctx).WithTimeout(15*time.Second).WithPolling(200*time.Millisecond).Should(BeTrue(),
			"the second replica must reconcile within 15s of the holder's death")
		GinkgoWriter.Printf("reconciling resumed %s after the Lease holder was killed\n", time.Since(killed).Round(100*time.Millisecond))
		Expect(leaseHolder(ctx, c)).NotTo(Equal(holder))
	})
})

var _ = Describe("stella controllers", func() {
	It("reconciles against an API server that only serves the API", func(ctx SpecContext) {
		api := startServer(framework.ServerOptions{NoControllers: true})
		c := api.AdminClient()
		ns := newNamespace(ctx, c)
		Expect(c.Create(ctx, release(ns, "waiting", "1.0.0"))).To(Succeed())
		Consistently(func() bool { return releaseReady(ctx, c, ns, "waiting") }).
			WithContext(ctx).WithTimeout(3*time.Second).Should(BeFalse(), "nothing reconciles in an API-only server")

		out, err := framework.Run(ctx, bin.Stella, nil, "install-crds", "--kubeconfig", api.Kubeconfig())
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("installed"))

		session, err := gexec.Start(exec.Command(bin.Stella, "controllers", "--kubeconfig", api.Kubeconfig()), GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { session.Terminate().Wait(30 * time.Second) })
		Eventually(func() bool { return releaseReady(ctx, c, ns, "waiting") }).WithContext(ctx).WithTimeout(30 * time.Second).Should(BeTrue())
		Expect(leaseHolder(ctx, c)).NotTo(BeEmpty())
	})
})
