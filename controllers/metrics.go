package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stella-ops/stella/apis/v1alpha1"
)

// Metrics of promotions, served with controller-runtime's own on the
// manager's metrics endpoint (stella serve --metrics-listen).
var (
	promotionPhases = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stella_promotion_phase_transitions_total",
		Help: "Promotions that entered each phase.",
	}, []string{"phase"})
	decisionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "stella_promotion_decision_seconds",
		Help:    "Time from a promotion's start to its final decision (allow or deny), waiting for approvals included.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 12),
	}, []string{"result"})
	gateResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stella_gate_evaluations_total",
		Help: "Gate evaluations by gate type and result.",
	}, []string{"type", "result"})
)

func init() {
	metrics.Registry.MustRegister(promotionPhases, decisionSeconds, gateResults)
}

// observeDecision records the gate verdicts of an evaluation and, when the
// decision is final, how long it took.
func observeDecision(promo *v1alpha1.Promotion, evals []v1alpha1.GateEvaluation) {
	for _, e := range evals {
		gateResults.WithLabelValues(e.Type, string(e.Result)).Inc()
	}
	d := promo.Status.Decision
	if d == nil || d.Result == v1alpha1.DecisionPending || promo.Status.StartedAt == nil || d.DecidedAt == nil {
		return
	}
	decisionSeconds.WithLabelValues(string(d.Result)).Observe(d.DecidedAt.Sub(promo.Status.StartedAt.Time).Seconds())
}
