package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Query selects deliveries of one app for a list, newest first.
type Query struct {
	AppID string
	// Status, EndpointID, EventID and EventType select only the
	// deliveries that match them, when set.
	Status, EndpointID, EventID, EventType string
	// Since and Until bound the creation time, when set.
	Since, Until time.Time
	// After is the ID the list starts after ("" for the newest).
	After string
	// Limit is the most deliveries returned.
	Limit int
}

// List returns the deliveries q selects, newest first.
func (s *Store) List(ctx context.Context, q Query) ([]Delivery, error) {
	var rows []Delivery
	sel := s.db.NewSelect().Model(&rows).Where("app_id = ?", q.AppID).OrderExpr("id DESC").Limit(int64(q.Limit))
	for col, v := range map[string]string{"status": q.Status, "endpoint_id": q.EndpointID, "event_id": q.EventID, "event_type": q.EventType} {
		if v != "" {
			sel.Where("? = ?", bun.Ident(col), v)
		}
	}
	if q.After != "" {
		sel.Where("id < ?", q.After)
	}
	if !q.Since.IsZero() {
		sel.Where("created_at >= ?", q.Since)
	}
	if !q.Until.IsZero() {
		sel.Where("created_at < ?", q.Until)
	}
	if err := sel.Scan(ctx); err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return rows, nil
}

// Get returns delivery id, of app appID unless appID is empty, or an error
// wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, appID, id string) (Delivery, error) {
	var row Delivery
	sel := s.db.NewSelect().Model(&row).Where("id = ?", id)
	if appID != "" {
		sel.Where("app_id = ?", appID)
	}
	err := sel.Scan(ctx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Delivery{}, fmt.Errorf("delivery %s: %w", id, ErrNotFound)
	case err != nil:
		return Delivery{}, fmt.Errorf("get delivery %s: %w", id, err)
	}
	return row, nil
}

// Attempts returns the attempts of delivery id, oldest first.
func (s *Store) Attempts(ctx context.Context, id string) ([]Attempt, error) {
	var attempts []Attempt
	if err := s.db.NewSelect().Model(&attempts).Where("delivery_id = ?", id).OrderExpr("attempted_at, id").Scan(ctx); err != nil {
		return nil, fmt.Errorf("get attempts of delivery %s: %w", id, err)
	}
	return attempts, nil
}

// Counts returns how many deliveries of event eventID are in each status.
func (s *Store) Counts(ctx context.Context, eventID string) (map[string]int, error) {
	var counts []struct {
		Status string `bun:"status"`
		N      int    `bun:"n"`
	}
	err := s.db.NewSelect().Model((*Delivery)(nil)).ColumnExpr("status, count(*) AS n").
		Where("event_id = ?", eventID).Group("status").Scan(ctx, &counts)
	if err != nil {
		return nil, fmt.Errorf("count deliveries of event %s: %w", eventID, err)
	}
	m := make(map[string]int, len(counts))
	for _, c := range counts {
		m[c.Status] = c.N
	}
	return m, nil
}

// DeadLetters returns up to limit of the dead letters f selects, newest
// delivery first, after the delivery ID after ("" for the newest).
func (s *Store) DeadLetters(ctx context.Context, f DeadLetterFilter, after string, limit int) ([]Delivery, error) {
	var rows []Delivery
	sel := s.db.NewSelect().Model(&rows).OrderExpr("id DESC").Limit(int64(limit))
	if after != "" {
		sel.Where("id < ?", after)
	}
	if err := f.apply(sel).Scan(ctx); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return rows, nil
}

// DeleteOfApp deletes the deliveries of app appID, inside db (the
// transaction deleting the app). Tasks still queued for them find their
// rows gone and are dropped.
func DeleteOfApp(ctx context.Context, db bun.IDB, appID string) error {
	if _, err := db.NewDelete().Model((*Delivery)(nil)).Where("app_id = ?", appID).Exec(ctx); err != nil {
		return fmt.Errorf("delete deliveries of app %s: %w", appID, err)
	}
	return nil
}

// DeleteOfEndpoint deletes the deliveries of endpoint endpointID, inside db
// (the transaction deleting the endpoint).
func DeleteOfEndpoint(ctx context.Context, db bun.IDB, endpointID string) error {
	if _, err := db.NewDelete().Model((*Delivery)(nil)).Where("endpoint_id = ?", endpointID).Exec(ctx); err != nil {
		return fmt.Errorf("delete deliveries of endpoint %s: %w", endpointID, err)
	}
	return nil
}

// Count returns how many deliveries the apps have in status (any status
// when it is empty).
func (s *Store) Count(ctx context.Context, appIDs []string, status string) (int, error) {
	sel := s.db.NewSelect().Model((*Delivery)(nil)).Where("app_id IN (?)", bun.In(appIDs))
	if status != "" {
		sel.Where("status = ?", status)
	}
	n, err := sel.Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("count deliveries: %w", err)
	}
	return int(n), nil
}
