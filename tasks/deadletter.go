package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
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

// Apply narrows q, a query on deliveries, to the dead letters f selects.
func (f DeadLetterFilter) Apply(q *bun.SelectQuery) *bun.SelectQuery {
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

// RetryJob is a bulk retry of dead letters and its progress.
type RetryJob struct {
	bun.BaseModel `bun:"table:dead_letter_retries"`

	ID     string           `bun:"id,pk" json:"id"`
	Filter DeadLetterFilter `bun:"filter,type:jsonb,notnull" json:"filter"`
	Status string           `bun:"status,notnull" json:"status" enum:"running,completed"`
	// Cutoff: only deliveries that failed before it are retried.
	Cutoff     time.Time  `bun:"cutoff,notnull" json:"cutoff"`
	Cursor     string     `bun:"cursor,notnull" json:"-"`
	Retried    int        `bun:"retried,notnull" json:"retried"`
	CreatedAt  time.Time  `bun:"created_at,nullzero,notnull,default:clock_timestamp()" json:"created_at"`
	UpdatedAt  time.Time  `bun:"updated_at,nullzero,notnull,default:clock_timestamp()" json:"updated_at"`
	FinishedAt *time.Time `bun:"finished_at" json:"finished_at"`
}

// Retry job states.
const (
	JobRunning   = "running"
	JobCompleted = "completed"
)

// retryBatch is how many dead letters one step of a bulk retry takes.
const retryBatch = 500

// DeadLetters retries failed deliveries: it moves them back to pending and
// enqueues fresh delivery tasks (same task ID, a full retry schedule),
// removing what asynq still holds of the old one (its archived task).
type DeadLetters struct {
	db        *bun.DB
	metrics   *Metrics
	queue     *Queue
	inspector *asynq.Inspector
	requeue   requeuer // finds a dead letter's old task
	log       *slog.Logger
}

// NewDeadLetters returns a DeadLetters.
func NewDeadLetters(db *bun.DB, queue *Queue, inspector *asynq.Inspector, metrics *Metrics, log *slog.Logger) *DeadLetters {
	return &DeadLetters{db: db, queue: queue, inspector: inspector, requeue: requeuer{db, queue, inspector}, metrics: metrics, log: log}
}

// Retry retries the dead letters among ids and returns the IDs it retried:
// deliveries that are not failed, or whose event is no longer stored, are
// left alone.
//
// The worker marks a dead letter in Postgres a moment before asynq
// archives its task: a retry that finds the old task still active tries
// again shortly, for up to about two seconds, holding no lock meanwhile.
func (dl *DeadLetters) Retry(ctx context.Context, ids []string) ([]string, error) {
	for wait := 5 * time.Millisecond; ; wait *= 2 {
		retried, err := dl.retry(ctx, ids)
		if !errors.Is(err, errTaskActive) || wait > time.Second {
			return retried, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// errTaskActive reports a dead letter whose old task asynq still runs.
var errTaskActive = errors.New("its old task is still running")

func (dl *DeadLetters) retry(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var retried []string
	err := dl.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var rows []storedDelivery
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
		payloads := make([]DeliverPayload, len(rows))
		retried = make([]string, len(rows))
		for i, r := range rows {
			payloads[i], retried[i] = r.payload(), r.ID
		}
		_, err = tx.NewUpdate().Model((*Delivery)(nil)).
			Set("status = ?", StatusPending).
			Set("failed_at = NULL").
			Set("updated_at = clock_timestamp()").
			Where("id IN (?)", bun.In(retried)).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("move dead letters to pending: %w", err)
		}
		if err := dl.removeOldTasks(ctx, retried); err != nil {
			return err
		}
		// Enqueue before commit: should the commit fail, the task finds
		// the delivery failed, sends it anyway and records the outcome.
		_, err = dl.queue.enqueueDeliveries(ctx, payloads)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("retry dead letters: %w", err)
	}
	dl.metrics.replayed.Add(float64(len(retried)))
	return retried, nil
}

// removeOldTasks deletes the tasks Redis still holds for the dead letters
// ids (archived, or scheduled for a retry the worker will not make), so
// their new tasks can take the same IDs. It fails with errTaskActive,
// before deleting anything, while one of them still runs.
func (dl *DeadLetters) removeOldTasks(ctx context.Context, ids []string) error {
	olds, err := dl.requeue.tasks(ctx, ids)
	if err != nil {
		return err
	}
	for _, old := range olds {
		if old != nil && old.State == asynq.TaskStateActive {
			return fmt.Errorf("remove old task of %s: %w", old.ID, errTaskActive)
		}
	}
	return inParallel(ctx, len(olds), func(_ context.Context, i int) error {
		old := olds[i]
		if old == nil {
			return nil
		}
		if err := dl.inspector.DeleteTask(old.Queue, old.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return fmt.Errorf("remove old task of %s: %w", old.ID, err)
		}
		return nil
	})
}

// StartBulk records a bulk retry of the dead letters f selects (those that
// failed until now) and enqueues the task that performs it.
func (dl *DeadLetters) StartBulk(ctx context.Context, f DeadLetterFilter) (RetryJob, error) {
	job := RetryJob{ID: outbox.NewID("dlr"), Filter: f, Status: JobRunning}
	if _, err := dl.db.NewInsert().Model(&job).Value("cutoff", "clock_timestamp()").Returning("*").Exec(ctx); err != nil {
		return RetryJob{}, fmt.Errorf("record bulk retry: %w", err)
	}
	payload, err := json.Marshal(retryJobPayload{JobID: job.ID})
	if err != nil {
		return RetryJob{}, fmt.Errorf("encode bulk retry: %w", err)
	}
	task := asynq.NewTask(TypeRetryDeadLetters, payload, asynq.TaskID(job.ID), asynq.Queue(dl.queue.cfg.Events),
		asynq.MaxRetry(fanoutMaxRetry), asynq.Timeout(time.Hour), asynq.Retention(dl.queue.cfg.Retention))
	if _, err := dl.queue.enqueueAll(ctx, []idTask{{job.ID, task}}); err != nil {
		return RetryJob{}, fmt.Errorf("bulk retry: %w", err)
	}
	return job, nil
}

// Job returns bulk retry id.
func (dl *DeadLetters) Job(ctx context.Context, id string) (RetryJob, error) {
	var job RetryJob
	if err := dl.db.NewSelect().Model(&job).Where("id = ?", id).Scan(ctx); err != nil {
		return RetryJob{}, fmt.Errorf("get bulk retry %s: %w", id, err)
	}
	return job, nil
}

type retryJobPayload struct {
	JobID string `json:"job_id"`
}

// ProcessTask runs a TypeRetryDeadLetters task: it retries the job's dead
// letters a batch at a time, saving its position after each batch, so a
// rerun continues where the last one stopped.
func (dl *DeadLetters) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p retryJobPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode bulk retry payload: %w: %w", err, asynq.SkipRetry)
	}
	job, err := dl.Job(ctx, p.JobID)
	if err != nil {
		return err
	}
	return dl.Run(ctx, &job)
}

