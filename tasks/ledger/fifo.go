package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/uptrace/bun/dialect/pgdialect"
)

// Head is the delivery a FIFO endpoint must receive next.
type Head struct {
	Stored
	// Attempts is how many attempts the delivery had.
	Attempts int `bun:"attempts"`
	// Waiting tells that an earlier event of the app is not fanned out
	// yet: it may owe the endpoint a delivery ahead of this one, so the
	// head must wait for it.
	Waiting bool `bun:"waiting"`
}

// FIFOHead returns the pending FIFO delivery of endpointID whose event
// came first in the outbox, or an error wrapping ErrNotFound when none is
// pending. It waits for the earlier events of the app of the types the
// endpoint subscribes to (types; empty: every type) that are not fanned
// out yet. Two indexed reads: the endpoint's pending FIFO deliveries by
// sequence, and the app's events not yet fanned out.
func (s *Store) FIFOHead(ctx context.Context, endpointID string, types []string) (Head, error) {
	if types == nil {
		types = []string{} // an empty array, not NULL: every type
	}
	var h Head
	err := s.db.NewRaw(`SELECT d.id, d.event_id, d.endpoint_id, d.app_id, d.updated_at, o.created_at, d.attempts,
			EXISTS (SELECT 1 FROM outbox_events AS e
				WHERE e.tenant = d.app_id AND e.seq < d.seq AND e.fanned_out_at IS NULL
					AND (cardinality(?::text[]) = 0 OR e.topic = ANY(?::text[]))) AS waiting
		FROM deliveries AS d JOIN outbox_events AS o ON o.id = d.event_id
		WHERE d.endpoint_id = ? AND d.status = ? AND d.seq IS NOT NULL
		ORDER BY d.seq LIMIT 1`, pgdialect.Array(types), pgdialect.Array(types), endpointID, StatusPending).Scan(ctx, &h)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Head{}, fmt.Errorf("fifo head of %s: %w", endpointID, ErrNotFound)
	case err != nil:
		return Head{}, fmt.Errorf("read fifo head of %s: %w", endpointID, err)
	}
	return h, nil
}

// FIFOQueue is a FIFO endpoint with pending deliveries.
type FIFOQueue struct {
	EndpointID string `bun:"endpoint_id"`
	AppID      string `bun:"app_id"`
}

// FIFOQueues returns up to limit FIFO endpoints with a pending delivery,
// in ID order past after: the reconciler checks that each has its pump.
// It skips from endpoint to endpoint through the index of pending FIFO
// deliveries, one probe each, however long their queues.
func (s *Store) FIFOQueues(ctx context.Context, after string, limit int) ([]FIFOQueue, error) {
	var qs []FIFOQueue
	err := s.db.NewRaw(`WITH RECURSIVE q AS (
			(SELECT endpoint_id, app_id FROM deliveries
				WHERE status = ? AND seq IS NOT NULL AND endpoint_id > ?
				ORDER BY endpoint_id, seq LIMIT 1)
			UNION ALL
			SELECT n.endpoint_id, n.app_id FROM q, LATERAL (
				SELECT endpoint_id, app_id FROM deliveries
				WHERE status = ? AND seq IS NOT NULL AND endpoint_id > q.endpoint_id
				ORDER BY endpoint_id, seq LIMIT 1) AS n
		) SELECT endpoint_id, app_id FROM q LIMIT ?`, StatusPending, after, StatusPending, limit).Scan(ctx, &qs)
	if err != nil {
		return nil, fmt.Errorf("find fifo queues: %w", err)
	}
	return qs, nil
}
