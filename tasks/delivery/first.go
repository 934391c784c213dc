package delivery

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/guard"
	"github.com/hookd/hookd/tasks/ledger"
)

// First is the outcome of a delivery's first attempt, made for the fan-out
// before the delivery's row is written.
type First struct {
	Payload tasks.DeliverPayload
	// Record is the attempt and what it made of the delivery, for the
	// fan-out to write with the row; nil when no attempt was made (the
	// delivery needs a task).
	Record *ledger.Record
	// Pause is the wait before the retry of a delivery still pending
	// after its attempt.
	Pause time.Duration
}

// First makes the first attempt of fresh deliveries of one event inside
// the fan-out, before their rows are written, so that a delivery whose
// first attempt succeeds costs no task (no enqueue, dequeue or completion
// in Redis) and its row is written once, already succeeded, with its
// attempt: one statement for the fan-out's rows and attempts together.
// Only deliveries the gate admits at once go this way, at most
// FirstAttempts at a time per process. It returns one First per payload,
// in order; the fan-out writes their rows, then enqueues a task for each
// not attempted (at once) and each still pending (after its Pause), and
// hands those that failed for good to DeadLetter.
//
// Should the worker die meanwhile, the fan-out runs again and, finding no
// row, attempts again: a duplicate, as when a worker dies between a POST
// and its record.
func (d *Deliverer) First(ctx context.Context, ps []tasks.DeliverPayload, webhook []byte) []First {
	out := make([]First, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		out[i].Payload = p
		select {
		case d.firsts <- struct{}{}:
		default: // every sender is busy: the task makes the attempt
			continue
		}
		wg.Go(func() {
			defer func() { <-d.firsts }()
			out[i] = d.firstAttempt(ctx, p, webhook)
		})
	}
	wg.Wait()
	return out
}

// firstAttempt makes p's first attempt if its endpoint takes it now: the
// endpoint is enabled, has no rate limit and its circuit and the in-flight
// caps of the endpoint and its app let it through.
func (d *Deliverer) firstAttempt(ctx context.Context, p tasks.DeliverPayload, webhook []byte) First {
	ep, err := d.endpoint(ctx, p.EndpointID)
	if err != nil || ep.Disabled || ep.signingKeys().Len() == 0 || ep.RateLimit > 0 {
		return First{Payload: p} // the task handles all of these
	}
	ticket := guard.Ticket{AppID: ep.AppID, EndpointID: ep.ID, DeliveryID: p.DeliveryID, NoRoom: true}
	v, err := d.enter(ctx, ticket)
	if err != nil {
		d.log.WarnContext(ctx, "first attempt not gated", slog.String("delivery_id", p.DeliveryID), slog.Any("err", err))
		return First{Payload: p}
	}
	if v.Wait > 0 {
		return First{Payload: p}
	}
	var o guard.Outcome
	r := d.try(ctx, ep, p, webhook, d.retry.MaxRetry() == 0, &o)
	// The backlogs count deliveries enqueued: this one never was.
	o.Finished = false
	d.settle(context.WithoutCancel(ctx), ticket, o)
	f := First{Payload: p, Record: r.record()}
	if r.next == ledger.StatusPending {
		f.Payload.Attempts = 1
		f.Pause = d.pauseAfter(r, 0)
	}
	return f
}

// DeadLetter leaves a delivery that its first attempt failed for good (410
// Gone, a disabled endpoint, no retries) as a task that failed for good
// leaves it: counted, logged, and archived in Redis as a dead letter. The
// fan-out calls it once the delivery's row is written.
func (d *Deliverer) DeadLetter(ctx context.Context, f First) {
	d.metrics.deadLetters.Inc()
	d.log.WarnContext(ctx, "task dead-lettered", slog.String("task_type", tasks.TypeDeliver), slog.String("task_id", f.Payload.DeliveryID), slog.String("err", describe(f.Record.Attempt)))
	if err := d.queue.ArchiveDelivery(context.WithoutCancel(ctx), f.Payload); err != nil {
		d.log.WarnContext(ctx, "dead letter not archived in redis", slog.String("delivery_id", f.Payload.DeliveryID), slog.Any("err", err))
	}
}
