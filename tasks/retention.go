package tasks

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
)

// RetentionConfig tunes Retention. Zero values take the defaults.
type RetentionConfig struct {
	// Events is how long events are kept, with their deliveries and
	// attempts (default 30 days).
	Events time.Duration
	// Interval is the pause between passes (default 10s).
	Interval time.Duration
	// Batch is the most events deleted per statement (default 200).
	Batch int
	// Expiries are other tables' clean-ups run on every pass, by what they
	// delete (for the logs), such as the API's expired idempotency keys.
	Expiries map[string]Expiry
}

// Expiry deletes a table's expired rows in bounded batches and returns how
// many it deleted.
type Expiry func(ctx context.Context) (int, error)

// Retention deletes events (outbox rows) older than its period, with their
// deliveries and attempts, once none of their deliveries is pending (a
// dead letter goes with its event). It deletes in small batches, each its
// own statement, skipping rows another transaction holds, so it never
// holds up publishing or delivering; several may run.
type Retention struct {
	db  *bun.DB
	log *slog.Logger
	cfg RetentionConfig
}

// NewRetention returns a Retention on db.
func NewRetention(db *bun.DB, log *slog.Logger, cfg RetentionConfig) *Retention {
	cfg.Events = cmp.Or(cfg.Events, 30*24*time.Hour)
	cfg.Interval = cmp.Or(cfg.Interval, 10*time.Second)
	cfg.Batch = cmp.Or(cfg.Batch, 200)
	return &Retention{db: db, log: log, cfg: cfg}
}

// Run deletes expired rows every Interval until ctx is done.
func (r *Retention) Run(ctx context.Context) error {
	every(ctx, r.cfg.Interval, func(ctx context.Context) {
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "retention pass failed", slog.Any("err", err))
		}
		for name, expire := range r.cfg.Expiries {
			if _, err := expire(ctx); err != nil && ctx.Err() == nil {
				r.log.WarnContext(ctx, "retention pass failed", slog.String("rows", name), slog.Any("err", err))
			}
		}
	})
	return nil
}

// Pass deletes every expired row, batch by batch, and returns how many
// events it deleted.
func (r *Retention) Pass(ctx context.Context) (int, error) {
	// Event IDs sort by creation time: the primary key bounds the scan.
	before := outbox.IDAt("evt", time.Now().Add(-r.cfg.Events))
	total := 0
	for {
		var deleted []string
		err := r.db.NewRaw(`WITH old AS (
				SELECT o.id FROM outbox_events AS o
				WHERE o.id < ? AND o.published_at IS NOT NULL
					AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.event_id = o.id AND d.status = ?)
				ORDER BY o.id LIMIT ?
				FOR UPDATE SKIP LOCKED
			), deliveries_gone AS (
				DELETE FROM deliveries WHERE event_id IN (SELECT id FROM old)
			)
			DELETE FROM outbox_events WHERE id IN (SELECT id FROM old) RETURNING id`,
			before, StatusPending, r.cfg.Batch).Scan(ctx, &deleted)
		if err != nil {
			return total, fmt.Errorf("delete expired events: %w", err)
		}
		total += len(deleted)
		if len(deleted) < r.cfg.Batch {
			break
		}
	}
	return total, nil
}
