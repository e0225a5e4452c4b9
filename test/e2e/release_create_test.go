package e2e

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/images"
)

// registryAuth is what the private registry of these stories wants.
var registryAuth = &authn.Basic{Username: "ci", Password: "secret"}

// privateRegistry serves a registry on 127.0.0.1 that wants basic auth
// ci:secret, and returns its host:port.
func privateRegistry() string {
	GinkgoHelper()
	reg, err := images.StartPrivateRegistry(registryAuth.Username, registryAuth.Password)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(reg.Close)
	return reg.Host
}

// push puts a random image at ref and returns its digest.
func push(ref string) string {
	GinkgoHelper()
	img, err := random.Image(512, 1)
	Expect(err).NotTo(HaveOccurred())
	parsed, err := name.ParseReference(ref)
	Expect(err).NotTo(HaveOccurred())
	Expect(remote.Write(parsed, img, remote.WithAuth(registryAuth))).To(Succeed())
	d, err := img.Digest()
	Expect(err).NotTo(HaveOccurred())
	return d.String()
}

// dockerConfig writes a Docker config with the registry's credentials and
// returns the environment that points at it.
func dockerConfig(host string) []string {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	Expect(images.WriteDockerConfig(dir, host, registryAuth)).To(Succeed())
	return []string{"DOCKER_CONFIG=" + dir}
}

var _ = Describe("stellactl release create", func() {
	It("resolves tags to digests once, with the Docker config's credentials", func(ctx SpecContext) {
		host := privateRegistry()
		apiDigest := push(host + "/shop/api:2.3.1")
		workerDigest := push(host + "/shop/worker:2.3.1")
		ns := newNamespace(ctx, shared.AdminClient())
		env := append(dockerConfig(host), "KUBECONFIG="+shared.Kubeconfig())

		out, err := stellactlEnv(ctx, env, "release", "create", "shop-2.3.1", "-n", ns, "--version", "2.3.1",
			"--component", "api="+host+"/shop/api:2.3.1", "--component", "worker="+host+"/shop/worker@"+workerDigest,
			"--source-commit", "4f9c2d1")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("release.stella-ops.org/shop-2.3.1 created"))

		rel := &v1alpha1.Release{}
		Expect(shared.AdminClient().Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-2.3.1"}, rel)).To(Succeed())
		Expect(rel.Spec.Components).To(Equal([]v1alpha1.ReleaseComponent{
			{Name: "api", Image: v1alpha1.ImageDigestRef(host + "/shop/api@" + apiDigest), Role: v1alpha1.ComponentRolePrimary},
			{Name: "worker", Image: v1alpha1.ImageDigestRef(host + "/shop/worker@" + workerDigest), Role: v1alpha1.ComponentRolePrimary},
		}))
		Expect(rel.Spec.Source.Commit).To(Equal("4f9c2d1"))

		By("moving the tag afterwards, which changes nothing in the release")
		push(host + "/shop/api:2.3.1")
		Expect(shared.AdminClient().Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-2.3.1"}, rel)).To(Succeed())
		Expect(string(rel.Spec.Components[0].Image)).To(HaveSuffix(apiDigest))
	})

	It("takes the images of a compose file", func(ctx SpecContext) {
		host := privateRegistry()
		apiDigest := push(host + "/shop/api:2.4.0")
		webDigest := push(host + "/shop/web:2.4.0")
		ns := newNamespace(ctx, shared.AdminClient())
		compose := filepath.Join(GinkgoT().TempDir(), "compose.yaml")
		Expect(os.WriteFile(compose, []byte(fmt.Sprintf(`services:
  api:
    image: %[1]s/shop/api:2.4.0
    ports: ["8080:8080"]
  web:
    image: %[1]s/shop/web:2.4.0
`, host)), 0o600)).To(Succeed())

		out, err := stellactlEnv(ctx, append(dockerConfig(host), "KUBECONFIG="+shared.Kubeconfig()),
			"release", "create", "shop-2.4.0", "-n", ns, "--version", "2.4.0", "--from-compose", compose)
		Expect(err).NotTo(HaveOccurred(), out)
		rel := &v1alpha1.Release{}
		Expect(shared.AdminClient().Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-2.4.0"}, rel)).To(Succeed())
		Expect(rel.Spec.Components).To(HaveLen(2))
		Expect(string(rel.Spec.Components[0].Image)).To(Equal(host + "/shop/api@" + apiDigest))
		Expect(string(rel.Spec.Components[1].Image)).To(Equal(host + "/shop/web@" + webDigest))
	})

	It("creates nothing when an image does not resolve", func(ctx SpecContext) {
		host := privateRegistry()
		push(host + "/shop/api:2.3.1")
		ns := newNamespace(ctx, shared.AdminClient())

		out, err := stellactlEnv(ctx, append(dockerConfig(host), "KUBECONFIG="+shared.Kubeconfig()),
			"release", "create", "shop-broken", "-n", ns, "--version", "2.3.1",
			"--component", "api="+host+"/shop/api:2.3.1", "--component", "worker="+host+"/shop/worker:2.3.1")
		Expect(err).To(HaveOccurred())
		Expect(out).To(And(ContainSubstring("component worker"), ContainSubstring("no release was created")))
		err = shared.AdminClient().Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-broken"}, &v1alpha1.Release{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)

		out, err = stellactl(ctx, shared.Kubeconfig(), "release", "create", "shop-unauthorised", "-n", ns, "--version", "2.3.1",
			"--component", "api="+host+"/shop/api:2.3.1")
		Expect(err).To(HaveOccurred(), "without the Docker config's credentials the registry refuses")
		Expect(out).To(ContainSubstring("401"))
	})
})
