package repair

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/hookd/hookd/tasks/ledger"
)

// Defaults of RetentionConfig.
const (
	DefaultEventRetention    = 30 * 24 * time.Hour
	DefaultRetentionInterval = 10 * time.Second
	DefaultRetentionBatch    = 200
)

// RetentionConfig tunes Retention. Zero values take the defaults.
type RetentionConfig struct {
	// Events is how long events are kept, with their deliveries and
	// attempts (default DefaultEventRetention), and finished dead-letter
	// retry jobs.
	Events time.Duration
	// Attempts is how long delivery attempts, with the response bodies
	// they recorded, are kept (default Events). Only a period shorter
	// than Events has effect: attempts go with their event.
	Attempts time.Duration
	// Interval is the pause between passes (default
	// DefaultRetentionInterval).
	Interval time.Duration
	// Batch is the most events deleted per statement (default
	// DefaultRetentionBatch); attempts go five times as many at once.
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
	ledger *ledger.Store
	log    *slog.Logger
	cfg    RetentionConfig
}

func (c RetentionConfig) withDefaults() RetentionConfig {
	c.Events = cmp.Or(c.Events, DefaultEventRetention)
	c.Interval = cmp.Or(c.Interval, DefaultRetentionInterval)
	c.Batch = cmp.Or(c.Batch, DefaultRetentionBatch)
	c.Attempts = cmp.Or(c.Attempts, c.Events)
	return c
}

// NewRetention returns a Retention deleting from l.
func NewRetention(l *ledger.Store, log *slog.Logger, cfg RetentionConfig) *Retention {
	return &Retention{ledger: l, log: log, cfg: cfg.withDefaults()}
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
	now := time.Now()
	events := 0
	for {
		n, err := r.ledger.DeleteEvents(ctx, now.Add(-r.cfg.Events), r.cfg.Batch)
		events += n
		if err != nil {
			return events, err
		}
		if n < r.cfg.Batch {
			break
		}
	}
	if r.cfg.Attempts < r.cfg.Events {
		batch := 5 * r.cfg.Batch
		for {
			n, err := r.ledger.DeleteAttempts(ctx, now.Add(-r.cfg.Attempts), batch)
			if err != nil {
				return events, err
			}
			if n < batch {
				break
			}
		}
	}
	return events, r.ledger.DeleteJobs(ctx, now.Add(-r.cfg.Events))
}
