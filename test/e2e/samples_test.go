package e2e

import (
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/stella-ops/stella/test/framework"
)

var _ = Describe("the sample manifests", func() {
	It("apply cleanly with stellactl, one or more of every kind", func(ctx SpecContext) {
		root, err := framework.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		ns := newNamespace(ctx, shared.AdminClient())

		out, err := stellactl(ctx, shared.Kubeconfig(), "apply", "-n", ns, "-k", filepath.Join(root, "config", "samples"))
		Expect(err).NotTo(HaveOccurred(), out)

		out, err = stellactl(ctx, shared.Kubeconfig(), "get", "stella", "-n", ns, "-o", "name")
		Expect(err).NotTo(HaveOccurred(), out)
		kinds := map[string]bool{}
		for _, line := range strings.Fields(out) {
			kinds[strings.SplitN(line, "/", 2)[0]] = true
		}
		Expect(kinds).To(HaveLen(12), "got %v", kinds)
	})
})
