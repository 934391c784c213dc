package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Record is an attempt and what it makes of its delivery.
type Record struct {
	Attempt *Attempt
	// Status is the delivery's status after the attempt.
	Status string
	// LastError is the delivery's last error after it (nil on success).
	LastError *string
}

// Record stores attempts and moves their deliveries on, in one statement:
// every attempt is inserted and its delivery updated, or none. Succeeded
// deliveries get succeeded_at; failed ones failed_at, which anything else
// clears (a dead letter run again from Asynqmon); a FIFO delivery moves on
// from pending only. Deliveries failed for good are told to
// WithDeadLetters' function in the same transaction.
func (s *Store) Record(ctx context.Context, rs []Record) error {
	var (
		ids, classes, statuses []string
		at                     []time.Time
		ms                     []float64
		codes                  []*int
		bodies, errs, lastErrs []*string
	)
	for _, r := range rs {
		a := r.Attempt
		ids, at, ms = append(ids, a.DeliveryID), append(at, a.AttemptedAt), append(ms, a.DurationMS)
		codes, bodies, errs = append(codes, a.StatusCode), append(bodies, a.ResponseBody), append(errs, a.Error)
		classes, statuses, lastErrs = append(classes, a.ErrorClass), append(statuses, r.Status), append(lastErrs, r.LastError)
	}
	args := []any{
		pgdialect.Array(ids), pgdialect.Array(at), pgdialect.Array(ms), pgdialect.Array(codes),
		pgdialect.Array(bodies), pgdialect.Array(errs), pgdialect.Array(classes), pgdialect.Array(statuses),
		pgdialect.Array(lastErrs), StatusSucceeded, StatusFailed,
	}
	if !s.hearing(rs) {
		if _, err := s.db.NewRaw(recordSQL, args...).Exec(ctx); err != nil {
			return fmt.Errorf("record %d attempts: %w", len(rs), err)
		}
		return nil
	}
	// Some deliveries fail for good: whoever hears of dead letters does
	// in the same transaction.
	err := s.failInTx(ctx, func(ctx context.Context, tx bun.Tx) ([]DeadLetter, error) {
		var rows []updated
		err := tx.NewRaw(recordSQL+" RETURNING "+deadLetterColumns, args...).Scan(ctx, &rows)
		return deadLetters(rows), err
	})
	if err != nil {
		return fmt.Errorf("record %d attempts: %w", len(rs), err)
	}
	return nil
}

// recordSQL stores attempts and updates their deliveries (Record).
const recordSQL = `WITH v AS (
			SELECT * FROM unnest(?::text[], ?::timestamptz[], ?::float8[], ?::int[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])
			AS v(delivery_id, attempted_at, duration_ms, status_code, response_body, error, error_class, status, last_error)
		), attempts AS (
			INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code, response_body, error, error_class)
			SELECT delivery_id, attempted_at, duration_ms, status_code, response_body, error, error_class FROM v
		)
		UPDATE deliveries AS d SET
			status = v.status,
			attempts = d.attempts + 1,
			last_status_code = v.status_code,
			last_error = v.last_error,
			updated_at = clock_timestamp(),
			succeeded_at = CASE WHEN v.status = ? THEN clock_timestamp() ELSE d.succeeded_at END,
			failed_at = CASE WHEN v.status = ? THEN clock_timestamp() END
		FROM v WHERE d.id = v.delivery_id
			-- A FIFO delivery moves on only from pending: a late record of
			-- a pump taken over must not put a finished head back in its
			-- queue, behind what has gone since.
			AND (d.seq IS NULL OR d.status = 'pending')`

// Status returns the status of delivery id, or an error wrapping
// ErrNotFound when its row is gone (with its endpoint or app).
func (s *Store) Status(ctx context.Context, id string) (string, error) {
	var status string
	err := s.db.NewSelect().Model((*Delivery)(nil)).Column("status").Where("id = ?", id).Scan(ctx, &status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", fmt.Errorf("delivery %s: %w", id, ErrNotFound)
	case err != nil:
		return "", fmt.Errorf("read delivery %s: %w", id, err)
	}
	return status, nil
}

// MarkFailed moves a pending delivery to failed, for reason. It changes
// nothing for a delivery already failed or succeeded. The delivery it
// fails is told to WithDeadLetters' function in the same transaction.
func (s *Store) MarkFailed(ctx context.Context, id, reason string) error {
	mark := func(db bun.IDB) *bun.UpdateQuery {
		return db.NewUpdate().TableExpr("deliveries AS d").
			Set("status = ?", StatusFailed).
			Set("last_error = ?", reason).
			Set("updated_at = clock_timestamp()").
			Set("failed_at = clock_timestamp()").
			Where("d.id = ?", id).
			Where("d.status = ?", StatusPending)
	}
	var err error
	if s.deadLettered == nil {
		_, err = mark(s.db).Exec(ctx)
	} else {
		err = s.failInTx(ctx, func(ctx context.Context, tx bun.Tx) ([]DeadLetter, error) {
			var rows []updated
			err := mark(tx).Returning(deadLetterColumns).Scan(ctx, &rows)
			return deadLetters(rows), err
		})
	}
	if err != nil {
		return fmt.Errorf("mark delivery %s failed: %w", id, err)
	}
	return nil
}
