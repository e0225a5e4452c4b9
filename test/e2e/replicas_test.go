package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	"github.com/stella-ops/stella/test/framework"
)

// leaseHolder is who holds the reconcilers' Lease, or "".
func leaseHolder(ctx context.Context, c client.Client) string {
	lease := &coordinationv1.Lease{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.LeaderElectionID}, lease); err != nil {
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

// replicaDataDir makes the data directory of another replica of first:
// its own (one process holds a data directory), with first's PKI and
// stella.json, as the README says to set replicas up.
func replicaDataDir(first *framework.Server) string {
	GinkgoHelper()
	dir := filepath.Join(GinkgoT().TempDir(), "replica")
	Expect(os.CopyFS(filepath.Join(dir, "pki"), os.DirFS(filepath.Join(first.DataDir, "pki")))).To(Succeed())
	marker, err := os.ReadFile(filepath.Join(first.DataDir, "stella.json"))
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(dir, "stella.json"), marker, 0o600)).To(Succeed())
	return dir
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
		second := startServer(framework.ServerOptions{EtcdServers: []string{etcd.ClientURL}, DataDir: replicaDataDir(first), Args: []string{"--watch-cache=false"}})
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

var _ = Describe("replicas sharing one evidence directory", func() {
	It("seal into one log through a forced failover: no fork, no lost entry, every packet verifies", func(ctx SpecContext) {
		etcd, err := framework.StartEtcd(bin)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(etcd.Stop)
		evidenceDir := filepath.Join(GinkgoT().TempDir(), "evidence")
		shared := []string{"--evidence-dir", evidenceDir}

		By("starting two replicas on one --evidence-dir: the second is not refused")
		first := startServer(framework.ServerOptions{EtcdServers: []string{etcd.ClientURL}, Args: shared})
		c := first.AdminClient()
		var holder string
		Eventually(func() string { holder = leaseHolder(ctx, c); return holder }).
			WithContext(ctx).WithTimeout(30 * time.Second).ShouldNot(BeEmpty())
		second := startServer(framework.ServerOptions{EtcdServers: []string{etcd.ClientURL}, DataDir: replicaDataDir(first), Args: shared})

		ns := newNamespace(ctx, c)
		for _, r := range []*v1alpha1.Release{release(ns, "shop-1", "1.0.0"), release(ns, "shop-2", "2.0.0")} {
			Expect(c.Create(ctx, r)).To(Succeed())
		}
		// One environment per decision: a promotion into an environment
		// without Targets waits after its decision is sealed.
		for _, env := range []string{"dev", "qa", "stage", "prod"} {
			Expect(c.Create(ctx, environment(ns, env))).To(Succeed())
		}

		By("sealing two decisions on the first replica, which holds the Lease")
		var promos []*v1alpha1.Promotion
		var sealedByFirst []*v1alpha1.EvidencePacket
		for _, step := range [][2]string{{"shop-1", "dev"}, {"shop-2", "qa"}} {
			promo := promote(ctx, c, ns, step[0], step[1])
			promos = append(promos, promo)
			sealedByFirst = append(sealedByFirst, sealedPacket(ctx, c, promo))
		}
		Expect(leaseHolder(ctx, c)).To(Equal(holder), "the first replica keeps the Lease while it lives")
		acknowledged := sealedByFirst[len(sealedByFirst)-1]
		work := GinkgoT().TempDir()
		handedOver := filepath.Join(work, "handed-over.cp")
		Expect(os.WriteFile(handedOver, []byte(acknowledged.Status.Checkpoint), 0o600)).To(Succeed())

		By("reading the log on the second replica, which does not hold the Lease")
		out, err := stellactl(ctx, second.Kubeconfig(), "log", "checkpoint")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(Equal(acknowledged.Status.Checkpoint), "a replica without the Lease serves the checkpoint the Lease holder stored")

		By("killing the first replica: the second takes the Lease and the log's lock")
		first.Kill()
		c = second.AdminClient()
		Eventually(func() string { return leaseHolder(ctx, c) }).WithContext(ctx).WithTimeout(30 * time.Second).
			ShouldNot(Or(BeEmpty(), Equal(holder)))

		By("sealing two more decisions on the second replica")
		var sealedBySecond []*v1alpha1.EvidencePacket
		for _, step := range [][2]string{{"shop-1", "stage"}, {"shop-2", "prod"}} {
			promo := promote(ctx, c, ns, step[0], step[1])
			promos = append(promos, promo)
			sealedBySecond = append(sealedBySecond, sealedPacket(ctx, c, promo))
		}
		indexes := map[string]bool{}
		for _, packet := range append(sealedByFirst, sealedBySecond...) {
			indexes[packet.Status.LogIndex] = true
		}
		Expect(indexes).To(HaveLen(4), "every decision has an index of its own: the second replica appended after the first's entries")
		last, err := strconv.ParseUint(acknowledged.Status.LogIndex, 10, 64)
		Expect(err).NotTo(HaveOccurred())
		for _, packet := range sealedBySecond {
			index, err := strconv.ParseUint(packet.Status.LogIndex, 10, 64)
			Expect(err).NotTo(HaveOccurred())
			Expect(index).To(BeNumerically(">", last), "packet %s", packet.Name)
		}

		By("checking that the log after the failover extends the log the first replica acknowledged")
		out, err = stellactl(ctx, second.Kubeconfig(), "log", "verify", "--from", handedOver)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("consistent"))
		for _, packet := range sealedByFirst {
			// The first replica's acknowledged entries are in the log the
			// second extends: one tree, no fork, no lost entry.
			from := filepath.Join(work, packet.Name+".cp")
			Expect(os.WriteFile(from, []byte(packet.Status.Checkpoint), 0o600)).To(Succeed())
			out, err := stellactl(ctx, second.Kubeconfig(), "log", "verify", "--from", from)
			Expect(err).NotTo(HaveOccurred(), out)
		}

		By("verifying every promotion's packet")
		for _, promo := range promos {
			tarPath := filepath.Join(work, promo.Name+".tar")
			out, err := stellactl(ctx, second.Kubeconfig(), "evidence", "export", promo.Name, "-n", ns, "-o", tarPath)
			Expect(err).NotTo(HaveOccurred(), out)
			out, err = stellactlEnv(ctx, []string{"KUBECONFIG=/nonexistent"}, "evidence", "verify", tarPath)
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("verified:"))
		}
	})
})
