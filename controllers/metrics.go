package controllers

import (
	"sync"
	"time"

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
		Name: "stella_promotion_decision_seconds",
		Help: "Time from when this process first saw a promotion to its final decision (allow or deny), " +
			"waiting for approvals included.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
	}, []string{"result"})
	gateResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stella_gate_evaluations_total",
		Help: "Gate evaluations by gate type and result.",
	}, []string{"type", "result"})
)

func init() {
	metrics.Registry.MustRegister(promotionPhases, decisionSeconds, gateResults)
}

// decisionClock remembers when this process first saw each undecided
// promotion: the API's timestamps keep whole seconds, too coarse for a
// latency that should be milliseconds.
type decisionClock struct {
	firstSeen sync.Map // types.UID → time.Time
}

// seen notes the first time a promotion was reconciled.
func (c *decisionClock) seen(promo *v1alpha1.Promotion, now time.Time) {
	c.firstSeen.LoadOrStore(promo.UID, now)
}

// observe records the gate verdicts of an evaluation and, when the decision
// is final, how long it took.
func (c *decisionClock) observe(promo *v1alpha1.Promotion, evals []v1alpha1.GateEvaluation, now time.Time) {
	for _, e := range evals {
		gateResults.WithLabelValues(e.Type, string(e.Result)).Inc()
	}
	d := promo.Status.Decision
	if d == nil || d.Result == v1alpha1.DecisionPending {
		return
	}
	if first, ok := c.firstSeen.LoadAndDelete(promo.UID); ok {
		decisionSeconds.WithLabelValues(string(d.Result)).Observe(now.Sub(first.(time.Time)).Seconds())
	}
}
