package ledger

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/hookd/hookd/outbox"
)

// Event is what the ledger records of an event with its deliveries.
type Event struct {
	ID    string
	AppID string
	Type  string
	// FannedOutAt is when the fan-out began: the creation time of the
	// deliveries it writes, first attempts or not.
	FannedOutAt time.Time
}

// NewDeliveryID returns a new delivery ID. IDs sort by creation time.
func NewDeliveryID() string { return outbox.NewID("dlv") }

// NewDelivery is a delivery for the fan-out to write: to EndpointID, with the ID
// it was given (NewDeliveryID), and its first attempt if one was made
// before the row was written (nil otherwise: the row is pending). A
// delivery to a FIFO endpoint takes its place in the endpoint's queue: its
// event's outbox sequence.
type NewDelivery struct {
	ID         string
	EndpointID string
	First      *Record
	FIFO       bool
}

// Written is a delivery of an event as the fan-out finds it: Fresh if this
// fan-out created it (with its first attempt, if any), otherwise left by an
// earlier run.
type Written struct {
	ID         string `bun:"id"`
	EndpointID string `bun:"endpoint_id"`
	Status     string `bun:"status"`
	Fresh      bool   `bun:"fresh"`
	// FIFO tells a delivery in its endpoint's FIFO queue.
	FIFO bool `bun:"fifo"`
}

// Writing is one event's deliveries for WriteAll to write, and what it
// found.
type Writing struct {
	Event      Event
	Deliveries []NewDelivery
	// Written is every delivery of the event after the write: those it
	// created, and those an earlier run created. WriteAll sets it.
	Written []Written
}

// WriteAll creates the deliveries of each event that do not exist yet (one
// per event and endpoint: a delivery written earlier wins, and the new one
// is dropped with its attempt), records their first attempts, marks the
// events fanned out, and sets each Writing's Written.
//
// It is one statement and one commit, however many events, deliveries and
// attempts (with what WithDeadLetters' function writes of the first
// attempts that failed for good, in the same transaction): the fan-outs
// running at a moment write together, and a delivery whose first attempt
// succeeded is written once, as succeeded, with no update after. It selects the earlier rows by event only, through
// the unique index: a status condition would invite the planner to the
// partial index on pending rows, whose dead entries (deliveries since
// done) grow until vacuum. From the mark on, should Redis lose the delivery
// tasks before they run, the reconciler finds their rows pending and
// enqueues them again; it enqueues the fan-out again only for an event
// never marked.
func (s *Store) WriteAll(ctx context.Context, ws []*Writing) error {
	var (
		ids, events, apps, types, endpoints, statuses []string
		created                                       []time.Time
		attempts                                      []int
		codes                                         []*int
		lastErrs, bodies, errs, classes               []*string
		at                                            []*time.Time
		ms                                            []*float64
		eventIDs                                      []string
		fifos                                         []bool
	)
	now := time.Now()
	for _, w := range ws {
		ev := w.Event
		eventIDs = append(eventIDs, ev.ID)
		for _, d := range w.Deliveries {
			ids, events, apps, types = append(ids, d.ID), append(events, ev.ID), append(apps, ev.AppID), append(types, ev.Type)
			endpoints, created = append(endpoints, d.EndpointID), append(created, cmp.Or(ev.FannedOutAt, now))
			fifos = append(fifos, d.FIFO)
			r := d.First
			if r == nil {
				statuses, attempts, codes, lastErrs = append(statuses, StatusPending), append(attempts, 0), append(codes, nil), append(lastErrs, nil)
				at, ms, bodies, errs, classes = append(at, nil), append(ms, nil), append(bodies, nil), append(errs, nil), append(classes, nil)
				continue
			}
			a := r.Attempt
			statuses, attempts, codes, lastErrs = append(statuses, r.Status), append(attempts, 1), append(codes, a.StatusCode), append(lastErrs, r.LastError)
			at, ms, bodies, errs, classes = append(at, &a.AttemptedAt), append(ms, &a.DurationMS), append(bodies, a.ResponseBody), append(errs, a.Error), append(classes, &a.ErrorClass)
		}
	}
	args := []any{
		pgdialect.Array(ids), pgdialect.Array(events), pgdialect.Array(apps), pgdialect.Array(types), pgdialect.Array(endpoints),
		pgdialect.Array(created), pgdialect.Array(statuses), pgdialect.Array(attempts),
		pgdialect.Array(codes), pgdialect.Array(lastErrs), pgdialect.Array(at), pgdialect.Array(ms),
		pgdialect.Array(bodies), pgdialect.Array(errs), pgdialect.Array(classes), pgdialect.Array(fifos),
		StatusSucceeded, StatusFailed, pgdialect.Array(eventIDs), pgdialect.Array(eventIDs),
	}
	var rows []writtenRow
	var err error
	if dead := s.firstDeadLetters(ws); len(dead) == 0 {
		err = s.db.NewRaw(writeAllSQL, args...).Scan(ctx, &rows)
	} else {
		// Some first attempts failed for good: whoever hears of dead
		// letters does in the same transaction, of those written here.
		err = s.failInTx(ctx, func(ctx context.Context, tx bun.Tx) ([]DeadLetter, error) {
			if err := tx.NewRaw(writeAllSQL, args...).Scan(ctx, &rows); err != nil {
				return nil, err
			}
			var ds []DeadLetter
			for _, r := range rows {
				if d, ok := dead[r.ID]; ok && r.Fresh {
					ds = append(ds, d)
				}
			}
			return ds, nil
		})
	}
	if err != nil {
		return fmt.Errorf("write deliveries of %d events: %w", len(ws), err)
	}
	byEvent := make(map[string][]Written, len(ws))
	for _, r := range rows {
		byEvent[r.EventID] = append(byEvent[r.EventID], r.Written)
	}
	for _, w := range ws {
		w.Written = byEvent[w.Event.ID]
	}
	return nil
}

