package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// stellactl runs the CLI with kubeconfig (KUBECONFIG, as a user would set
// it) and returns its combined output.
func stellactl(ctx context.Context, kubeconfig string, args ...string) (string, error) {
	return stellactlEnv(ctx, []string{"KUBECONFIG=" + kubeconfig}, args...)
}

func stellactlEnv(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin.Stellactl, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// stellactlStdout is for commands whose stdout is a document (a kubeconfig)
// and whose stderr must not end up in it.
func stellactlStdout(ctx context.Context, kubeconfig string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, bin.Stellactl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// manifest writes obj as YAML into a temporary file for `apply -f`.
func manifest(obj client.Object, gvk string) string {
	GinkgoHelper()
	data, err := yaml.Marshal(obj)
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), obj.GetName()+".yaml")
	Expect(os.WriteFile(path, []byte(gvk+string(data)), 0o600)).To(Succeed())
	return path
}

const releaseHeader = "apiVersion: stella-ops.org/v1alpha1\nkind: Release\n"

var _ = Describe("stellactl", func() {
	var (
		admin client.Client
		kc    string
		ns    string
	)
	BeforeEach(func(ctx SpecContext) {
		admin = shared.AdminClient()
		kc = shared.Kubeconfig()
		ns = newNamespace(ctx, admin)
	})

	It("applies a release server-side, waits for it to be ready, shows it in every format and deletes it", func(ctx SpecContext) {
		file := manifest(release(ns, "shop-1.0.0", "1.0.0"), releaseHeader)

		out, err := stellactl(ctx, kc, "apply", "-f", file)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("release.stella-ops.org/shop-1.0.0 serverside-applied"))

		out, err = stellactl(ctx, kc, "wait", "--for=condition=Ready", "-n", ns, "release/shop-1.0.0", "--timeout=60s")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("condition met"))

		out, err = stellactl(ctx, kc, "get", "releases", "-n", ns, "-o", "name")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(strings.TrimSpace(out)).To(Equal("release.stella-ops.org/shop-1.0.0"))

		out, err = stellactl(ctx, kc, "get", "rel", "shop-1.0.0", "-n", ns, "-o", "wide")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(And(ContainSubstring("READY"), ContainSubstring("True")))

		out, err = stellactl(ctx, kc, "get", "release", "shop-1.0.0", "-n", ns, "-o", "yaml", "--show-managed-fields")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("manager: stellactl"), "apply is server-side with field manager stellactl")
		Expect(out).To(ContainSubstring("operation: Apply"))

		out, err = stellactl(ctx, kc, "get", "release", "shop-1.0.0", "-n", ns, "-o", "json")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`"version": "1.0.0"`))

		Expect(admin.Create(ctx, approvalGate(ns, "two-approvers"))).To(Succeed())
		out, err = stellactl(ctx, kc, "get", "stella", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(And(ContainSubstring("release.stella-ops.org/shop-1.0.0"), ContainSubstring("gate.stella-ops.org/two-approvers")))

		out, err = stellactl(ctx, kc, "describe", "release", "shop-1.0.0", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(And(ContainSubstring("Type:"), ContainSubstring("Ready")))

		out, err = stellactl(ctx, kc, "delete", "-f", file)
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = stellactl(ctx, kc, "get", "release", "shop-1.0.0", "-n", ns)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("not found"))
	})

	It("refuses a tag where a digest belongs, and an unknown field, naming the field", func(ctx SpecContext) {
		tagged := release(ns, "tagged", "1.0.0")
		tagged.Spec.Components[0].Image = "127.0.0.1:5000/shop/api:1.0.0"
		out, err := stellactl(ctx, kc, "apply", "-f", manifest(tagged, releaseHeader))
		Expect(err).To(HaveOccurred())
		Expect(out).To(And(ContainSubstring("spec.components[0].image"), ContainSubstring("digest")))

		unknown := filepath.Join(GinkgoT().TempDir(), "unknown.yaml")
		data, err := os.ReadFile(manifest(release(ns, "unknown", "1.0.0"), releaseHeader))
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(unknown, bytes.Replace(data, []byte("spec:\n"), []byte("spec:\n  colour: blue\n"), 1), 0o600)).To(Succeed())
		out, err = stellactl(ctx, kc, "apply", "-f", unknown)
		Expect(err).To(HaveOccurred(), "strict field validation must reject spec.colour")
		Expect(out).To(ContainSubstring("spec.colour"))
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "unknown"}, &v1alpha1.Release{})).NotTo(Succeed())
	})

	It("refuses malformed YAML with its line, and keeps what is stored", func(ctx SpecContext) {
		good := release(ns, "shop-1.0.0", "1.0.0")
		Expect(admin.Create(ctx, good)).To(Succeed())
		Eventually(func() bool { return releaseSettled(ctx, admin, ns, good.Name) }).WithContext(ctx).WithTimeout(30 * time.Second).Should(BeTrue())
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(good), good)).To(Succeed())

		broken := filepath.Join(GinkgoT().TempDir(), "broken.yaml")
		Expect(os.WriteFile(broken, []byte(releaseHeader+"metadata:\n  name: shop-1.0.0\nspec:\n  version: 2.0.0\n  components:\n  - name: api\n   image: [unclosed\n"), 0o600)).To(Succeed())
		out, err := stellactl(ctx, kc, "apply", "-n", ns, "-f", broken)
		Expect(err).To(HaveOccurred())
		Expect(out).To(And(ContainSubstring("broken.yaml"), MatchRegexp(`line \d+`)))

		stored := &v1alpha1.Release{}
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(good), stored)).To(Succeed())
		Expect(stored.Spec).To(Equal(good.Spec))
		Expect(stored.ResourceVersion).To(Equal(good.ResourceVersion), "a refused apply must not touch the stored object")
	})

	It("creates a releaser whose kubeconfig can release in their namespace only", func(ctx SpecContext) {
		other := newNamespace(ctx, admin)
		user := "alice-" + ns

		kubeconfig, stderr, err := stellactlStdout(ctx, kc, "auth", "create-user", user, "--role", "releaser", "-n", ns, "--ttl", "1h", "--groups", "shop-devs")
		Expect(err).NotTo(HaveOccurred(), stderr)
		Expect(stderr).To(ContainSubstring("stella-releaser"))
		cfg, err := clientcmd.Load([]byte(kubeconfig))
		Expect(err).NotTo(HaveOccurred(), "stdout must be a kubeconfig and nothing else:\n%s", kubeconfig)
		Expect(cfg.Contexts[cfg.CurrentContext].Namespace).To(Equal(ns))
		alice := filepath.Join(GinkgoT().TempDir(), "alice.kubeconfig")
		Expect(os.WriteFile(alice, []byte(kubeconfig), 0o600)).To(Succeed())

		out, err := stellactl(ctx, alice, "auth", "whoami")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(And(MatchRegexp(`Username:\s+`+user), ContainSubstring("shop-devs")))

		out, err = stellactl(ctx, alice, "apply", "-f", manifest(release(ns, "by-alice", "1.0.0"), releaseHeader))
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = stellactl(ctx, alice, "apply", "-f", manifest(release(other, "elsewhere", "1.0.0"), releaseHeader))
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("forbidden"))
		out, err = stellactl(ctx, alice, "apply", "-f", manifest(approvalGate(ns, "sneaky"), "apiVersion: stella-ops.org/v1alpha1\nkind: Gate\n"))
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("forbidden"))

		// Running it again converges on the same single binding, and no
		// CertificateSigningRequest is left behind.
		_, stderr, err = stellactlStdout(ctx, kc, "auth", "create-user", user, "--role", "releaser", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), stderr)
		bindings := &rbacv1.RoleBindingList{}
		Expect(admin.List(ctx, bindings, client.InNamespace(ns))).To(Succeed())
		Expect(bindings.Items).To(HaveLen(1))
		Expect(bindings.Items[0].Subjects).To(ConsistOf(HaveField("Name", user)))
		csrs := &certificatesv1.CertificateSigningRequestList{}
		Expect(admin.List(ctx, csrs, client.MatchingLabels{"app.kubernetes.io/managed-by": "stellactl"})).To(Succeed())
		Expect(csrs.Items).To(BeEmpty())
	})

	It("refuses an unknown role and lists the valid ones", func(ctx SpecContext) {
		out, err := stellactl(ctx, kc, "auth", "create-user", "bob", "--role", "superuser")
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("viewer, auditor, releaser, approver, security, admin, agent"))
	})

	It("finds the local server's admin kubeconfig when nothing else is configured", func(ctx SpecContext) {
		home := GinkgoT().TempDir()
		out, err := stellactlEnv(ctx, []string{"KUBECONFIG=", "HOME=" + home, "STELLA_DATA_DIR=" + shared.DataDir},
			"get", "releases", "-A")
		Expect(err).NotTo(HaveOccurred(), out)

		out, err = stellactlEnv(ctx, []string{"KUBECONFIG=", "HOME=" + home, "STELLA_DATA_DIR=" + GinkgoT().TempDir()},
			"get", "releases", "-A")
		Expect(err).To(HaveOccurred())
		Expect(out).To(And(ContainSubstring("no kubeconfig found"), ContainSubstring("stella serve")))
	})

	It("says in one line which kubeconfig is missing or which server refused, without library noise", func(ctx SpecContext) {
		out, err := stellactlEnv(ctx, []string{"KUBECONFIG=/nonexistent"}, "get", "releases")
		Expect(err).To(HaveOccurred())
		Expect(strings.TrimSpace(out)).To(And(ContainSubstring("/nonexistent"), Not(ContainSubstring("\n")), Not(ContainSubstring("localhost:8080"))))

		// A port nobody listens on: the connection is refused.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		closed := l.Addr().String()
		Expect(l.Close()).To(Succeed())
		out, err = stellactl(ctx, kc, "get", "releases", "--server", "https://"+closed)
		Expect(err).To(HaveOccurred())
		Expect(strings.TrimSpace(out)).To(And(ContainSubstring(closed), ContainSubstring("stella serve"),
			Not(ContainSubstring("\n")), Not(ContainSubstring("memcache"))))
	})

	It("completes release, environment and promotion names from the server", func(ctx SpecContext) {
		Expect(admin.Create(ctx, release(ns, "shop-2.3.1", "2.3.1"))).To(Succeed())
		Expect(admin.Create(ctx, environment(ns, "prod"))).To(Succeed())
		Expect(admin.Create(ctx, promotion(ns, "shop-2.3.1-to-prod", "shop-2.3.1", "prod"))).To(Succeed())
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"promote", "sh"}, "shop-2.3.1"},
			{[]string{"promote", "shop-2.3.1", "--to", ""}, "prod"},
			{[]string{"approve", ""}, "shop-2.3.1-to-prod"},
			{[]string{"reject", ""}, "shop-2.3.1-to-prod"},
			{[]string{"evidence", "export", ""}, "shop-2.3.1-to-prod"},
			{[]string{"gates", "check", "shop-2.3.1", "--env", "p"}, "prod"},
			{[]string{"rollback", ""}, "prod"},
			{[]string{"rollback", "prod", "--to", ""}, "shop-2.3.1"},
			{[]string{"replay", "promotion", ""}, "shop-2.3.1-to-prod"},
			{[]string{"describe", "promotion", ""}, "shop-2.3.1-to-prod"},
		} {
			out, err := stellactl(ctx, kc, append([]string{"__complete", "-n", ns}, tc.args...)...)
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(strings.Split(out, "\n")).To(ContainElement(tc.want), "completing %v", tc.args)
		}
	})

	It("prints its own version and the server's", func(ctx SpecContext) {
		out, err := stellactl(ctx, kc, "version")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(And(ContainSubstring("Client Version: "), ContainSubstring("Server Version: v1.")))
	})
})
