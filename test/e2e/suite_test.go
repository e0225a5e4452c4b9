// Package e2e holds end-to-end stories against real Stella processes: the
// server with its embedded etcd and API server, the CLI, kubectl, and an
// external etcd cluster.
package e2e

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stella-ops/stella/test/framework"
)

func TestE2E(t *testing.T) {
	// The stories use controller-runtime's client, which logs nothing of
	// interest here; without a logger it prints a warning with a stack.
	ctrllog.SetLogger(logr.Discard())
	RegisterFailHandler(Fail)
	RunSpecs(t, "Stella end-to-end")
}

var (
	// bin are the binaries under test, built once.
	bin framework.Binaries
	// shared is one server for the stories that do not need their own.
	shared *framework.Server
)

var _ = BeforeSuite(func() {
	var err error
	bin, err = framework.Build()
	Expect(err).NotTo(HaveOccurred())
	// Targets the server deploys to itself (SSH, Nomad, ECS) are observed
	// often, and deploying ECS services looked at often, so that the
	// stories see drift and rollouts quickly. The scanner reads images only
	// from registries on loopback: the samples name registry.example.com.
	shared, err = framework.StartServer(bin, framework.ServerOptions{Args: []string{"--observe-every", "2s", "--ecs-poll-every", "100ms", "--scan-registries", "127.0.0.1"}})
	Expect(err).NotTo(HaveOccurred())
})

// anyFailed keeps the shared server's data and log for a look after a
// failure; Cleanup prints where they are.
var anyFailed bool

var _ = ReportAfterEach(func(r SpecReport) {
	anyFailed = anyFailed || r.Failed()
})

var _ = AfterSuite(func() {
	if shared != nil {
		shared.Cleanup(anyFailed)
	}
})

// startServer starts a server of the spec's own and stops it when the spec
// ends.
func startServer(o framework.ServerOptions) *framework.Server {
	GinkgoHelper()
	s, err := framework.StartServer(bin, o)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { s.Cleanup(CurrentSpecReport().Failed()) })
	return s
}

// newNamespace creates a namespace with a unique name on the server.
func newNamespace(ctx context.Context, c client.Client) string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-"}}
	Expect(c.Create(ctx, ns)).To(Succeed())
	return ns.Name
}
