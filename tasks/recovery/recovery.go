// Package recovery sends an endpoint the events it missed: every event of
// its app committed in a time range (and after the endpoint was created)
// that it subscribes to and has not received. Events it has a failed
// delivery of are retried as dead letters are; events it has no delivery
// of (published while it was disabled, or before its subscription or
// filter took them) get one, written and enqueued as the fan-out does;
// events whose delivery succeeded or is still pending are left alone. A
// recovery runs as a task that saves its progress after each batch, may be
// a dry run (it counts) and may be paced.
//
// It reads the endpoint through the function type it declares
// (TargetFunc), Postgres through the ledger and Redis through the tasks
// Queue only; it never imports the app.
package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/deadletter"
	"github.com/hookd/hookd/tasks/ledger"
)

// How many events one step of a recovery examines: batch, or
// filteredBatch when each carries its payload (up to the largest event),
// read for the endpoint's filter.
const (
	batch         = 500
	filteredBatch = 100
)

// Target is the endpoint a recovery sends to, as the recovery sees it.
type Target struct {
	AppID     string
	CreatedAt time.Time
	Disabled  bool
	// FIFO tells an endpoint whose deliveries its pump sends one at a
	// time, in the order of their events (tasks.TypeFIFO).
	FIFO bool
	// EventTypes are the types the endpoint subscribes to; empty for all.
	EventTypes []string
	// Accepts reports whether the endpoint's filter accepts an event of
	// type eventType with payload; nil when the endpoint has no filter.
	Accepts func(ctx context.Context, eventType string, payload json.RawMessage) bool
}

// ErrGone is returned by a TargetFunc for an endpoint that no longer
// exists.
var ErrGone = errors.New("endpoint gone")

// TargetFunc returns endpoint endpointID as a recovery sees it, or an
// error wrapping ErrGone.
type TargetFunc func(ctx context.Context, endpointID string) (Target, error)

// Recoveries starts and performs recoveries.
type Recoveries struct {
	ledger      *ledger.Store
	queue       *tasks.Queue
	deadLetters *deadletter.DeadLetters
	target      TargetFunc
}

// New returns a Recoveries.
func New(l *ledger.Store, queue *tasks.Queue, dl *deadletter.DeadLetters, target TargetFunc) *Recoveries {
	return &Recoveries{ledger: l, queue: queue, deadLetters: dl, target: target}
}

// Create records a recovery of endpoint endpointID of app appID (events
// committed from since until until, or now when until is zero), steered by
// r, without enqueuing its task: the caller runs it (Run) or enqueues it
// (Continue).
func (rs *Recoveries) Create(ctx context.Context, appID, endpointID string, since, until time.Time, r ledger.Replay) (ledger.Recovery, error) {
	return rs.ledger.CreateRecovery(ctx, appID, endpointID, since, until, r)
}

// Start records a recovery as Create does and enqueues the task that
// performs it.
func (rs *Recoveries) Start(ctx context.Context, appID, endpointID string, since, until time.Time, r ledger.Replay) (ledger.Recovery, error) {
	job, err := rs.Create(ctx, appID, endpointID, since, until, r)
	if err != nil {
		return ledger.Recovery{}, err
	}
	if err := rs.Continue(ctx, job); err != nil {
		return ledger.Recovery{}, err
	}
	return job, nil
}

// Continue enqueues the task that performs recovery job.
func (rs *Recoveries) Continue(ctx context.Context, job ledger.Recovery) error {
	return rs.queue.EnqueueRecovery(ctx, job.ID)
}

// Job returns recovery id, or an error wrapping ledger.ErrNotFound.
func (rs *Recoveries) Job(ctx context.Context, id string) (ledger.Recovery, error) {
	return rs.ledger.Recovery(ctx, id)
}

// ProcessTask runs a TypeRecoverEndpoint task: it performs the recovery a
// batch at a time, saving its position after each batch, so a rerun
// continues where the last one stopped.
func (rs *Recoveries) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p tasks.RecoveryPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode recovery payload: %w: %w", err, asynq.SkipRetry)
	}
	job, err := rs.ledger.Recovery(ctx, p.RecoveryID)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil // deleted by retention, long finished
	}
	if err != nil {
		return err
	}
	return rs.Run(ctx, &job)
}

