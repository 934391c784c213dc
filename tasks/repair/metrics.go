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
			Help: "What the reconciler repaired, by kind: fanout and delivery tasks Redis no longer held, enqueued again; fifo_pump, pumps of FIFO endpoints Redis no longer held, started again; dead_letter, archived deliveries still pending in Postgres, marked failed.",
		}, []string{"kind"}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_reconciler_errors_total",
			Help: "Reconciler passes that failed.",
		}),
	}
	for _, k := range []string{"fanout", "delivery", "fifo_pump", "dead_letter"} {
		m.repaired.WithLabelValues(k)
	}
	reg.MustRegister(m.repaired, m.reconcileErrors)
	return m
}
