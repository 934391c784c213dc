package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
)

// Unfanned returns up to limit events published more than after ago and
// never marked fanned out, oldest first.
func (s *Store) Unfanned(ctx context.Context, after time.Duration, limit int) ([]outbox.Message, error) {
	var msgs []outbox.Message
	err := s.db.NewSelect().Model(&msgs).
		Where("fanned_out_at IS NULL AND published_at IS NOT NULL").
		Where("published_at < clock_timestamp() - ?::interval", interval(after)).
		OrderExpr("published_at").
		Limit(int64(limit)).
		Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("find events not fanned out: %w", err)
	}
	return msgs, nil
}

// Cursor is a position among pending deliveries, by last update; the zero
// Cursor is before the first.
type Cursor struct {
	UpdatedAt time.Time
	ID        string
}

// Pending returns up to limit pending deliveries not updated for after,
// past cursor, in the order of their last update; FIFO deliveries, which
// their endpoint's pump sends, are left out (see FIFOQueues).
func (s *Store) Pending(ctx context.Context, after time.Duration, cursor Cursor, limit int) ([]Stored, error) {
	var rows []Stored
	err := selectStored(s.db).
		Where("d.status = ?", StatusPending).
		Where("d.seq IS NULL").
		Where("d.updated_at < clock_timestamp() - ?::interval", interval(after)).
		Where("(d.updated_at, d.id) > (?, ?)", cursor.UpdatedAt, cursor.ID).
		OrderExpr("d.updated_at, d.id").
		Limit(int64(limit)).
		Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("find pending deliveries: %w", err)
	}
	return rows, nil
}

// StillPending returns those of ids that are pending now.
func (s *Store) StillPending(ctx context.Context, ids []string) ([]string, error) {
	var pending []string
	err := s.db.NewSelect().Model((*Delivery)(nil)).Column("id").
		Where("id IN (?) AND status = ?", bun.In(ids), StatusPending).Scan(ctx, &pending)
	if err != nil {
		return nil, fmt.Errorf("recheck pending deliveries: %w", err)
	}
	return pending, nil
}

// DeleteEvents deletes up to limit events created before cutoff that are
// fanned out and that no pending delivery holds (a dead letter goes with
// its event), with their deliveries and attempts, and returns how many it
// deleted. It skips rows another transaction holds.
func (s *Store) DeleteEvents(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	// Event IDs sort by creation time: the primary key bounds the scan.
	before := outbox.IDAt("evt", cutoff)
	var deleted []string
	err := s.db.NewRaw(`WITH old AS (
			SELECT o.id FROM outbox_events AS o
			WHERE o.id < ? AND o.fanned_out_at IS NOT NULL
				AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.event_id = o.id AND d.status = ?)
			ORDER BY o.id LIMIT ?
			FOR UPDATE SKIP LOCKED
		), deliveries_gone AS (
			DELETE FROM deliveries WHERE event_id IN (SELECT id FROM old)
		)
		DELETE FROM outbox_events WHERE id IN (SELECT id FROM old) RETURNING id`,
		before, StatusPending, limit).Scan(ctx, &deleted)
	if err != nil {
		return 0, fmt.Errorf("delete expired events: %w", err)
	}
	return len(deleted), nil
}

// DeleteAttempts deletes up to limit attempts made before cutoff and
// returns how many it deleted. A BRIN index on attempted_at finds them
// (attempts are appended in time order); the statement locks nothing it
// does not delete.
func (s *Store) DeleteAttempts(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM delivery_attempts WHERE id IN (
			SELECT id FROM delivery_attempts WHERE attempted_at < ? LIMIT ?
			FOR UPDATE SKIP LOCKED)`, cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("delete expired attempts: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete expired attempts: %w", err)
	}
	return int(n), nil
}

// DeleteJobs deletes the bulk retries and the recoveries that finished
// before cutoff.
func (s *Store) DeleteJobs(ctx context.Context, cutoff time.Time) error {
	for _, table := range []string{"dead_letter_retries", "endpoint_recoveries"} {
		_, err := s.db.NewDelete().TableExpr(table).
			Where("status = ? AND finished_at < ?", JobCompleted, cutoff).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("delete finished %s: %w", table, err)
		}
	}
	return nil
}
