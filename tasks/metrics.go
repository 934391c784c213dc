package tasks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relay, fan-out and delivery metrics. Register them once
// per registry with NewMetrics. Labels are bounded: outcome classes and
// disable reasons, never endpoints, events or URLs.
type Metrics struct {
	published         prometheus.Counter
	batchSize         prometheus.Histogram
	batchDuration     prometheus.Histogram
	relayErrors       prometheus.Counter
	eventsFannedOut   prometheus.Counter
	deliveriesCreated prometheus.Counter
	perEvent          prometheus.Histogram
	attempts          *prometheus.CounterVec
	attemptDuration   *prometheus.HistogramVec
	latency           prometheus.Histogram
	deadLetters       prometheus.Counter
	replayed          prometheus.Counter
	disabled          *prometheus.CounterVec
	repaired          *prometheus.CounterVec
	reconcileErrors   prometheus.Counter
	woken             prometheus.Counter
	firstAttempts     prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
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
		eventsFannedOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_fanout_events_total",
			Help: "Events fanned out to their subscribed endpoints.",
		}),
		deliveriesCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_fanout_deliveries_enqueued_total",
			Help: "Delivery tasks enqueued by the fan-out (deliveries whose first attempt it could not make, or made in vain).",
		}),
		perEvent: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookd_fanout_deliveries_per_event",
			Help:    "Deliveries created per event fanned out.",
			Buckets: []float64{0, 1, 2, 5, 10, 25, 50, 100, 250},
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_delivery_attempts_total",
			Help: "Delivery attempts by outcome: success, http_3xx, http_4xx, http_5xx, timeout, connect_error, tls_error, ssrf_blocked or error; rate_limited, circuit_open, endpoint_busy and app_busy count deliveries postponed before any request (the last two wait for a free in-flight slot of their endpoint or app).",
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
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_dead_letters_replayed_total",
			Help: "Dead letters moved back to pending by a retry (API, bulk job or CLI).",
		}),
		disabled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_endpoints_disabled_total",
			Help: "Endpoints the deliverer disabled, by reason: gone (410) or failing (failed for HOOKD_ENDPOINT_DISABLE_AFTER).",
		}, []string{"reason"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_reconciler_repaired_total",
			Help: "What the reconciler repaired, by kind: fanout and delivery tasks Redis no longer held, enqueued again; dead_letter, archived deliveries still pending in Postgres, marked failed.",
		}, []string{"kind"}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_reconciler_errors_total",
			Help: "Reconciler passes that failed.",
		}),
		firstAttempts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_fanout_first_attempts_total",
			Help: "Deliveries whose first attempt the fan-out made itself (the others, and those it made in vain, became delivery tasks).",
		}),
		woken: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_deliveries_woken_total",
			Help: "Deliveries that waited for a free in-flight slot (endpoint_busy, app_busy) and were made due when one freed.",
		}),
	}
	m.attempts.WithLabelValues(OutcomeSuccess) // present from the start, for rate() and alerts
	for _, r := range []string{"gone", "failing"} {
		m.disabled.WithLabelValues(r)
	}
	for _, k := range []string{"fanout", "delivery", "dead_letter"} {
		m.repaired.WithLabelValues(k)
	}
	reg.MustRegister(m.published, m.batchSize, m.batchDuration, m.relayErrors, m.eventsFannedOut,
		m.deliveriesCreated, m.perEvent, m.attempts, m.attemptDuration, m.latency, m.deadLetters, m.replayed, m.disabled,
		m.repaired, m.reconcileErrors, m.woken, m.firstAttempts)
	return m
}

// BatchRelayed implements outbox.RelayObserver.
func (m *Metrics) BatchRelayed(n int, d time.Duration) {
	m.published.Add(float64(n))
	m.batchSize.Observe(float64(n))
	m.batchDuration.Observe(d.Seconds())
}

// BatchFailed implements outbox.RelayObserver.
func (m *Metrics) BatchFailed() { m.relayErrors.Inc() }
