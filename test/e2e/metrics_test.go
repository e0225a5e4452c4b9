package e2e

import (
	"io"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/stella-ops/stella/apis/v1alpha1"
	"github.com/stella-ops/stella/test/framework"
)

var _ = Describe("metrics", func() {
	It("counts promotions by phase, decision latency and gate results", func(ctx SpecContext) {
		addr, err := framework.FreeLoopbackAddr()
		Expect(err).NotTo(HaveOccurred())
		srv := startServer(framework.ServerOptions{Args: []string{"--metrics-listen", addr}})
		admin := srv.AdminClient()
		ns := newNamespace(ctx, admin)
		Expect(admin.Create(ctx, release(ns, "shop-1", "1.0.0"))).To(Succeed())
		Expect(admin.Create(ctx, approvalGate(ns, "two-approvers"))).To(Succeed())
		gated := environment(ns, "gated")
		gated.Spec.Gates = []v1alpha1.LocalObjectReference{{Name: "two-approvers"}}
		Expect(admin.Create(ctx, gated)).To(Succeed())
		Expect(admin.Create(ctx, environment(ns, "dev"))).To(Succeed())
		Expect(admin.Create(ctx, generated(promotion(ns, "", "shop-1", "dev")))).To(Succeed())
		Expect(admin.Create(ctx, generated(promotion(ns, "", "shop-1", "gated")))).To(Succeed())

		Eventually(func() string {
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				return err.Error()
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var ours []string
			for _, line := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(line, "stella_") || strings.HasPrefix(line, `controller_runtime_reconcile_total{controller="promotion"`) {
					ours = append(ours, line)
				}
			}
			return strings.Join(ours, "\n")
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(And(
			ContainSubstring(`stella_promotion_phase_transitions_total{phase="Succeeded"} 1`),
			ContainSubstring(`stella_promotion_phase_transitions_total{phase="AwaitingApproval"} 1`),
			ContainSubstring(`stella_promotion_decision_seconds_count{result="allow"} 1`),
			ContainSubstring(`stella_gate_evaluations_total{result="Pending",type="approval"}`),
			ContainSubstring(`controller_runtime_reconcile_total{controller="promotion"`),
		))
	})
})
