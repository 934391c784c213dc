package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
)

// outboxCollector reads the outbox's backlog on every scrape: rows not yet
// published and the age of the oldest, through the partial index on them.
type outboxCollector struct {
	db               *bun.DB
	pending, lag, up *prometheus.Desc
}

func newOutboxCollector(db *bun.DB) *outboxCollector {
	return &outboxCollector{
		db:      db,
		pending: prometheus.NewDesc("hookd_outbox_pending_rows", "Outbox rows committed and not yet published to the queue.", nil, nil),
		lag:     prometheus.NewDesc("hookd_outbox_lag_seconds", "Age of the oldest unpublished outbox row (0 when none).", nil, nil),
		up:      prometheus.NewDesc("hookd_outbox_scrape_success", "1 when the outbox could be read for this scrape.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.lag
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := outbox.ReadStats(ctx, c.db)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(s.Pending))
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, s.Lag.Seconds())
}
