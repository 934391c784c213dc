package deadletter

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the dead-letter retry metrics. Register them once per
// registry with NewMetrics.
type Metrics struct {
	replayed prometheus.Counter
}

// NewMetrics creates the dead-letter metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_dead_letters_replayed_total",
			Help: "Dead letters moved back to pending by a retry (API, bulk job or CLI).",
		}),
	}
	reg.MustRegister(m.replayed)
	return m
}
