package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"
)

// Publisher hands a claimed batch on. It must be idempotent on each
// message's ID: after a crash between Publish and the commit that marks the
// batch published, the same messages are published again.
type Publisher interface {
	Publish(ctx context.Context, batch []Message) error
}

// RelayConfig tunes a Relay. Zero values take the defaults.
type RelayConfig struct {
	// BatchSize is the most events claimed per transaction (default 100).
	BatchSize int
	// PollInterval is how often the relay looks for work when no
	// notification wakes it (default 1s). Notifications set the pace;
	// polling only covers missed ones.
	PollInterval time.Duration
	// ErrorBackoff is the pause after a failed batch (default 500ms); it
	// doubles with each further failure, up to MaxErrorBackoff (default 30s).
	ErrorBackoff    time.Duration
	MaxErrorBackoff time.Duration
	// Observer hears about every batch (optional).
	Observer RelayObserver
}

// RelayObserver hears what a relay does, for metrics.
type RelayObserver interface {
	// BatchRelayed reports a batch of n events published in d (n may be 0).
	BatchRelayed(n int, d time.Duration)
	// BatchFailed reports a batch that rolled back.
	BatchFailed()
}

type noObserver struct{}

func (noObserver) BatchRelayed(int, time.Duration) {}
func (noObserver) BatchFailed()                    {}

// Relay moves committed events from the outbox to a Publisher. Any number of
// relays may run against one table: each claims rows with
// FOR UPDATE SKIP LOCKED, so a row is handed to one relay at a time.
type Relay struct {
	db  *bun.DB
	pub Publisher
	log *slog.Logger
	cfg RelayConfig
}

// NewRelay returns a Relay reading the outbox_events table of db's current
// schema.
func NewRelay(db *bun.DB, pub Publisher, log *slog.Logger, cfg RelayConfig) *Relay {
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 100)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, time.Second)
	cfg.ErrorBackoff = cmp.Or(cfg.ErrorBackoff, 500*time.Millisecond)
	cfg.MaxErrorBackoff = max(cmp.Or(cfg.MaxErrorBackoff, 30*time.Second), cfg.ErrorBackoff)
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	return &Relay{db: db, pub: pub, log: log, cfg: cfg}
}

// RelayBatch claims up to BatchSize unpublished events, oldest first, hands
// them to the Publisher and marks them published, in one transaction. When
// the Publisher fails, the transaction rolls back and the events stay
// unpublished for the next pass. It returns how many events it published.
func (r *Relay) RelayBatch(ctx context.Context) (int, error) {
	start := time.Now()
	var batch []Message
	err := r.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// Claim and mark in one statement: the mark commits only if the
		// Publisher succeeds, and the row locks keep other relays off.
		claim := tx.NewSelect().Model((*Message)(nil)).Column("id").
			Where("published_at IS NULL").
			OrderExpr("seq").
			Limit(int64(r.cfg.BatchSize)).
			For("UPDATE SKIP LOCKED")
		err := tx.NewUpdate().Model(&batch).
			Set("published_at = clock_timestamp()").
			Where("id IN (?)", claim).
			Returning("id, tenant, topic, payload, created_at, seq").
			Scan(ctx)
		if err != nil {
			return fmt.Errorf("claim events: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		// RETURNING follows no order; the Publisher gets the outbox's.
		slices.SortFunc(batch, func(a, b Message) int { return cmp.Compare(a.Seq, b.Seq) })
		if err := r.pub.Publish(ctx, batch); err != nil {
			return fmt.Errorf("publish %d events: %w", len(batch), err)
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Observer.BatchFailed()
		}
		return 0, fmt.Errorf("relay batch: %w", err)
	}
	r.cfg.Observer.BatchRelayed(len(batch), time.Since(start))
	return len(batch), nil
}

// Run relays events until ctx is done. It wakes on the table's
// notifications (LISTEN/NOTIFY), keeps going while batches come back full,
// and polls every PollInterval in case a notification was missed. Errors
// are logged and retried; Run returns nil once ctx is done.
func (r *Relay) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	stop := r.listen(ctx, wake)
	defer stop()

	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	backoff := r.cfg.ErrorBackoff
	for {
		n, err := r.RelayBatch(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			r.log.WarnContext(ctx, "relay batch failed", slog.Any("err", err), slog.Duration("retry_in", backoff))
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, r.cfg.MaxErrorBackoff)
			continue
		}
		backoff = r.cfg.ErrorBackoff
		if n == r.cfg.BatchSize {
			continue // more are likely waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
		}
	}
}

// notifyChannel is the channel the outbox trigger notifies, with the
// table's schema as payload.
const notifyChannel = "outbox_events"

// listen forwards outbox notifications to wake until the returned stop
// function is called. A lost connection is re-established by the listener;
// meanwhile polling keeps the relay going.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) (stop func()) {
	ln := pgdriver.NewListener(r.db)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		var schema string
		for schema == "" {
			if err := r.db.NewRaw("SELECT current_schema()").Scan(ctx, &schema); err != nil {
				if !sleep(ctx, r.cfg.ErrorBackoff) {
					return
				}
			}
		}
		if err := ln.Listen(ctx, notifyChannel); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "relay listen failed; polling until it reconnects", slog.Any("err", err))
		}
		for ctx.Err() == nil {
			_, payload, err := ln.ReceiveTimeout(ctx, 5*time.Second)
			var netErr net.Error
			switch {
			case err == nil && payload != schema:
				// Another schema's outbox (tests share a database).
			case err == nil:
				select {
				case wake <- struct{}{}:
				default:
				}
			case errors.As(err, &netErr) && netErr.Timeout():
				// Quiet period; receive again.
			default:
				sleep(ctx, r.cfg.ErrorBackoff)
			}
		}
	})
	return func() {
		cancel()
		_ = ln.Close()
		wg.Wait()
	}
}

// sleep waits for d or until ctx is done, reporting whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
