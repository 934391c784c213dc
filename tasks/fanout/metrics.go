package fanout

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the fan-out metrics. Register them once per registry with
// NewMetrics.
type Metrics struct {
	events        prometheus.Counter
	enqueued      prometheus.Counter
	perEvent      prometheus.Histogram
	firstAttempts prometheus.Counter
}

// NewMetrics creates the fan-out metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_fanout_events_total",
			Help: "Events fanned out to their subscribed endpoints.",
		}),
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_fanout_deliveries_enqueued_total",
			Help: "Delivery tasks enqueued by the fan-out (deliveries whose first attempt it could not make, or made in vain).",
		}),
		perEvent: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookd_fanout_deliveries_per_event",
			Help:    "Deliveries created per event fanned out.",
			Buckets: []float64{0, 1, 2, 5, 10, 25, 50, 100, 250},
		}),
		firstAttempts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_fanout_first_attempts_total",
			Help: "Deliveries whose first attempt the fan-out made itself (the others, and those it made in vain, became delivery tasks).",
		}),
	}
	reg.MustRegister(m.events, m.enqueued, m.perEvent, m.firstAttempts)
	return m
}
