package e2e

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/test/framework"
)

// stoppedDataDir runs a server of its own until it is ready, stops it, and
// returns its data directory.
func stoppedDataDir() string {
	GinkgoHelper()
	srv := startServer(framework.ServerOptions{})
	Expect(srv.Stop()).To(Succeed(), srv.Log())
	return srv.DataDir
}

// noStackTrace asserts that the server's output is a message, not a crash.
func noStackTrace(out string) {
	GinkgoHelper()
	Expect(out).NotTo(ContainSubstring("goroutine"), out)
	Expect(out).NotTo(ContainSubstring("panic"), out)
}

// walFile is the one write-ahead log file of a stopped server's store.
func walFile(dataDir string) string {
	GinkgoHelper()
	files, err := filepath.Glob(filepath.Join(dataDir, "etcd", "member", "wal", "*.wal"))
	Expect(err).NotTo(HaveOccurred())
	Expect(files).To(HaveLen(1))
	return files[0]
}

// cutWAL cuts the write-ahead log in the middle of what it holds (it is
// preallocated with zeros): the database has applied entries the log no
// longer has, and etcd starts but never becomes ready.
func cutWAL(dataDir string) {
	GinkgoHelper()
	wal := walFile(dataDir)
	data, err := os.ReadFile(wal)
	Expect(err).NotTo(HaveOccurred())
	end := len(bytes.TrimRight(data, "\x00"))
	Expect(os.Truncate(wal, int64(end/2))).To(Succeed())
}

