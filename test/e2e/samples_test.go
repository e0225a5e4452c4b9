package e2e

import (
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
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

		// The SSH, Nomad and ECS samples' Secrets are left out on purpose: the
		// server reads credentials before it dials, so it reports the
		// missing Secret and never reaches the example hosts.
		for name, field := range map[string]string{
			"legacy-box": "spec.ssh.privateKeySecretRef", "prod-nomad": "spec.nomad.tokenSecretRef", "prod-ecs": "spec.ecs.credentialsSecretRef",
		} {
			Eventually(func() string {
				t := &v1alpha1.Target{}
				_ = shared.AdminClient().Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, t)
				return conditionMessage(t.Status.Conditions, v1alpha1.ConditionReady)
			}).WithContext(ctx).WithTimeout(30*time.Second).Should(ContainSubstring(field), "Target %s", name)
		}
	})
})
