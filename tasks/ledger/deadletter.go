package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks"
)

// DeadLetterFilter selects dead letters (failed deliveries). Empty fields
// select all; Since and Until bound when the delivery failed.
type DeadLetterFilter struct {
	AppID      string    `json:"app_id,omitempty"`
	EndpointID string    `json:"endpoint_id,omitempty"`
	EventType  string    `json:"event_type,omitempty"`
	Since      time.Time `json:"since,omitzero"`
	Until      time.Time `json:"until,omitzero"`
}

// apply narrows q, a query on deliveries, to the dead letters f selects.
func (f DeadLetterFilter) apply(q *bun.SelectQuery) *bun.SelectQuery {
	q.Where("?TableAlias.status = ?", StatusFailed)
	for col, v := range map[string]string{"app_id": f.AppID, "endpoint_id": f.EndpointID, "event_type": f.EventType} {
		if v != "" {
			q.Where("?TableAlias.? = ?", bun.Ident(col), v)
		}
	}
	if !f.Since.IsZero() {
		q.Where("?TableAlias.failed_at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		q.Where("?TableAlias.failed_at < ?", f.Until)
	}
	return q
}

// Stored is a delivery as Postgres holds it, with its event's commit
// time: what a delivery task is made of again when Redis no longer has it.
type Stored struct {
	ID         string    `bun:"id"`
	EventID    string    `bun:"event_id"`
	EndpointID string    `bun:"endpoint_id"`
	AppID      string    `bun:"app_id"`
	UpdatedAt  time.Time `bun:"updated_at"`
	// CreatedAt is when the event was written to the outbox.
	CreatedAt time.Time `bun:"created_at"`
}

// Payload is the delivery's task payload, made again when Redis lost its
// task or a dead letter is retried.
func (s Stored) Payload() tasks.DeliverPayload {
	return tasks.DeliverPayload{DeliveryID: s.ID, EventID: s.EventID, EndpointID: s.EndpointID, AppID: s.AppID, CreatedAt: s.CreatedAt}
}

// selectStored selects Stored rows: deliveries ("d") joined to their
// events ("o").
func selectStored(db bun.IDB) *bun.SelectQuery {
	return db.NewSelect().TableExpr("deliveries AS d").
		Join("JOIN outbox_events AS o ON o.id = d.event_id").
		ColumnExpr("d.id, d.event_id, d.endpoint_id, d.app_id, d.updated_at, o.created_at")
}

// Revive moves the failed deliveries among ids back to pending, in one
// transaction, and returns them (out of their FIFO endpoint's order, if
// any): deliveries that are not failed, or whose
// event is no longer stored, are left alone. fn runs inside the
// transaction with the revived deliveries locked, before the commit; its
// error rolls everything back.
func (s *Store) Revive(ctx context.Context, ids []string, fn func(ctx context.Context, ds []Stored) error) ([]Stored, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var rows []Stored
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		err := selectStored(tx).
			Where("d.id IN (?)", bun.In(ids)).
			Where("d.status = ?", StatusFailed).
			OrderExpr("d.id").
			For("UPDATE OF d").
			Scan(ctx, &rows)
		if err != nil {
			return fmt.Errorf("lock dead letters: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		revived := make([]string, len(rows))
		for i, r := range rows {
			revived[i] = r.ID
		}
		_, err = tx.NewUpdate().Model((*Delivery)(nil)).
			Set("status = ?", StatusPending).
			Set("failed_at = NULL").
			// A FIFO dead letter retried goes on its own, as a task: it
			// neither waits for the endpoint's queue nor holds it.
			Set("seq = NULL").
			Set("updated_at = clock_timestamp()").
			Where("id IN (?)", bun.In(revived)).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("move dead letters to pending: %w", err)
		}
		return fn(ctx, rows)
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// RetryJob is a bulk retry of dead letters and its progress.
type RetryJob struct {
	bun.BaseModel `bun:"table:dead_letter_retries"`

	ID     string           `bun:"id,pk" json:"id"`
	Filter DeadLetterFilter `bun:"filter,type:jsonb,notnull" json:"filter"`
	// DryRun counts the dead letters the filter selects and retries none.
	DryRun bool `bun:"dry_run,notnull" json:"dry_run" doc:"A dry run counts the dead letters it would retry, in retried, and retries none."`
	// Rate is how many dead letters a second the job retries at most; nil
	// for no pace.
	Rate   *int   `bun:"rate" json:"rate" doc:"At most this many dead letters retried a second; null for no pace."`
	Status string `bun:"status,notnull" json:"status" enum:"running,completed"`
	// Cutoff: only deliveries that failed before it are retried.
	Cutoff     time.Time  `bun:"cutoff,notnull" json:"cutoff"`
	Cursor     string     `bun:"cursor,notnull" json:"-"`
	Retried    int        `bun:"retried,notnull" json:"retried" doc:"Dead letters retried so far (a dry run: that it would retry)."`
	CreatedAt  time.Time  `bun:"created_at,nullzero,notnull,default:clock_timestamp()" json:"created_at"`
	UpdatedAt  time.Time  `bun:"updated_at,nullzero,notnull,default:clock_timestamp()" json:"updated_at"`
	FinishedAt *time.Time `bun:"finished_at" json:"finished_at"`
}

// Retry job states.
const (
	JobRunning   = "running"
	JobCompleted = "completed"
)

// Replay steers a bulk retry or a recovery.
type Replay struct {
	// DryRun counts what the job would send, and sends nothing.
	DryRun bool
	// Rate is how many deliveries a second the job sends at most (0: no
	// pace).
	Rate int
}

// rate is r's rate as stored: nil for none.
func (r Replay) rate() *int {
	if r.Rate <= 0 {
		return nil
	}
	return &r.Rate
}

// CreateJob records a bulk retry of the dead letters f selects that failed
// until now, steered by r.
func (s *Store) CreateJob(ctx context.Context, f DeadLetterFilter, r Replay) (RetryJob, error) {
	job := RetryJob{ID: outbox.NewID("dlr"), Filter: f, DryRun: r.DryRun, Rate: r.rate(), Status: JobRunning}
	err := s.replayOf(ctx, f.AppID, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.NewInsert().Model(&job).Value("cutoff", "clock_timestamp()").Returning("*").Exec(ctx)
		return err
	})
	if err != nil {
		return RetryJob{}, fmt.Errorf("record bulk retry: %w", err)
	}
	return job, nil
}

// MaxRunningReplays bounds the bulk retries and recoveries of one app
// running at once: each holds a worker of the fan-out queue while it runs
// (a paced one for as long as its pace makes it).
const MaxRunningReplays = 4

// ErrBusy is returned for a bulk retry or recovery of an app that has
// MaxRunningReplays of them running.
var ErrBusy = fmt.Errorf("%d bulk retries and recoveries of the app are running: wait for one to complete", MaxRunningReplays)

// replayOf runs create, which records a bulk retry or recovery of app
// appID, in a transaction, once it has checked that the app has fewer than
// MaxRunningReplays running (or returned ErrBusy). Creations of one app
// queue on a lock, so that racing ones cannot pass the bound together. A
// job of no app (an admin's bulk retry of every app) is not bounded.
func (s *Store) replayOf(ctx context.Context, appID string, create func(ctx context.Context, tx bun.Tx) error) error {
	return s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if appID != "" {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('hookd.replays.' || ?))`, appID); err != nil {
				return fmt.Errorf("lock the replays of %s: %w", appID, err)
			}
			var running int
			err := tx.NewRaw(`SELECT (SELECT count(*) FROM endpoint_recoveries WHERE app_id = ? AND status = ?)
				+ (SELECT count(*) FROM dead_letter_retries WHERE filter->>'app_id' = ? AND status = ?)`,
				appID, JobRunning, appID, JobRunning).Scan(ctx, &running)
			if err != nil {
				return fmt.Errorf("count the replays of %s: %w", appID, err)
			}
			if running >= MaxRunningReplays {
				return ErrBusy
			}
		}
		return create(ctx, tx)
	})
}

// Job returns bulk retry id, or an error wrapping ErrNotFound.
func (s *Store) Job(ctx context.Context, id string) (RetryJob, error) {
	var job RetryJob
	err := s.db.NewSelect().Model(&job).Where("id = ?", id).Scan(ctx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return RetryJob{}, fmt.Errorf("bulk retry %s: %w", id, ErrNotFound)
	case err != nil:
		return RetryJob{}, fmt.Errorf("get bulk retry %s: %w", id, err)
	}
	return job, nil
}

// NextDeadLetters returns the IDs of up to limit dead letters job selects
// past its cursor, in ID order.
func (s *Store) NextDeadLetters(ctx context.Context, job *RetryJob, limit int) ([]string, error) {
	var ids []string
	q := s.db.NewSelect().Model((*Delivery)(nil)).Column("id").
		Where("?TableAlias.failed_at <= ?", job.Cutoff).
		Where("?TableAlias.id > ?", job.Cursor).
		OrderExpr("id").Limit(int64(limit))
	if err := job.Filter.apply(q).Scan(ctx, &ids); err != nil {
		return nil, fmt.Errorf("bulk retry %s: select dead letters: %w", job.ID, err)
	}
	return ids, nil
}

// Advance saves job's progress after a batch: retried more dead letters
// retried, its cursor at cursor, or completed when done. It reloads job.
func (s *Store) Advance(ctx context.Context, job *RetryJob, retried int, cursor string, done bool) error {
	upd := s.db.NewUpdate().Model(job).WherePK().
		Set("retried = retried + ?", retried).
		Set("updated_at = clock_timestamp()")
	if done {
		upd.Set("status = ?", JobCompleted).Set("finished_at = clock_timestamp()")
	} else {
		upd.Set("cursor = ?", cursor)
	}
	if err := upd.Returning("*").Scan(ctx, job); err != nil {
		return fmt.Errorf("bulk retry %s: save progress: %w", job.ID, err)
	}
	return nil
}
