// Package repair keeps Redis and Postgres in step over time: the
// Reconciler enqueues again what Redis lost (fan-outs of published events,
// tasks of pending deliveries) and marks dead letters whose mirror in
// Postgres failed; Retention deletes what is past its keeping; the Finder
// tells which pending deliveries have lost their task, for the reconciler
// and for a fan-out run again.
//
// It reads and writes Postgres through the ledger and Redis through the
// tasks Queue only.
package repair

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/ledger"
)

// Defaults of ReconcilerConfig.
const (
	DefaultReconcileInterval = 30 * time.Second
	DefaultReconcileAfter    = time.Minute
	DefaultReconcileBatch    = 500
)

// ReconcilerConfig tunes a Reconciler. Zero values take the defaults.
type ReconcilerConfig struct {
	// Interval is the pause between passes (default
	// DefaultReconcileInterval).
	Interval time.Duration
	// After is how old work must be before the reconciler looks at it: a
	// published event not yet fanned out, a pending delivery not updated
	// since (default DefaultReconcileAfter). Younger work may still be on
	// its way.
	After time.Duration
	// Batch bounds each kind of work per pass (default
	// DefaultReconcileBatch).
	Batch int
}

func (c ReconcilerConfig) withDefaults() ReconcilerConfig {
	c.Interval = cmp.Or(c.Interval, DefaultReconcileInterval)
	c.After = cmp.Or(c.After, DefaultReconcileAfter)
	c.Batch = cmp.Or(c.Batch, DefaultReconcileBatch)
	return c
}

// Reconciler finds what Redis should hold and does not, and enqueues it
// again: fan-outs of published events never fanned out, and delivery
// tasks of pending deliveries. Redis loses tasks on a flush, on a restart
// without persistence, on a failover that drops acknowledged writes, or
// when it evicts keys. Every enqueue is idempotent (the task ID is the
// event's or the delivery's), so a task Redis still holds is left alone and
// any number of reconcilers may run.
type Reconciler struct {
	ledger  *ledger.Store
	queue   *tasks.Queue
	finder  *Finder
	metrics *Metrics
	log     *slog.Logger
	cfg     ReconcilerConfig

	// cursor walks the pending deliveries across passes, so that a long
	// tail of deliveries waiting for a late retry does not hide the rest;
	// fifoCursor walks the FIFO endpoints the same way.
	cursor     ledger.Cursor
	fifoCursor string
}

// NewReconciler returns a Reconciler enqueuing through queue.
func NewReconciler(l *ledger.Store, queue *tasks.Queue, metrics *Metrics, log *slog.Logger, cfg ReconcilerConfig) *Reconciler {
	return &Reconciler{ledger: l, queue: queue, finder: NewFinder(l, queue), metrics: metrics, log: log, cfg: cfg.withDefaults()}
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
	if err != nil {
		return fanouts, deliveries, err
	}
	pumps, err := r.pumps(ctx)
	return fanouts, deliveries + pumps, err
}

// pumps makes sure that each FIFO endpoint with a delivery waiting has its
// pump, and starts those Redis lost (with their hash, or their task) or
// whose worker died. It returns how many it started.
func (r *Reconciler) pumps(ctx context.Context) (int, error) {
	qs, err := r.ledger.FIFOQueues(ctx, r.fifoCursor, r.cfg.Batch)
	if err != nil {
		return 0, err
	}
	r.fifoCursor = ""
	if len(qs) == r.cfg.Batch {
		r.fifoCursor = qs[len(qs)-1].EndpointID
	}
	started := 0
	for _, q := range qs {
		ok, err := r.queue.RestartPump(ctx, q.EndpointID, q.AppID)
		if err != nil {
			return started, err
		}
		if ok {
			started++
		}
	}
	r.metrics.repaired.WithLabelValues("fifo_pump").Add(float64(started))
	return started, nil
}

// fanouts enqueues the fan-out of events published at least After ago and
// never fanned out. A fan-out still queued (or done within its retention)
// is a task ID conflict: nothing happens.
func (r *Reconciler) fanouts(ctx context.Context) (int, error) {
	msgs, err := r.ledger.Unfanned(ctx, r.cfg.After, r.cfg.Batch)
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	n, err := r.queue.EnqueueFanouts(ctx, msgs)
	r.metrics.repaired.WithLabelValues("fanout").Add(float64(n))
	return n, err
}

// deliveries enqueues the task of each pending delivery not updated for
// After whose task Redis does not hold, in any state, in either delivery
// queue. A pending delivery whose task asynq archived is a dead letter
// whose mirror in Postgres failed: it is marked failed.
func (r *Reconciler) deliveries(ctx context.Context) (int, error) {
	rows, err := r.ledger.Pending(ctx, r.cfg.After, r.cursor, r.cfg.Batch)
	if err != nil {
		return 0, err
	}
	if len(rows) < r.cfg.Batch {
		r.cursor = ledger.Cursor{} // the next pass starts over
	} else {
		last := rows[len(rows)-1]
		r.cursor = ledger.Cursor{UpdatedAt: last.UpdatedAt, ID: last.ID}
	}
	refs := make([]tasks.TaskRef, len(rows))
	events := make(map[string]string, len(rows))
	for i, row := range rows {
		refs[i], events[row.ID] = tasks.TaskRef{DeliveryID: row.ID, EndpointID: row.EndpointID}, row.EventID
	}
	lost, archived, err := r.finder.Lost(ctx, refs, events)
	if err != nil {
		return 0, err
	}
	// Archived while Postgres was out of reach, so their rows were not
	// marked: dead letters all the same.
	for id, lastErr := range archived {
		if err := r.ledger.MarkFailed(ctx, id, lastErr); err != nil {
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
	payloads := make([]tasks.DeliverPayload, 0, len(lost))
	for _, row := range rows {
		if owed[row.ID] {
			payloads = append(payloads, row.Payload())
		}
	}
	n, err := r.queue.EnqueueDeliveries(ctx, payloads)
	r.metrics.repaired.WithLabelValues("delivery").Add(float64(n))
	return n, err
}
