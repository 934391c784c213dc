package tasks

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the fan-out and delivery metrics. Register them once per
// registry with NewMetrics.
type Metrics struct {
	eventsFannedOut   prometheus.Counter
	deliveriesCreated prometheus.Counter
	attempts          *prometheus.CounterVec
	attemptDuration   *prometheus.HistogramVec
	deadLetters       prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		eventsFannedOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_fanout_events_total",
			Help: "Events fanned out to their subscribed endpoints.",
		}),
		deliveriesCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_fanout_deliveries_enqueued_total",
			Help: "Delivery tasks enqueued by the fan-out.",
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_delivery_attempts_total",
			Help: "Delivery attempts by outcome: success, http_3xx, http_4xx, http_5xx, timeout, connect_error, tls_error, ssrf_blocked or error; rate_limited, circuit_open and endpoint_busy count deliveries postponed before any request.",
		}, []string{"outcome"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookd_delivery_attempt_duration_seconds",
			Help:    "Duration of delivery attempts, request to last byte read, by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30},
		}, []string{"outcome"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_dead_letters_total",
			Help: "Deliveries that failed for good (retries exhausted or permanent failure).",
		}),
	}
	reg.MustRegister(m.eventsFannedOut, m.deliveriesCreated, m.attempts, m.attemptDuration, m.deadLetters)
	return m
}
