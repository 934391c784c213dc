package delivery

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the delivery metrics. Register them once per registry with
// NewMetrics. Labels are bounded: outcome classes and disable reasons,
// never endpoints, events or URLs.
type Metrics struct {
	attempts        *prometheus.CounterVec
	attemptDuration *prometheus.HistogramVec
	latency         prometheus.Histogram
	deadLetters     prometheus.Counter
	disabled        *prometheus.CounterVec
	woken           prometheus.Counter
}

// NewMetrics creates the delivery metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_delivery_attempts_total",
			Help: "Delivery attempts by outcome: success, http_3xx, http_4xx, http_5xx, timeout, connect_error, tls_error, ssrf_blocked, oauth_error or error; rate_limited, circuit_open, endpoint_busy and app_busy count deliveries postponed before any request (the last two wait for a free in-flight slot of their endpoint or app).",
		}, []string{"outcome"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookd_delivery_attempt_duration_seconds",
			Help:    "Duration of delivery attempts, request to last byte read, by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30},
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookd_delivery_latency_seconds",
			Help:    "From the event's outbox commit to its successful receipt by an endpoint, retries included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 43200},
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_dead_letters_total",
			Help: "Deliveries that failed for good (retries exhausted or permanent failure).",
		}),
		disabled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_endpoints_disabled_total",
			Help: "Endpoints the deliverer disabled, by reason: gone (410) or failing (failed for HOOKD_ENDPOINT_DISABLE_AFTER).",
		}, []string{"reason"}),
		woken: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_deliveries_woken_total",
			Help: "Deliveries that waited for a free in-flight slot (endpoint_busy, app_busy) and were made due when one freed.",
		}),
	}
	m.attempts.WithLabelValues(OutcomeSuccess) // present from the start, for rate() and alerts
	for _, r := range []string{"gone", "failing"} {
		m.disabled.WithLabelValues(r)
	}
	reg.MustRegister(m.attempts, m.attemptDuration, m.latency, m.deadLetters, m.disabled, m.woken)
	return m
}
