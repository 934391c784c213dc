// Package deadletter retries dead letters (failed deliveries), one by one
// or in bulk: it moves them back to pending in Postgres and enqueues fresh
// delivery tasks (same task ID, a full retry schedule), removing what asynq
// still holds of the old ones (their archived tasks). A bulk retry runs as
// a task that saves its progress after each batch.
//
// It reads and writes Postgres through the ledger and Redis through the
// tasks Queue only.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/ledger"
)

// batch is how many dead letters one step of a bulk retry takes.
const batch = 500

// Waits of a retry that finds a dead letter's old task still active: the
// first pause, doubling up to maxActiveWait in all (about two seconds).
const (
	firstActiveWait = 5 * time.Millisecond
	maxActiveWait   = time.Second
)

// DeadLetters retries failed deliveries.
type DeadLetters struct {
	ledger  *ledger.Store
	queue   *tasks.Queue
	metrics *Metrics
}

// New returns a DeadLetters.
func New(l *ledger.Store, queue *tasks.Queue, metrics *Metrics) *DeadLetters {
	return &DeadLetters{ledger: l, queue: queue, metrics: metrics}
}

// Retry retries the dead letters among ids and returns the IDs it retried:
// deliveries that are not failed, or whose event is no longer stored, are
// left alone.
//
// The worker marks a dead letter in Postgres a moment before asynq
// archives its task: a retry that finds the old task still active tries
// again shortly, for up to about two seconds, holding no lock meanwhile.
func (dl *DeadLetters) Retry(ctx context.Context, ids []string) ([]string, error) {
	for wait := firstActiveWait; ; wait *= 2 {
		retried, err := dl.retry(ctx, ids)
		if !errors.Is(err, errTaskActive) || wait > maxActiveWait {
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
	revived, err := dl.ledger.Revive(ctx, ids, func(ctx context.Context, ds []ledger.Stored) error {
		payloads := make([]tasks.DeliverPayload, len(ds))
		refs := make([]tasks.TaskRef, len(ds))
		for i, d := range ds {
			payloads[i], refs[i] = d.Payload(), tasks.TaskRef{DeliveryID: d.ID, EndpointID: d.EndpointID}
		}
		if err := dl.removeOldTasks(ctx, refs); err != nil {
			return err
		}
		// Enqueue before commit: should the commit fail, the task finds
		// the delivery failed, sends it anyway and records the outcome.
		_, err := dl.queue.EnqueueDeliveries(ctx, payloads)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("retry dead letters: %w", err)
	}
	retried := make([]string, len(revived))
	for i, d := range revived {
		retried[i] = d.ID
	}
	dl.metrics.replayed.Add(float64(len(retried)))
	return retried, nil
}

// removeOldTasks deletes the tasks Redis still holds for the dead letters
// refs (archived, or scheduled for a retry the worker will not make), so
// their new tasks can take the same IDs. It fails with errTaskActive,
// before deleting anything, while one of them still runs.
func (dl *DeadLetters) removeOldTasks(ctx context.Context, refs []tasks.TaskRef) error {
	olds, err := dl.queue.DeliveryTasks(ctx, refs)
	if err != nil {
		return err
	}
	for _, old := range olds {
		if old != nil && old.State == asynq.TaskStateActive {
			return fmt.Errorf("remove old task of %s: %w", old.ID, errTaskActive)
		}
	}
	return dl.queue.DeleteTasks(ctx, olds)
}

// StartBulk records a bulk retry of the dead letters f selects (those that
// failed until now), steered by r, and enqueues the task that performs it.
func (dl *DeadLetters) StartBulk(ctx context.Context, f ledger.DeadLetterFilter, r ledger.Replay) (ledger.RetryJob, error) {
	job, err := dl.CreateBulk(ctx, f, r)
	if err != nil {
		return ledger.RetryJob{}, err
	}
	if err := dl.Continue(ctx, job); err != nil {
		return ledger.RetryJob{}, err
	}
	return job, nil
}

// CreateBulk records a bulk retry as StartBulk does, without enqueuing its
// task: the caller runs it (Run), or enqueues it (Continue) should it stop
// short.
func (dl *DeadLetters) CreateBulk(ctx context.Context, f ledger.DeadLetterFilter, r ledger.Replay) (ledger.RetryJob, error) {
	return dl.ledger.CreateJob(ctx, f, r)
}

// Continue enqueues the task that performs bulk retry job, for a worker to
// finish what a Run stopped short of.
func (dl *DeadLetters) Continue(ctx context.Context, job ledger.RetryJob) error {
	return dl.queue.EnqueueRetryJob(ctx, job.ID)
}

// Job returns bulk retry id, or an error wrapping ledger.ErrNotFound.
func (dl *DeadLetters) Job(ctx context.Context, id string) (ledger.RetryJob, error) {
	return dl.ledger.Job(ctx, id)
}

// ProcessTask runs a TypeRetryDeadLetters task: it retries the job's dead
// letters a batch at a time, saving its position after each batch, so a
// rerun continues where the last one stopped.
func (dl *DeadLetters) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p tasks.RetryJobPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode bulk retry payload: %w: %w", err, asynq.SkipRetry)
	}
	job, err := dl.ledger.Job(ctx, p.JobID)
	if err != nil {
		return err
	}
	return dl.Run(ctx, &job)
}

// Run performs bulk retry job until no dead letter is left that it
// selects, saving its progress in Postgres after each batch. A dry run
// counts them and retries none; a paced one retries at most its rate a
// second.
func (dl *DeadLetters) Run(ctx context.Context, job *ledger.RetryJob) error {
	pacer := tasks.NewPacer(job.Rate, job.DryRun)
	for job.Status == ledger.JobRunning {
		size := pacer.Batch(batch)
		ids, err := dl.ledger.NextDeadLetters(ctx, job, size)
		if err != nil {
			return err
		}
		n := len(ids)
		if !job.DryRun {
			retried, err := dl.Retry(ctx, ids)
			if err != nil {
				return fmt.Errorf("bulk retry %s: %w", job.ID, err)
			}
			n = len(retried)
		}
		done, cursor := len(ids) < size, ""
		if !done {
			cursor = ids[len(ids)-1]
		}
		if err := dl.ledger.Advance(ctx, job, n, cursor, done); err != nil {
			return err
		}
		if !done {
			if err := pacer.Sent(ctx, n); err != nil {
				return err
			}
		}
	}
	return nil
}