// Run performs bulk retry job until no dead letter is left that it
// selects, saving its progress in Postgres after each batch.
func (dl *DeadLetters) Run(ctx context.Context, job *RetryJob) error {
	for job.Status == JobRunning {
		var ids []string
		q := dl.db.NewSelect().Model((*Delivery)(nil)).Column("id").
			Where("?TableAlias.failed_at <= ?", job.Cutoff).
			Where("?TableAlias.id > ?", job.Cursor).
			OrderExpr("id").Limit(retryBatch)
		if err := job.Filter.Apply(q).Scan(ctx, &ids); err != nil {
			return fmt.Errorf("bulk retry %s: select dead letters: %w", job.ID, err)
		}
		retried, err := dl.Retry(ctx, ids)
		if err != nil {
			return fmt.Errorf("bulk retry %s: %w", job.ID, err)
		}
		upd := dl.db.NewUpdate().Model(job).WherePK().
			Set("retried = retried + ?", len(retried)).
			Set("updated_at = clock_timestamp()")
		if len(ids) < retryBatch {
			upd.Set("status = ?", JobCompleted).Set("finished_at = clock_timestamp()")
		} else {
			upd.Set("cursor = ?", ids[len(ids)-1])
		}
		if err := upd.Returning("*").Scan(ctx, job); err != nil {
			return fmt.Errorf("bulk retry %s: save progress: %w", job.ID, err)
		}
	}
	return nil
}

// storedDelivery is a delivery as Postgres holds it, with its event's
// commit time: what a delivery task is made of again when Redis no longer
// has it.
type storedDelivery struct {
	ID         string    `bun:"id"`
	EventID    string    `bun:"event_id"`
	EndpointID string    `bun:"endpoint_id"`
	AppID      string    `bun:"app_id"`
	UpdatedAt  time.Time `bun:"updated_at"`
	CreatedAt  time.Time `bun:"created_at"`
}

// selectStored selects storedDelivery rows: deliveries ("d") joined to
// their events ("o").
func selectStored(db bun.IDB) *bun.SelectQuery {
	return db.NewSelect().TableExpr("deliveries AS d").
		Join("JOIN outbox_events AS o ON o.id = d.event_id").
		ColumnExpr("d.id, d.event_id, d.endpoint_id, d.app_id, d.updated_at, o.created_at")
}

// payload is the delivery's task payload.
func (s storedDelivery) payload() DeliverPayload {
	return DeliverPayload{DeliveryID: s.ID, EventID: s.EventID, EndpointID: s.EndpointID, AppID: s.AppID, CreatedAt: s.CreatedAt}
}
