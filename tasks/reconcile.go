package tasks

import (
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
)

//go:embed reconcile.sql
var reconcileSchema string

// ReconcileSchema returns the SQL that adds the fan-out's mark on outbox
// events, which the reconciler reads. Applications run it once, after
// EngineSchema.
func ReconcileSchema() string { return reconcileSchema }

// ReconcilerConfig tunes a Reconciler. Zero values take the defaults.
type ReconcilerConfig struct {
	// Interval is the pause between passes (default 30s).
	Interval time.Duration
	// After is how old work must be before the reconciler looks at it: a
	// published event not yet fanned out, a pending delivery not updated
	// since (default 1m). Younger work may still be on its way.
	After time.Duration
	// Batch bounds each kind of work per pass (default 500).
	Batch int
}

// Reconciler finds what Redis should hold and does not, and enqueues it
// again: fan-outs of published events never fanned out, and delivery
// tasks of pending deliveries. Redis loses tasks on a flush, on a restart
// without persistence, on a failover that drops acknowledged writes, or
// when it evicts keys. Every enqueue is idempotent (the task ID is the
// event's or the delivery's), so a task Redis still holds is left alone and
// any number of reconcilers may run.
type Reconciler struct {
	db      *bun.DB
	queue   *Queue
	requeue requeuer
	metrics *Metrics
	log     *slog.Logger
	cfg     ReconcilerConfig

	// cursor walks the pending deliveries across passes, so that a long
	// tail of deliveries waiting for a late retry does not hide the rest.
	cursor struct {
		updatedAt time.Time
		id        string
	}
}

// NewReconciler returns a Reconciler enqueuing through queue.
func NewReconciler(db *bun.DB, queue *Queue, inspector *asynq.Inspector, metrics *Metrics, log *slog.Logger, cfg ReconcilerConfig) *Reconciler {
	cfg.Interval = cmp.Or(cfg.Interval, 30*time.Second)
	cfg.After = cmp.Or(cfg.After, time.Minute)
	cfg.Batch = cmp.Or(cfg.Batch, 500)
	return &Reconciler{db: db, queue: queue, requeue: requeuer{db, queue, inspector}, metrics: metrics, log: log, cfg: cfg}
}

// Run reconciles every Interval until ctx is done. Failed passes are
// logged and counted; Run returns nil once ctx is done.
func (r *Reconciler) Run(ctx context.Context) error {
	every(ctx, r.cfg.Interval, func(ctx context.Context) {
		fanouts, deliveries, err := r.Pass(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			r.metrics.reconcileErrors.Inc()
			r.log.WarnContext(ctx, "reconcile pass failed", slog.Any("err", err))
		case fanouts+deliveries > 0:
			r.log.WarnContext(ctx, "reconciler enqueued tasks Redis had lost",
				slog.Int("fanouts", fanouts), slog.Int("deliveries", deliveries))
		}
	})
	return nil
}

// every calls fn every d until ctx is done.
func every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// Pass runs one bounded pass and returns how many fan-out and delivery
// tasks it enqueued again.
func (r *Reconciler) Pass(ctx context.Context) (fanouts, deliveries int, err error) {
	fanouts, err = r.fanouts(ctx)
	if err != nil {
		return 0, 0, err
	}
	deliveries, err = r.deliveries(ctx)
	return fanouts, deliveries, err
}

// fanouts enqueues the fan-out of events published at least After ago and
// never fanned out. A fan-out still queued (or done within its retention)
// is a task ID conflict: nothing happens.
func (r *Reconciler) fanouts(ctx context.Context) (int, error) {
	var msgs []outbox.Message
	err := r.db.NewSelect().Model(&msgs).
		Where("fanned_out_at IS NULL AND published_at IS NOT NULL").
		Where("published_at < clock_timestamp() - ?::interval", interval(r.cfg.After)).
		OrderExpr("published_at").
		Limit(int64(r.cfg.Batch)).
		Scan(ctx)
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	n, err := r.queue.enqueueFanouts(ctx, msgs)
	r.metrics.repaired.WithLabelValues("fanout").Add(float64(n))
	return n, err
}

// deliveries enqueues the task of each pending delivery not updated for
// After whose task Redis does not hold, in any state, in either delivery
// queue. A pending delivery whose task asynq archived is a dead letter
// whose mirror in Postgres failed: it is marked failed.
func (r *Reconciler) deliveries(ctx context.Context) (int, error) {
	var rows []storedDelivery
	err := selectStored(r.db).
		Where("d.status = ?", StatusPending).
		Where("d.updated_at < clock_timestamp() - ?::interval", interval(r.cfg.After)).
		Where("(d.updated_at, d.id) > (?, ?)", r.cursor.updatedAt, r.cursor.id).
		OrderExpr("d.updated_at, d.id").
		Limit(int64(r.cfg.Batch)).
		Scan(ctx, &rows)
	if err != nil {
		return 0, fmt.Errorf("find pending deliveries: %w", err)
	}
	if len(rows) < r.cfg.Batch {
		r.cursor.updatedAt, r.cursor.id = time.Time{}, "" // the next pass starts over
	} else {
		last := rows[len(rows)-1]
		r.cursor.updatedAt, r.cursor.id = last.UpdatedAt, last.ID
	}
	ids := make([]string, len(rows))
	events := make(map[string]string, len(rows))
	for i, row := range rows {
		ids[i], events[row.ID] = row.ID, row.EventID
	}
	lost, archived, err := r.requeue.missing(ctx, ids, events)
	if err != nil {
		return 0, err
	}
	// Archived while Postgres was out of reach, so their rows were not
	// marked: dead letters all the same.
	for id, lastErr := range archived {
		if err := markFailed(ctx, r.db, id, lastErr); err != nil {
			return 0, err
		}
	}
	if len(archived) > 0 {
		r.metrics.repaired.WithLabelValues("dead_letter").Add(float64(len(archived)))
		r.log.InfoContext(ctx, "dead letters marked failed in postgres", slog.Int("count", len(archived)))
	}
	if len(lost) == 0 {
		return 0, nil
	}
	owed := make(map[string]bool, len(lost))
	for _, id := range lost {
		owed[id] = true
	}
	payloads := make([]DeliverPayload, 0, len(lost))
	for _, row := range rows {
		if owed[row.ID] {
			payloads = append(payloads, row.payload())
		}
	}
	n, err := r.queue.enqueueDeliveries(ctx, payloads)
	r.metrics.repaired.WithLabelValues("delivery").Add(float64(n))
	return n, err
}

func interval(d time.Duration) string { return fmt.Sprintf("%d milliseconds", d.Milliseconds()) }
