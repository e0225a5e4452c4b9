package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/mod/sumdb/note"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/internal/evidence"
	"github.com/stella-ops/stella/internal/tlog"
	"github.com/stella-ops/stella/test/framework"
)

var _ = Describe("a damaged transparency log", func() {
	It("keeps the server from starting until `stella log repair` rebuilds it to the root it signed", func(ctx SpecContext) {
		srv := startServer(framework.ServerOptions{})
		admin := srv.AdminClient()
		ns := newNamespace(ctx, admin)
		for _, r := range []*v1alpha1.Release{release(ns, "shop-1", "1.0.0"), release(ns, "shop-2", "2.0.0"), release(ns, "shop-3", "3.0.0")} {
			Expect(admin.Create(ctx, r)).To(Succeed())
		}
		// One environment per decision: a promotion into an environment
		// without Targets waits after its decision is sealed.
		for _, env := range []string{"dev", "qa", "stage", "prod"} {
			Expect(admin.Create(ctx, environment(ns, env))).To(Succeed())
		}
		By("sealing three decisions")
		for _, step := range [][2]string{{"shop-1", "dev"}, {"shop-2", "qa"}, {"shop-1", "stage"}} {
			sealedPacket(ctx, admin, promote(ctx, admin, ns, step[0], step[1]))
		}
		Expect(srv.Stop()).To(Succeed())

		evidenceDir := filepath.Join(srv.DataDir, "evidence")
		logDir := filepath.Join(evidenceDir, "log")
		signed, err := os.ReadFile(filepath.Join(logDir, tlog.CheckpointFile))
		Expect(err).NotTo(HaveOccurred())
		vkey, err := os.ReadFile(filepath.Join(evidenceDir, evidence.CheckpointVerifierFile))
		Expect(err).NotTo(HaveOccurred())
		verifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
		Expect(err).NotTo(HaveOccurred())
		before, err := tlog.VerifyCheckpoint(signed, verifier.Name(), verifier)
		Expect(err).NotTo(HaveOccurred())
		Expect(before.Size).To(BeNumerically(">=", 3))
		work := GinkgoT().TempDir()
		beforeFile := filepath.Join(work, "before.cp")
		Expect(os.WriteFile(beforeFile, signed, 0o600)).To(Succeed())

		By("cutting 10 bytes off the end of the log's entries")
		entries := filepath.Join(logDir, tlog.EntriesFile)
		info, err := os.Stat(entries)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.Truncate(entries, info.Size()-10)).To(Succeed())

		By("starting the server: it refuses, naming the entry and the repair")
		refused, err := framework.LaunchServer(bin, framework.ServerOptions{DataDir: srv.DataDir, Listen: srv.Listen})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(os.Remove, refused.LogFile)
		Expect(refused.Wait(90*time.Second)).To(HaveOccurred(), "the server started on a cut log")
		last := strconv.FormatUint(before.Size-1, 10)
		Expect(refused.Log()).To(ContainSubstring("entry "+last+" at byte"), refused.Log())
		Expect(refused.Log()).To(ContainSubstring("stella log repair"))
		Expect(refused.Log()).NotTo(ContainSubstring("goroutine "), "a refusal, not a crash")
		Expect(refused.Log()).NotTo(ContainSubstring("Stella control plane is ready"))
		cut, err := os.Stat(entries)
		Expect(err).NotTo(HaveOccurred())
		Expect(cut.Size()).To(Equal(info.Size()-10), "the refused start left the log as it was")

		By("repairing the log from the evidence store")
		out, err := framework.Run(ctx, bin.Stella, nil, "log", "repair", "--data-dir", srv.DataDir)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("restored entries: " + last))
		repaired, err := os.Stat(entries)
		Expect(err).NotTo(HaveOccurred())
		Expect(repaired.Size()).To(Equal(info.Size()))

		By("starting again: the log verifies against the checkpoint signed before the damage")
		again := startServer(framework.ServerOptions{DataDir: srv.DataDir, Listen: srv.Listen})
		admin = again.AdminClient()
		out, err = stellactl(ctx, again.Kubeconfig(), "log", "verify", "--from", beforeFile)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("consistent"))

		By("sealing the next decision at the next index, not at a repaired one")
		next := sealedPacket(ctx, admin, promote(ctx, admin, ns, "shop-3", "prod"))
		index, err := strconv.ParseUint(next.Status.LogIndex, 10, 64)
		Expect(err).NotTo(HaveOccurred())
		Expect(index).To(BeNumerically(">=", before.Size))
		out, err = stellactl(ctx, again.Kubeconfig(), "log", "verify", "--from", beforeFile)
		Expect(err).NotTo(HaveOccurred(), out)
	})
})
