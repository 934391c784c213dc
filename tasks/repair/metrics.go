package repair

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the reconciler's metrics. Register them once per registry
// with NewMetrics.
type Metrics struct {
	repaired        *prometheus.CounterVec
	reconcileErrors prometheus.Counter
}

// NewMetrics creates the reconciler's metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_reconciler_repaired_total",
			Help: "What the reconciler repaired, by kind: fanout and delivery tasks Redis no longer held, enqueued again; dead_letter, archived deliveries still pending in Postgres, marked failed.",
		}, []string{"kind"}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_reconciler_errors_total",
			Help: "Reconciler passes that failed.",
		}),
	}
	for _, k := range []string{"fanout", "delivery", "dead_letter"} {
		m.repaired.WithLabelValues(k)
	}
	reg.MustRegister(m.repaired, m.reconcileErrors)
	return m
}
