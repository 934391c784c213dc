package tasks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RelayMetrics count what the relays publish to the queue; they are the
// outbox's RelayObserver. Register them once per registry.
type RelayMetrics struct {
	published     prometheus.Counter
	batchSize     prometheus.Histogram
	batchDuration prometheus.Histogram
	relayErrors   prometheus.Counter
}

// NewRelayMetrics creates the relay metrics and registers them on reg.
func NewRelayMetrics(reg prometheus.Registerer) *RelayMetrics {
	m := &RelayMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_outbox_published_total",
			Help: "Outbox rows the relays published to the queue.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookd_relay_batch_size",
			Help:    "Events per relay batch (empty batches included).",
			Buckets: []float64{0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000},
		}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookd_relay_batch_duration_seconds",
			Help:    "Duration of relay batches: claim, enqueue, mark published, commit.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		relayErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_relay_errors_total",
			Help: "Relay batches that failed and rolled back.",
		}),
	}
	reg.MustRegister(m.published, m.batchSize, m.batchDuration, m.relayErrors)
	return m
}

// BatchRelayed implements outbox.RelayObserver.
func (m *RelayMetrics) BatchRelayed(n int, d time.Duration) {
	m.published.Add(float64(n))
	m.batchSize.Observe(float64(n))
	m.batchDuration.Observe(d.Seconds())
}

// BatchFailed implements outbox.RelayObserver.
func (m *RelayMetrics) BatchFailed() { m.relayErrors.Inc() }
