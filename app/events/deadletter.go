package events

import (
	"cmp"
	"context"
	"time"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/tasks/ledger"
)

// DeadLetter is a delivery that failed for good: retries exhausted, or a
// permanent failure (410 Gone, endpoint disabled or deleted).
type DeadLetter struct {
	DeliveryID   string    `json:"delivery_id"`
	AppID        string    `json:"app_id"`
	EndpointID   string    `json:"endpoint_id"`
	EventID      string    `json:"event_id"`
	EventType    string    `json:"event_type"`
	LastError    *string   `json:"last_error"`
	FailedAt     time.Time `json:"failed_at"`
	AttemptCount int       `json:"attempt_count"`
}

// CheckDeadLetterFilter refuses a filter of dead letters (a list, or a
// bulk retry) that Postgres cannot compare, naming its field.
func CheckDeadLetterFilter(f ledger.DeadLetterFilter) error {
	return cmp.Or(
		resource.FilterText("app_id", f.AppID),
		resource.FilterText("endpoint_id", f.EndpointID),
		resource.FilterText("event_type", f.EventType),
		resource.FilterTime("since", f.Since),
		resource.FilterTime("until", f.Until),
	)
}

// DeadLetters lists the dead letters f selects, newest delivery first.
func (s *Store) DeadLetters(ctx context.Context, f ledger.DeadLetterFilter, q resource.PageQuery) (resource.Page[DeadLetter], error) {
	after, err := q.Key()
	if err != nil {
		return resource.Page[DeadLetter]{}, err
	}
	if err := CheckDeadLetterFilter(f); err != nil {
		return resource.Page[DeadLetter]{}, err
	}
	rows, err := s.ledger.DeadLetters(ctx, f, after, int(q.Fetch()))
	if err != nil {
		return resource.Page[DeadLetter]{}, err
	}
	dls := make([]DeadLetter, len(rows))
	for i, r := range rows {
		dls[i] = DeadLetter{
			DeliveryID: r.ID, AppID: r.AppID, EndpointID: r.EndpointID, EventID: r.EventID, EventType: r.EventType,
			LastError: r.LastError, AttemptCount: r.Attempts,
		}
		if r.FailedAt != nil {
			dls[i].FailedAt = *r.FailedAt
		}
	}
	return resource.NewPage(q, dls, func(d DeadLetter) string { return d.DeliveryID }), nil
}