var _ = Describe("a data directory", func() {
	It("with random bytes over etcd's database is refused with a message naming the file and the way back, not a stack trace", func(ctx SpecContext) {
		dir := stoppedDataDir()
		db := filepath.Join(dir, "etcd", "member", "snap", "db")
		info, err := os.Stat(db)
		Expect(err).NotTo(HaveOccurred())
		garbage := make([]byte, info.Size())
		_, _ = rand.Read(garbage)
		Expect(os.WriteFile(db, garbage, 0o600)).To(Succeed())

		out := serveMustFail(dir)
		Expect(out).To(ContainSubstring(db))
		Expect(out).To(ContainSubstring("is damaged"))
		Expect(out).To(ContainSubstring("stella snapshot restore"))
		noStackTrace(out)
		Expect(os.ReadFile(db)).To(Equal(garbage), "the damaged database is left as it was")
	})

	It("whose store is lost is refused, and --reinitialize-store begins an empty one beside the kept PKI and evidence, and says so", func(ctx SpecContext) {
		dir := stoppedDataDir()
		ca, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
		Expect(err).NotTo(HaveOccurred())
		Expect(os.RemoveAll(filepath.Join(dir, "etcd"))).To(Succeed())

		out := serveMustFail(dir)
		Expect(out).To(ContainSubstring("has no etcd store"))
		Expect(out).To(ContainSubstring("--reinitialize-store"))
		Expect(out).To(ContainSubstring("stella snapshot restore"))
		Expect(filepath.Join(dir, "etcd")).NotTo(BeADirectory(), "a refused start begins no store")

		srv := startServer(framework.ServerOptions{DataDir: dir, Args: []string{"--reinitialize-store"}})
		Expect(srv.Log()).To(ContainSubstring("Beginning an empty store"))
		Expect(srv.Log()).To(ContainSubstring("kept: the CA, certificates and keys in " + filepath.Join(dir, "pki")))
		Expect(srv.Log()).To(ContainSubstring("transparency log and blobs in " + filepath.Join(dir, "evidence")))
		Expect(os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))).To(Equal(ca), "the CA is kept")
	})

	It("whose write-ahead log is damaged ends the start with an error within a bound, and SIGTERM ends a start at once", func(ctx SpecContext) {
		dir := stoppedDataDir()
		cutWAL(dir)

		By("SIGTERM while etcd is starting")
		s, err := framework.LaunchServer(bin, framework.ServerOptions{DataDir: dir})
		Expect(err).NotTo(HaveOccurred())
		time.Sleep(2 * time.Second)
		Expect(syscall.Kill(s.Pid(), syscall.SIGTERM)).To(Succeed())
		Expect(s.Wait(30*time.Second)).To(HaveOccurred(), "a start cut short exits non-zero; log:\n%s", s.Log())
		Expect(s.Log()).To(ContainSubstring("stopped while embedded etcd"))
		noStackTrace(s.Log())

		By("left alone, the start fails with what to do")
		s, err = framework.LaunchServer(bin, framework.ServerOptions{DataDir: dir})
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Wait(3*time.Minute)).To(HaveOccurred(), "log:\n%s", s.Log())
		Expect(s.Log()).To(ContainSubstring("did not become ready"))
		Expect(s.Log()).To(ContainSubstring("stella snapshot restore"))
		noStackTrace(s.Log())
	})

	It("in use by a server is refused to a second one at once, naming the process that holds it", func(ctx SpecContext) {
		out := serveMustFail(shared.DataDir)
		Expect(out).To(ContainSubstring(fmt.Sprintf("is in use by process %d (stella serve", shared.Pid())))
		Expect(shared.AdminClient().List(ctx, &v1alpha1.ReleaseList{})).To(Succeed(), "the first server serves on")
	})

	It("is saved while serving and restored after it was lost: every object is back and its evidence still verifies", func(ctx SpecContext) {
		srv := startServer(framework.ServerOptions{})
		admin := srv.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, environment(ns, "dev"))).To(Succeed())
		promo := reachesPhaseOn(ctx, admin, promote(ctx, admin, ns, "shop-1", "dev"), v1alpha1.PromotionSucceeded)
		packet := sealedPacket(ctx, admin, promo)
		objs := []client.Object{release(ns, "shop-1", "1.0.0"), environment(ns, "dev"), promo, packet}
		uids := map[string]string{}
		for _, o := range objs {
			Expect(admin.Get(ctx, client.ObjectKeyFromObject(o), o)).To(Succeed())
			uids[fmt.Sprintf("%T/%s", o, o.GetName())] = string(o.GetUID())
		}

		work := GinkgoT().TempDir()
		backup := filepath.Join(work, "stella.tar.gz")
		out, err := framework.Run(ctx, bin.Stella, nil, "snapshot", "save", backup, "--data-dir", srv.DataDir)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("saved " + backup))

		By("losing the data directory")
		Expect(srv.Stop()).To(Succeed(), srv.Log())
		Expect(os.RemoveAll(srv.DataDir)).To(Succeed())

		out, err = framework.Run(ctx, bin.Stella, nil, "snapshot", "restore", backup, "--data-dir", srv.DataDir)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("restored " + backup))
		out, err = framework.Run(ctx, bin.Stella, nil, "snapshot", "restore", backup, "--data-dir", srv.DataDir)
		Expect(err).To(HaveOccurred(), "a restore never writes over a data directory")
		Expect(out).To(ContainSubstring("is not empty"))

		restored := startServer(framework.ServerOptions{DataDir: srv.DataDir, Listen: srv.Listen})
		c := restored.AdminClient()
		for _, o := range objs {
			fresh := o.DeepCopyObject().(client.Object)
			Expect(c.Get(ctx, client.ObjectKeyFromObject(o), fresh)).To(Succeed())
			Expect(string(fresh.GetUID())).To(Equal(uids[fmt.Sprintf("%T/%s", o, o.GetName())]))
		}

		By("the packet sealed before the loss verifies against the restored server's key and log")
		exported := filepath.Join(work, "decision.tar")
		out, err = stellactl(ctx, restored.Kubeconfig(), "evidence", "export", promo.Name, "-n", ns, "-o", exported)
		Expect(err).NotTo(HaveOccurred(), out)
		key := filepath.Join(restored.DataDir, "evidence", evidence.PublicKeyFile)
		out, err = stellactlEnv(ctx, []string{"KUBECONFIG=/nonexistent"}, "evidence", "verify", exported, "--key", key)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("verified: " + evidence.PredicateDecision))
		verifyOffline(restored.DataDir, packet)

		By("a damaged backup is refused before anything is restored")
		data, err := os.ReadFile(backup)
		Expect(err).NotTo(HaveOccurred())
		cut := filepath.Join(work, "cut.tar.gz")
		Expect(os.WriteFile(cut, data[:len(data)/2], 0o600)).To(Succeed())
		elsewhere := filepath.Join(work, "elsewhere")
		out, err = framework.Run(ctx, bin.Stella, nil, "snapshot", "restore", cut, "--data-dir", elsewhere)
		var exit *exec.ExitError
		Expect(errors.As(err, &exit)).To(BeTrue(), out)
		Expect(out).To(ContainSubstring("nothing was restored"))
		Expect(elsewhere).NotTo(BeADirectory())
	})
})
