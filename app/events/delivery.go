package events

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/tasks/ledger"
)

// Delivery is one event on its way to one endpoint, as the API shows it.
type Delivery struct {
	ID             string     `json:"id"`
	AppID          string     `json:"app_id"`
	EventID        string     `json:"event_id"`
	EventType      string     `json:"event_type"`
	EndpointID     string     `json:"endpoint_id"`
	Status         string     `json:"status" enum:"pending,succeeded,failed"`
	AttemptCount   int        `json:"attempt_count"`
	LastStatusCode *int       `json:"last_status_code"`
	LastError      *string    `json:"last_error"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	SucceededAt    *time.Time `json:"succeeded_at"`
	FailedAt       *time.Time `json:"failed_at"`
	// Attempts lists the HTTP attempts, oldest first; only a single
	// delivery's read carries them.
	Attempts []Attempt `json:"attempts,omitempty"`
}

// Attempt is one HTTP request of a delivery.
type Attempt struct {
	AttemptedAt time.Time `json:"attempted_at"`
	// DurationMS is the latency from sending the request to the end of the
	// recorded response, in milliseconds.
	DurationMS float64 `json:"duration_ms"`
	StatusCode *int    `json:"status_code"`
	// ResponseBody is the first 4 KiB of the response body.
	ResponseBody *string `json:"response_body"`
	Error        *string `json:"error"`
	// ErrorClass classifies the outcome.
	ErrorClass string `json:"error_class" enum:"success,http_3xx,http_4xx,http_5xx,timeout,connect_error,tls_error,ssrf_blocked,oauth_error,error"`
}

// DeliveryFilter narrows a list of deliveries.
type DeliveryFilter struct {
	Status     string
	EndpointID string
	EventID    string
	EventType  string
	// Since and Until bound the creation time.
	Since, Until time.Time
}

// check refuses a filter Postgres cannot compare, naming its field.
func (f DeliveryFilter) check() error {
	return cmp.Or(
		resource.FilterText("endpoint_id", f.EndpointID),
		resource.FilterText("event_id", f.EventID),
		resource.FilterText("event_type", f.EventType),
		resource.FilterTime("since", f.Since),
		resource.FilterTime("until", f.Until),
	)
}

// Deliveries lists the deliveries of app appID, newest first.
func (s *Store) Deliveries(ctx context.Context, appID string, f DeliveryFilter, q resource.PageQuery) (resource.Page[Delivery], error) {
	after, err := q.Key()
	if err != nil {
		return resource.Page[Delivery]{}, err
	}
	switch f.Status {
	case "", ledger.StatusPending, ledger.StatusSucceeded, ledger.StatusFailed:
	default:
		return resource.Page[Delivery]{}, resource.Invalid("status", "must be pending, succeeded or failed")
	}
	if err := f.check(); err != nil {
		return resource.Page[Delivery]{}, err
	}
	if err := s.appExists(ctx, appID); err != nil {
		return resource.Page[Delivery]{}, err
	}
	rows, err := s.ledger.List(ctx, ledger.Query{
		AppID: appID, Status: f.Status, EndpointID: f.EndpointID, EventID: f.EventID, EventType: f.EventType,
		Since: f.Since, Until: f.Until, After: after, Limit: int(q.Fetch()),
	})
	if err != nil {
		return resource.Page[Delivery]{}, err
	}
	ds := make([]Delivery, len(rows))
	for i, r := range rows {
		ds[i] = deliveryOf(r)
	}
	return resource.NewPage(q, ds, func(d Delivery) string { return d.ID }), nil
}

// Delivery returns delivery id of app appID with its attempts.
func (s *Store) Delivery(ctx context.Context, appID, id string) (Delivery, error) {
	row, err := s.ledger.Get(ctx, appID, id)
	if err != nil {
		return Delivery{}, notFound(err)
	}
	attempts, err := s.ledger.Attempts(ctx, id)
	if err != nil {
		return Delivery{}, err
	}
	d := deliveryOf(row)
	d.Attempts = make([]Attempt, len(attempts))
	for i, a := range attempts {
		d.Attempts[i] = Attempt{AttemptedAt: a.AttemptedAt, DurationMS: a.DurationMS, StatusCode: a.StatusCode, ResponseBody: a.ResponseBody, Error: a.Error, ErrorClass: a.ErrorClass}
	}
	return d, nil
}

func deliveryOf(r ledger.Delivery) Delivery {
	return Delivery{
		ID: r.ID, AppID: r.AppID, EventID: r.EventID, EventType: r.EventType, EndpointID: r.EndpointID,
		Status: r.Status, AttemptCount: r.Attempts, LastStatusCode: r.LastStatusCode, LastError: r.LastError,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, SucceededAt: r.SucceededAt, FailedAt: r.FailedAt,
	}
}

// DeliveryByID returns delivery id of any application, without attempts.
func (s *Store) DeliveryByID(ctx context.Context, id string) (Delivery, error) {
	row, err := s.ledger.Get(ctx, "", id)
	if err != nil {
		return Delivery{}, notFound(err)
	}
	return deliveryOf(row), nil
}

// notFound translates the ledger's ErrNotFound into the API's.
func notFound(err error) error {
	if errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("%w: %w", err, resource.ErrNotFound)
	}
	return err
}
