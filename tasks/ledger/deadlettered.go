package ledger

import (
	"context"
	"fmt"
	"slices"

	"github.com/uptrace/bun"
)

// DeadLetter is a delivery that failed for good, as the transaction that
// failed it leaves it.
type DeadLetter struct {
	ID             string  `bun:"id"`
	EventID        string  `bun:"event_id"`
	EndpointID     string  `bun:"endpoint_id"`
	AppID          string  `bun:"app_id"`
	EventType      string  `bun:"event_type"`
	Attempts       int     `bun:"attempts"`
	LastStatusCode *int    `bun:"last_status_code"`
	LastError      *string `bun:"last_error"`
}

// deadLetterColumns are the columns of deliveries that make a DeadLetter,
// with the status, which tells the dead letters among updated rows.
const deadLetterColumns = "d.id, d.event_id, d.endpoint_id, d.app_id, d.event_type, d.attempts, d.last_status_code, d.last_error, d.status"

// updated is a delivery an update returned: a DeadLetter when its status
// is failed.
type updated struct {
	DeadLetter
	Status string `bun:"status"`
}

// deadLetters returns those of rows that failed.
func deadLetters(rows []updated) []DeadLetter {
	var ds []DeadLetter
	for _, r := range rows {
		if r.Status == StatusFailed {
			ds = append(ds, r.DeadLetter)
		}
	}
	return ds
}

// DeadLetterFunc hears the deliveries that a transaction fails for good,
// inside that transaction, before it commits: what it writes with tx
// commits with them or not at all, and its error rolls the transaction
// back (the deliveries stay as they were).
type DeadLetterFunc func(ctx context.Context, tx bun.Tx, ds []DeadLetter) error

// WithDeadLetters returns a Store on the same database that calls fn in
// every transaction that fails deliveries for good: the record of a last
// attempt (Record), the first attempt a fan-out writes (WriteAll), and
// MarkFailed. Transactions that fail none run as before, in one statement.
func (s *Store) WithDeadLetters(fn DeadLetterFunc) *Store {
	c := *s
	c.deadLettered = fn
	return &c
}

// hearing reports whether the store must run a write that may fail the
// deliveries in rs for good in a transaction, to tell deadLettered.
func (s *Store) hearing(rs []Record) bool {
	return s.deadLettered != nil && slices.ContainsFunc(rs, func(r Record) bool { return r.Status == StatusFailed })
}

// failInTx runs write, which returns the deliveries it updated, in a
// transaction, and tells deadLettered those it failed.
func (s *Store) failInTx(ctx context.Context, write func(ctx context.Context, tx bun.Tx) ([]DeadLetter, error)) error {
	return s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		ds, err := write(ctx, tx)
		if err != nil || len(ds) == 0 {
			return err
		}
		if err := s.deadLettered(ctx, tx, ds); err != nil {
			return fmt.Errorf("dead letters of %d deliveries: %w", len(ds), err)
		}
		return nil
	})
}
