package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
)

var _ = Describe("kubectl against stella serve", func() {
	var (
		ns      string
		kubectl func(args ...string) string
	)
	BeforeEach(func(ctx SpecContext) {
		path, err := exec.LookPath("kubectl")
		if err != nil {
			Skip("kubectl is not on PATH")
		}
		ns = newNamespace(ctx, shared.AdminClient())
		kubectl = func(args ...string) string {
			GinkgoHelper()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, path, append([]string{"--kubeconfig", shared.Kubeconfig(), "-n", ns}, args...)...)
			out, err := cmd.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "kubectl %s:\n%s", strings.Join(args, " "), out)
			return string(out)
		}
	})

	It("reports the server version", func() {
		Expect(kubectl("version")).To(ContainSubstring("Server Version: v1.37.2"))
	})

	It("applies, gets, watches and server-side applies Stella objects", func(ctx SpecContext) {
		manifest := writeManifest(fmt.Sprintf(`apiVersion: stella-ops.org/v1alpha1
kind: Release
metadata:
  name: shop-1
spec:
  version: 1.0.0
  components:
  - name: api
    image: 127.0.0.1:5000/shop/api@%s
`, digest("kubectl-api")))
		Expect(kubectl("apply", "-f", manifest)).To(ContainSubstring("release.stella-ops.org/shop-1 created"))
		Eventually(func() string {
			return kubectl("get", "releases", "shop-1", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal("True"))

		table := kubectl("get", "rel")
		Expect(table).To(And(ContainSubstring("VERSION"), ContainSubstring("READY"), MatchRegexp(`shop-1\s+1\.0\.0\s+True`)))
		Expect(kubectl("get", "stella", "-o", "name")).To(ContainSubstring("release.stella-ops.org/shop-1"))

		watch := exec.CommandContext(ctx, "kubectl", "--kubeconfig", shared.Kubeconfig(), "-n", ns, "get", "releases", "--watch", "-o", "name")
		session, err := gexec.Start(watch, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		defer session.Kill()
		Eventually(session.Out).WithTimeout(10 * time.Second).Should(gbytes.Say("release.stella-ops.org/shop-1"))
		Expect(shared.AdminClient().Create(ctx, release(ns, "shop-2", "2.0.0"))).To(Succeed())
		Eventually(session.Out).WithTimeout(10 * time.Second).Should(gbytes.Say("release.stella-ops.org/shop-2"))

		labelled := writeManifest(`apiVersion: stella-ops.org/v1alpha1
kind: Release
metadata:
  name: shop-1
  labels: {tier: gold}
`)
		Expect(kubectl("apply", "--server-side", "--field-manager=e2e-labeller", "-f", labelled)).To(ContainSubstring("serverside-applied"))
		Expect(kubectl("get", "release", "shop-1", "-o", "jsonpath={.metadata.labels.tier} {.metadata.managedFields[*].manager}")).
			To(And(HavePrefix("gold "), ContainSubstring("e2e-labeller")))
	})

	It("explains the API from the types' doc comments", func() {
		Expect(kubectl("explain", "release.spec.components.image")).To(ContainSubstring("pinned by digest"))
		Expect(kubectl("explain", "gate.spec")).To(ContainSubstring("freezeWindow"))
	})

	It("shows why a bad object is refused", func(ctx SpecContext) {
		manifest := writeManifest(`apiVersion: stella-ops.org/v1alpha1
kind: Release
metadata:
  name: tagged
spec:
  version: 1.0.0
  components:
  - name: api
    image: 127.0.0.1:5000/shop/api:latest
`)
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", shared.Kubeconfig(), "-n", ns, "apply", "-f", manifest)
		out, err := cmd.CombinedOutput()
		Expect(err).To(HaveOccurred())
		Expect(string(out)).To(And(ContainSubstring("spec.components[0].image"), ContainSubstring("pinned by digest")))
	})
})

func writeManifest(yaml string) string {
	GinkgoHelper()
	path := filepath.Join(GinkgoT().TempDir(), "manifest.yaml")
	Expect(os.WriteFile(path, []byte(yaml), 0o600)).To(Succeed())
	return path
}
