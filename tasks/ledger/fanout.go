package ledger

import (
	"context"
	"fmt"

	"github.com/hookd/hookd/outbox"
)

// Event is what the ledger records of an event with its deliveries.
type Event struct {
	ID    string
	AppID string
	Type  string
}

// Written is a delivery of an event as the fan-out finds it: Fresh if this
// fan-out created it, otherwise left by an earlier run (with another ID).
type Written struct {
	ID         string `bun:"id"`
	EndpointID string `bun:"endpoint_id"`
	Status     string `bun:"status"`
	Fresh      bool   `bun:"fresh"`
}

// Write creates the deliveries of ev to endpointIDs that do not exist yet,
// marks the event fanned out, and returns every delivery of the event:
// those it created, and those an earlier run created.
//
// It is one statement. It selects by event only, through the unique index:
// a status condition would invite the planner to the partial index on
// pending rows, whose dead entries (deliveries since done) grow until
// vacuum. From the mark on, should Redis lose the delivery tasks before
// they run, the reconciler finds their rows pending and enqueues them
// again; it enqueues the fan-out again only for an event never marked.
func (s *Store) Write(ctx context.Context, ev Event, endpointIDs []string) ([]Written, error) {
	rows := make([]Delivery, len(endpointIDs))
	for i, ep := range endpointIDs {
		rows[i] = Delivery{
			ID:         outbox.NewID("dlv"),
			EventID:    ev.ID,
			EndpointID: ep,
			AppID:      ev.AppID,
			EventType:  ev.Type,
		}
	}
	var written []Written
	err := s.db.NewRaw(`WITH inserted AS (?), marked AS (
			UPDATE outbox_events SET fanned_out_at = clock_timestamp() WHERE id = ? AND fanned_out_at IS NULL
		) SELECT id, endpoint_id, status, true AS fresh FROM inserted
		UNION ALL SELECT id, endpoint_id, status, false FROM deliveries WHERE event_id = ?`,
		s.db.NewInsert().Model(&rows).On("CONFLICT (event_id, endpoint_id) DO NOTHING").Returning("id, endpoint_id, status"),
		ev.ID, ev.ID,
	).Scan(ctx, &written)
	if err != nil {
		return nil, fmt.Errorf("write deliveries of %s: %w", ev.ID, err)
	}
	return written, nil
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