// writtenRow is a delivery WriteAll found, with its event.
type writtenRow struct {
	Written
	EventID string `bun:"event_id"`
}

// firstDeadLetters returns, by delivery ID, the deliveries of ws whose
// first attempt failed them for good, when someone hears of dead letters.
func (s *Store) firstDeadLetters(ws []*Writing) map[string]DeadLetter {
	if s.deadLettered == nil {
		return nil
	}
	var dead map[string]DeadLetter
	for _, w := range ws {
		for _, d := range w.Deliveries {
			if d.First == nil || d.First.Status != StatusFailed {
				continue
			}
			if dead == nil {
				dead = map[string]DeadLetter{}
			}
			dead[d.ID] = DeadLetter{
				ID: d.ID, EventID: w.Event.ID, EndpointID: d.EndpointID, AppID: w.Event.AppID, EventType: w.Event.Type,
				Attempts: 1, LastStatusCode: d.First.Attempt.StatusCode, LastError: d.First.LastError,
			}
		}
	}
	return dead
}

// writeAllSQL writes the deliveries of events and their first attempts
// and marks the events fanned out (WriteAll).
const writeAllSQL = `WITH v AS (
			SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::timestamptz[], ?::text[], ?::int[],
				?::int[], ?::text[], ?::timestamptz[], ?::float8[], ?::text[], ?::text[], ?::text[], ?::bool[])
			AS v(id, event_id, app_id, event_type, endpoint_id, created_at, status, attempts,
				status_code, last_error, attempted_at, duration_ms, response_body, error, error_class, fifo)
		), inserted AS (
			INSERT INTO deliveries (id, event_id, endpoint_id, app_id, event_type, created_at, status, attempts, last_status_code, last_error, succeeded_at, failed_at, seq)
			SELECT id, event_id, endpoint_id, app_id, event_type, created_at, status, attempts, status_code, last_error,
				CASE WHEN status = ? THEN clock_timestamp() END, CASE WHEN status = ? THEN clock_timestamp() END,
				CASE WHEN fifo THEN (SELECT o.seq FROM outbox_events AS o WHERE o.id = v.event_id) END
			FROM v
			ON CONFLICT (event_id, endpoint_id) DO NOTHING
			RETURNING id, event_id, endpoint_id, status, seq IS NOT NULL AS fifo
		), attempted AS (
			INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code, response_body, error, error_class)
			SELECT v.id, v.attempted_at, v.duration_ms, v.status_code, v.response_body, v.error, v.error_class
			FROM v JOIN inserted USING (id) WHERE v.attempts > 0
		), marked AS (
			UPDATE outbox_events SET fanned_out_at = clock_timestamp() WHERE id = ANY(?::text[]) AND fanned_out_at IS NULL
		) SELECT id, event_id, endpoint_id, status, true AS fresh, fifo FROM inserted
		UNION ALL SELECT id, event_id, endpoint_id, status, false, seq IS NOT NULL FROM deliveries WHERE event_id = ANY(?::text[])`

// Fanned reports, for each of eventIDs, whether any delivery of it is
// written: a fan-out that finds none runs for the first time. It is one
// indexed read, however many events.
func (s *Store) Fanned(ctx context.Context, eventIDs []string) (map[string]bool, error) {
	var found []string
	err := s.db.NewSelect().Model((*Delivery)(nil)).Distinct().Column("event_id").
		Where("event_id IN (?)", bun.In(eventIDs)).Scan(ctx, &found)
	if err != nil {
		return nil, fmt.Errorf("look up deliveries of %d events: %w", len(eventIDs), err)
	}
	m := make(map[string]bool, len(found))
	for _, id := range found {
		m[id] = true
	}
	return m, nil
}

// MarkFannedOut marks an event that owes nothing to anyone (no endpoint
// subscribes to it) fanned out: the mark spares it the reconciler.
func (s *Store) MarkFannedOut(ctx context.Context, eventID string) error {
	_, err := s.db.NewUpdate().Table("outbox_events").Set("fanned_out_at = clock_timestamp()").
		Where("id = ? AND fanned_out_at IS NULL", eventID).Exec(ctx)
	if err != nil {
		return fmt.Errorf("mark %s fanned out: %w", eventID, err)
	}
	return nil
}