// Run performs recovery job until it has examined every event of its
// range, saving its progress in Postgres after each batch. It ends early,
// completed, when the endpoint is deleted, or disabled (but for a dry
// run): what it would send would fail.
func (rs *Recoveries) Run(ctx context.Context, job *ledger.Recovery) error {
	pacer := tasks.NewPacer(job.Rate, job.DryRun)
	for job.Status == ledger.JobRunning {
		target, err := rs.target(ctx, job.EndpointID)
		switch {
		case errors.Is(err, ErrGone):
			return rs.ledger.AdvanceRecovery(ctx, job, 0, nil, true)
		case err != nil:
			return fmt.Errorf("recovery %s: %w", job.ID, err)
		case target.Disabled && !job.DryRun:
			return rs.ledger.AdvanceRecovery(ctx, job, 0, nil, true)
		}
		size := pacer.Batch(batch)
		if target.Accepts != nil {
			size = pacer.Batch(filteredBatch)
		}
		missed, err := rs.ledger.NextMissed(ctx, job, target.CreatedAt, target.EventTypes, target.Accepts != nil, size)
		if err != nil {
			return err
		}
		n, err := rs.recover(ctx, job, target, missed)
		if err != nil {
			return err
		}
		done := len(missed) < size
		var last *ledger.Missed
		if len(missed) > 0 {
			last = &missed[len(missed)-1]
		}
		if err := rs.ledger.AdvanceRecovery(ctx, job, n, last, done); err != nil {
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

// recover sends target the events of missed it has not received, and
// returns how many it sent (a dry run: would send).
func (rs *Recoveries) recover(ctx context.Context, job *ledger.Recovery, target Target, missed []ledger.Missed) (int, error) {
	var (
		failed []string
		fresh  []*ledger.Writing
	)
	for _, m := range missed {
		switch m.Status {
		case ledger.StatusSucceeded, ledger.StatusPending:
			// Received, or on its way: a pending delivery has its task.
		case ledger.StatusFailed:
			failed = append(failed, m.DeliveryID)
		case "":
			if target.Accepts != nil && !target.Accepts(ctx, m.Type, m.Payload) {
				continue
			}
			fresh = append(fresh, &ledger.Writing{
				Event:      ledger.Event{ID: m.EventID, AppID: job.AppID, Type: m.Type, FannedOutAt: time.Now()},
				Deliveries: []ledger.NewDelivery{{ID: ledger.NewDeliveryID(), EndpointID: job.EndpointID, FIFO: target.FIFO}},
			})
		}
	}
	if job.DryRun {
		return len(failed) + len(fresh), nil
	}
	retried, err := rs.deadLetters.Retry(ctx, failed)
	if err != nil {
		return 0, fmt.Errorf("recovery %s: %w", job.ID, err)
	}
	if len(fresh) == 0 {
		return len(retried), nil
	}
	// Written as the fan-out writes: one delivery per event and endpoint,
	// so one written meanwhile (by a fan-out run again) wins and is not
	// sent twice. Should the enqueue fail after the commit, the
	// reconciler finds the deliveries pending without a task.
	if err := rs.ledger.WriteAll(ctx, fresh); err != nil {
		return 0, fmt.Errorf("recovery %s: %w", job.ID, err)
	}
	// A delivery to a FIFO endpoint takes its place in the endpoint's
	// queue, by its event's order, and the pump is told; any other gets
	// its task.
	var (
		ps     []tasks.DeliverPayload
		queued int // deliveries that took their place in the endpoint's FIFO queue
	)
	createdAt := make(map[string]time.Time, len(missed))
	for _, m := range missed {
		createdAt[m.EventID] = m.CreatedAt
	}
	for _, w := range fresh {
		for _, d := range w.Written {
			switch {
			case !d.Fresh || d.EndpointID != job.EndpointID || d.Status != ledger.StatusPending:
			case d.FIFO:
				queued++
			default:
				ps = append(ps, tasks.DeliverPayload{
					DeliveryID: d.ID, EventID: w.Event.ID, EndpointID: d.EndpointID, AppID: job.AppID, CreatedAt: createdAt[w.Event.ID],
				})
			}
		}
	}
	if _, err := rs.queue.EnqueueDeliveries(ctx, ps); err != nil {
		return 0, fmt.Errorf("recovery %s: %w", job.ID, err)
	}
	if queued > 0 {
		// One kick starts the endpoint's pump if none is under way.
		if err := rs.queue.Kick(ctx, []string{job.EndpointID}, job.AppID); err != nil {
			return 0, fmt.Errorf("recovery %s: %w", job.ID, err)
		}
	}
	return len(retried) + len(ps) + queued, nil
}
