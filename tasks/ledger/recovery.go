package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/hookd/hookd/outbox"
)

// Recovery is a recovery of an endpoint, and its progress: every event of
// its app committed in [Since, Until) (and after the endpoint was created)
// that the endpoint subscribes to and has not received is sent to it again.
type Recovery struct {
	bun.BaseModel `bun:"table:endpoint_recoveries"`

	ID         string    `bun:"id,pk" json:"id"`
	AppID      string    `bun:"app_id,notnull" json:"app_id"`
	EndpointID string    `bun:"endpoint_id,notnull" json:"endpoint_id"`
	Since      time.Time `bun:"since,notnull" json:"since" doc:"Events committed at or after this time (and after the endpoint was created) are recovered."`
	Until      time.Time `bun:"until,notnull" json:"until" doc:"Events committed before this time are recovered: the until asked for, or the recovery's start if earlier or not given."`
	DryRun     bool      `bun:"dry_run,notnull" json:"dry_run" doc:"A dry run counts the events it would send, in recovered, and sends none."`
	Rate       *int      `bun:"rate" json:"rate" doc:"At most this many events sent a second; null for no pace."`
	Status     string    `bun:"status,notnull" json:"status" enum:"running,completed"`
	// CursorAt and CursorID are the last event examined.
	CursorAt   *time.Time `bun:"cursor_at" json:"-"`
	CursorID   string     `bun:"cursor_id,notnull" json:"-"`
	Recovered  int        `bun:"recovered,notnull" json:"recovered" doc:"Events sent again so far (a dry run: that it would send)."`
	CreatedAt  time.Time  `bun:"created_at,nullzero,notnull,default:clock_timestamp()" json:"created_at"`
	UpdatedAt  time.Time  `bun:"updated_at,nullzero,notnull,default:clock_timestamp()" json:"updated_at"`
	FinishedAt *time.Time `bun:"finished_at" json:"finished_at"`
}

// CreateRecovery records a recovery of endpoint endpointID of app appID:
// the events committed from since until until (at the latest now: later
// ones are the fan-out's), steered by r.
func (s *Store) CreateRecovery(ctx context.Context, appID, endpointID string, since, until time.Time, r Replay) (Recovery, error) {
	job := Recovery{ID: outbox.NewID("rcv"), AppID: appID, EndpointID: endpointID, Since: since, DryRun: r.DryRun, Rate: r.rate(), Status: JobRunning}
	err := s.replayOf(ctx, appID, func(ctx context.Context, tx bun.Tx) error {
		ins := tx.NewInsert().Model(&job)
		if until.IsZero() {
			ins.Value("until", "clock_timestamp()")
		} else {
			ins.Value("until", "least(?::timestamptz, clock_timestamp())", until)
		}
		_, err := ins.Returning("*").Exec(ctx)
		return err
	})
	if err != nil {
		return Recovery{}, fmt.Errorf("record recovery of %s: %w", endpointID, err)
	}
	return job, nil
}

// Recovery returns recovery id, or an error wrapping ErrNotFound.
func (s *Store) Recovery(ctx context.Context, id string) (Recovery, error) {
	var job Recovery
	err := s.db.NewSelect().Model(&job).Where("id = ?", id).Scan(ctx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Recovery{}, fmt.Errorf("recovery %s: %w", id, ErrNotFound)
	case err != nil:
		return Recovery{}, fmt.Errorf("get recovery %s: %w", id, err)
	}
	return job, nil
}

// Missed is an event a recovery examines, with the endpoint's delivery of
// it if there is one.
type Missed struct {
	EventID   string    `bun:"event_id"`
	Type      string    `bun:"type"`
	CreatedAt time.Time `bun:"created_at"`
	// Payload is the event's payload, read only when asked for.
	Payload json.RawMessage `bun:"payload"`
	// DeliveryID and Status are the endpoint's delivery of the event, ""
	// when it has none.
	DeliveryID string `bun:"delivery_id"`
	Status     string `bun:"status"`
}

// NextMissed returns up to limit events of job's app past its cursor, in
// (commit time, ID) order, that job recovers: committed in [Since, Until)
// and at or after notBefore (the endpoint's creation), fanned out already
// (the fan-out of one that is not sends it), of one of types (any when
// types is empty), with the endpoint's delivery of each, if any. It reads
// payloads only when withPayload is set.
func (s *Store) NextMissed(ctx context.Context, job *Recovery, notBefore time.Time, types []string, withPayload bool, limit int) ([]Missed, error) {
	var ms []Missed
	since := job.Since
	if notBefore.After(since) {
		since = notBefore
	}
	q := s.db.NewSelect().TableExpr("outbox_events AS o").
		ColumnExpr("o.id AS event_id, o.topic AS type, o.created_at").
		ColumnExpr("coalesce(d.id, '') AS delivery_id, coalesce(d.status, '') AS status").
		Join("LEFT JOIN deliveries AS d ON d.event_id = o.id AND d.endpoint_id = ?", job.EndpointID).
		Where("o.tenant = ?", job.AppID).
		Where("o.created_at >= ? AND o.created_at < ?", since, job.Until).
		Where("o.fanned_out_at IS NOT NULL").
		OrderExpr("o.created_at, o.id").
		Limit(int64(limit))
	if withPayload {
		q.ColumnExpr("o.payload")
	}
	if job.CursorAt != nil {
		q.Where("(o.created_at, o.id) > (?, ?)", *job.CursorAt, job.CursorID)
	}
	if len(types) > 0 {
		q.Where("o.topic = ANY(?)", pgdialect.Array(types))
	}
	if err := q.Scan(ctx, &ms); err != nil {
		return nil, fmt.Errorf("recovery %s: select events: %w", job.ID, err)
	}
	return ms, nil
}

// AdvanceRecovery saves job's progress after a batch: recovered more
// events sent again, its cursor at last (nil: unchanged), or completed
// when done. It reloads job.
func (s *Store) AdvanceRecovery(ctx context.Context, job *Recovery, recovered int, last *Missed, done bool) error {
	upd := s.db.NewUpdate().Model(job).WherePK().
		Set("recovered = recovered + ?", recovered).
		Set("updated_at = clock_timestamp()")
	if last != nil {
		upd.Set("cursor_at = ?", last.CreatedAt).Set("cursor_id = ?", last.EventID)
	}
	if done {
		upd.Set("status = ?", JobCompleted).Set("finished_at = clock_timestamp()")
	}
	if err := upd.Returning("*").Scan(ctx, job); err != nil {
		return fmt.Errorf("recovery %s: save progress: %w", job.ID, err)
	}
	return nil
}
