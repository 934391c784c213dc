package tasks

import (
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
)

//go:embed retention.sql
var retentionSchema string

// RetentionSchema returns the SQL that indexes attempts by age, for
// Retention. Applications run it once, after ReconcileSchema.
func RetentionSchema() string { return retentionSchema }

// RetentionConfig tunes Retention. Zero values take the defaults.
type RetentionConfig struct {
	// Events is how long events are kept, with their deliveries and
	// attempts (default 30 days), and finished dead-letter retry jobs.
	Events time.Duration
	// Attempts is how long delivery attempts, with the response bodies
	// they recorded, are kept (default Events). Only a period shorter
	// than Events has effect: attempts go with their event.
	Attempts time.Duration
	// Interval is the pause between passes (default 10s).
	Interval time.Duration
	// Batch is the most events deleted per statement (default 200);
	// attempts go five times as many at once.
	Batch int
	// Expiries are other tables' clean-ups run on every pass, by what they
	// delete (for the logs), such as the API's expired idempotency keys.
	Expiries map[string]Expiry
}

// Expiry deletes a table's expired rows in bounded batches and returns how
// many it deleted.
type Expiry func(ctx context.Context) (int, error)

// Retention deletes events (outbox rows) older than its period, with their
// deliveries and attempts, once they are fanned out and none of their
// deliveries is pending (a dead letter goes with its event); attempts
// older than theirs; and finished dead-letter retry jobs. It deletes in
// small batches, each its own statement, skipping rows another transaction
// holds, so it never holds up publishing or delivering; several may run.
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
	cfg.Attempts = cmp.Or(cfg.Attempts, cfg.Events)
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
	events, err := r.expireEvents(ctx)
	if err != nil {
		return events, err
	}
	if r.cfg.Attempts < r.cfg.Events {
		if err := r.expireAttempts(ctx); err != nil {
			return events, err
		}
	}
	_, err = r.db.NewDelete().TableExpr("dead_letter_retries").
		Where("status = ? AND finished_at < ?", JobCompleted, time.Now().Add(-r.cfg.Events)).
		Exec(ctx)
	if err != nil {
		return events, fmt.Errorf("delete finished retry jobs: %w", err)
	}
	return events, nil
}

// expireEvents deletes the expired events that are fanned out and that no
// pending delivery holds, with their deliveries and attempts, and returns
// how many it deleted.
func (r *Retention) expireEvents(ctx context.Context) (int, error) {
	// Event IDs sort by creation time: the primary key bounds the scan.
	before := outbox.IDAt("evt", time.Now().Add(-r.cfg.Events))
	total := 0
	for {
		var deleted []string
		err := r.db.NewRaw(`WITH old AS (
				SELECT o.id FROM outbox_events AS o
				WHERE o.id < ? AND o.fanned_out_at IS NOT NULL
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

// expireAttempts deletes the attempts older than the attempt retention.
// A BRIN index on attempted_at finds them (attempts are appended in time
// order); the statement locks nothing it does not delete.
func (r *Retention) expireAttempts(ctx context.Context) error {
	before := time.Now().Add(-r.cfg.Attempts)
	batch := 5 * r.cfg.Batch
	for {
		res, err := r.db.ExecContext(ctx, `DELETE FROM delivery_attempts WHERE id IN (
				SELECT id FROM delivery_attempts WHERE attempted_at < ? LIMIT ?
				FOR UPDATE SKIP LOCKED)`, before, batch)
		if err != nil {
			return fmt.Errorf("delete expired attempts: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("delete expired attempts: %w", err)
		}
		if n < int64(batch) {
			return nil
		}
	}
}
