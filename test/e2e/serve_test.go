package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/framework"
)

var _ = Describe("stella serve", func() {
	It("keeps every object across a restart and shuts down cleanly on SIGTERM", func(ctx SpecContext) {
		srv := startServer(framework.ServerOptions{})
		c := srv.AdminClient()
		ns := newNamespace(ctx, c)
		objs := []client.Object{
			release(ns, "shop-1", "1.0.0"),
			environment(ns, "dev"),
			environment(ns, "prod", "dev"),
			approvalGate(ns, "two-approvers"),
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registry"}, StringData: map[string]string{"token": "t"}},
		}
		for _, o := range objs {
			Expect(c.Create(ctx, o)).To(Succeed())
		}
		Eventually(func() bool { return releaseSettled(ctx, c, ns, "shop-1") }).WithContext(ctx).WithTimeout(30 * time.Second).Should(BeTrue())
		before := snapshot(ctx, c, objs)

		Expect(srv.Stop()).To(Succeed(), "SIGTERM must end the server with exit code 0; log:\n%s", srv.Log())

		again := startServer(framework.ServerOptions{DataDir: srv.DataDir, Listen: srv.Listen})
		Expect(snapshot(ctx, again.AdminClient(), objs)).To(Equal(before))
	})

	It("refuses a data directory it did not initialise, without touching it", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		Expect(os.MkdirAll(filepath.Join(dir, "pki"), 0o700)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, "pki", "ca.crt"), []byte("precious"), 0o600)).To(Succeed())

		out := serveMustFail(dir)
		Expect(out).To(ContainSubstring("half-initialised"))
		Expect(out).To(ContainSubstring("refusing to initialise over it"))
		Expect(os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))).To(Equal([]byte("precious")))
		Expect(filepath.Join(dir, "etcd")).NotTo(BeAnExistingFile())
	})

	It("refuses a data directory from a newer Stella, and a corrupt one", func(ctx SpecContext) {
		srv := startServer(framework.ServerOptions{})
		Expect(srv.Stop()).To(Succeed())
		marker := filepath.Join(srv.DataDir, "stella.json")

		Expect(os.WriteFile(marker, []byte(`{"format": 99, "createdWith": "v9.0.0"}`), 0o600)).To(Succeed())
		Expect(serveMustFail(srv.DataDir)).To(And(ContainSubstring("format 99"), ContainSubstring("upgrade stella")))

		Expect(os.WriteFile(marker, []byte(`{not json`), 0o600)).To(Succeed())
		Expect(serveMustFail(srv.DataDir)).To(And(ContainSubstring("stella.json is corrupt"), ContainSubstring("restore")))

		Expect(os.WriteFile(marker, []byte(`{"format": 1}`), 0o600)).To(Succeed())
		caKey := filepath.Join(srv.DataDir, "pki", "ca.key")
		Expect(os.WriteFile(caKey, []byte("garbage"), 0o600)).To(Succeed())
		Expect(serveMustFail(srv.DataDir)).To(And(ContainSubstring(caKey), ContainSubstring("corrupt")))
		Expect(os.ReadFile(caKey)).To(Equal([]byte("garbage")), "a corrupt key must not be replaced")
	})

	It("runs the namespace controller and the garbage collector", func(ctx SpecContext) {
		c := shared.AdminClient()
		ns := newNamespace(ctx, c)
		rel := release(ns, "owner", "1.0.0")
		Expect(c.Create(ctx, rel)).To(Succeed())
		owned := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owned",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Release", Name: rel.Name, UID: rel.UID}}}}
		Expect(c.Create(ctx, owned)).To(Succeed())

		Expect(c.Delete(ctx, rel)).To(Succeed())
		Eventually(func() error {
			return c.Get(ctx, client.ObjectKeyFromObject(owned), &corev1.ConfigMap{})
		}).WithContext(ctx).WithTimeout(60*time.Second).Should(Satisfy(apierrors.IsNotFound), "the garbage collector deletes what the Release owned")

		Expect(c.Create(ctx, release(ns, "doomed", "1.0.0"))).To(Succeed())
		Expect(c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Eventually(func() error {
			return c.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		}).WithContext(ctx).WithTimeout(60*time.Second).Should(Satisfy(apierrors.IsNotFound), "the namespace controller empties and removes the namespace")
	})
})

// serveMustFail starts stella serve on dir and returns its output, expecting
// it to exit with an error.
func serveMustFail(dir string) string {
	GinkgoHelper()
	s, err := framework.LaunchServer(bin, framework.ServerOptions{DataDir: dir})
	Expect(err).NotTo(HaveOccurred())
	err = s.Wait(60 * time.Second)
	Expect(err).To(HaveOccurred(), "stella serve must refuse %s; log:\n%s", dir, s.Log())
	return s.Log()
}

// snapshot reads objs again and returns what must survive a restart.
func snapshot(ctx context.Context, c client.Client, objs []client.Object) map[string]string {
	GinkgoHelper()
	got := map[string]string{}
	for _, o := range objs {
		fresh := o.DeepCopyObject().(client.Object)
		Expect(c.Get(ctx, client.ObjectKeyFromObject(o), fresh)).To(Succeed())
		got[fmt.Sprintf("%T/%s", o, o.GetName())] = string(fresh.GetUID()) + "@" + fresh.GetResourceVersion()
	}
	return got
}
