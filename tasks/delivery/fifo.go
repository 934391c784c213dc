package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/body"
	"github.com/hookd/hookd/tasks/guard"
	"github.com/hookd/hookd/tasks/ledger"
)

// A head that waits for an earlier event of its app to fan out (a matter
// of milliseconds, as a rule) is looked at again every fifoPoll, for up to
// fifoWaitInPlace; then the pump hands over to a successor due after
// fifoWaitingPause. A pause up to fifoWaitInPlace before a retry (a short
// retry schedule's, a rate limit's) is waited out in place too: asynq
// schedules to the whole second. Longer waits hand over, so that a pump
// holds a worker only while it sends.
const (
	fifoPoll         = 20 * time.Millisecond
	fifoWaitInPlace  = maxRateHold
	fifoWaitingPause = time.Second
)

// Pump handles TypeFIFO tasks: it sends a FIFO endpoint's deliveries one
// at a time, in the order of their events, each only once the one before
// it succeeded or failed for good (a dead letter). A delivery that fails
// with retries left holds the queue: the pump hands over to a successor
// due after the retry's pause, which tries it again. See tasks.TypeFIFO
// for how pumps take turns.
//
// A worker that dies in the middle of an attempt leaves its pump active
// in asynq until the reconciler hands the queue to a successor, once the
// pump's lease has expired (tasks.Queue.RestartPump): the head goes out
// again (at least once), and nothing behind it goes before it.
func (d *Deliverer) Pump(ctx context.Context, t *asynq.Task) error {
	var p tasks.FIFOPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode fifo pump payload: %w: %w", err, asynq.SkipRetry)
	}
	started := time.Now()
	var waitedSince time.Time
	for {
		pump, err := d.queue.LookPump(ctx, p)
		switch {
		case err != nil:
			return err
		case !pump.Current:
			return nil // another pump took over
		}
		ep, err := d.endpoint(ctx, p.EndpointID)
		exists := true
		switch {
		case errors.Is(err, ErrEndpointGone):
			// Its deliveries went with it; a row a racing fan-out wrote
			// is closed.
			ep, exists = Endpoint{ID: p.EndpointID, AppID: p.AppID}, false
		case err != nil:
			return fmt.Errorf("read endpoint %s: %w", p.EndpointID, err)
		}
		h, err := d.ledger.FIFOHead(ctx, p.EndpointID, ep.EventTypes)
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			released, err := d.queue.ReleasePump(ctx, p, pump.Kicks)
			if err != nil || released {
				return err
			}
			continue // a fan-out wrote a delivery meanwhile
		case err != nil:
			return err
		}
		if time.Since(started) >= tasks.FIFOPumpRun {
			// The endpoint's turn is up: the successor goes to the back of
			// the queue, behind the other endpoints' work.
			return d.queue.HandOver(ctx, p, 0)
		}
		if h.Waiting {
			if waitedSince.IsZero() {
				waitedSince = time.Now()
			}
			if time.Since(waitedSince) >= fifoWaitInPlace {
				return d.queue.HandOver(ctx, p, fifoWaitingPause)
			}
			select {
			case <-time.After(fifoPoll):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		waitedSince = time.Time{}
		pause, err := d.sendHead(ctx, ep, exists, h)
		switch {
		case err != nil:
			return err
		case pause > fifoWaitInPlace:
			return d.queue.HandOver(ctx, p, pause)
		case pause > 0:
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// sendHead makes an attempt of h, the head of the queue of endpoint ep
// (which no longer exists unless exists), and returns how long the queue
// must pause before the next attempt (of h again): none once h succeeded
// or failed for good.
func (d *Deliverer) sendHead(ctx context.Context, ep Endpoint, exists bool, h ledger.Head) (time.Duration, error) {
	p := h.Payload()
	p.Attempts = h.Attempts
	switch {
	case !exists:
		return 0, d.ledger.MarkFailed(ctx, h.ID, "endpoint deleted")
	case ep.Disabled:
		return 0, d.deadLetterHead(ctx, p, "endpoint disabled")
	case ep.signingKeys().Len() == 0:
		return 0, fmt.Errorf("deliver %s: endpoint %s has no live signing secret", h.ID, ep.ID) // never send unsigned
	}
	webhook, err := d.bodies.Get(ctx, h.EventID)
	switch {
	case errors.Is(err, body.ErrEventGone):
		return 0, d.deadLetterHead(ctx, p, "event deleted")
	case err != nil:
		return 0, err
	}
	if wait, err := d.admit(ctx, ep, h.ID); err != nil || wait > 0 {
		if wait > 0 {
			d.metrics.attempts.WithLabelValues(OutcomeRateLimited).Inc()
		}
		return wait, err
	}
	// The endpoint's circuit and its app's in-flight cap apply; the pump
	// waits out a refusal itself (no waiting room: its task is not the
	// delivery's).
	ticket := guard.Ticket{AppID: ep.AppID, EndpointID: ep.ID, DeliveryID: h.ID, NoRoom: true}
	v, err := d.enter(ctx, ticket)
	if err != nil {
		return 0, err
	}
	if v.Wait > 0 {
		d.metrics.attempts.WithLabelValues(v.Reason).Inc()
		return v.Wait, nil
	}
	var o guard.Outcome
	r, err := d.attempt(ctx, ep, p, webhook, h.Attempts >= d.retry.MaxRetry(), &o)
	// The backlogs count deliveries enqueued as tasks: a FIFO one never is.
	o.Finished = false
	d.settle(context.WithoutCancel(ctx), ticket, o)
	if err != nil {
		return 0, err
	}
	switch r.next {
	case ledger.StatusSucceeded:
		return 0, nil
	case ledger.StatusFailed:
		d.countDeadLetter(ctx, p, describe(r.a))
		return 0, nil
	}
	return d.pauseAfter(r, h.Attempts), nil
}

// deadLetterHead fails the head p for a reason no retry can change, and
// lets the queue go on.
func (d *Deliverer) deadLetterHead(ctx context.Context, p tasks.DeliverPayload, reason string) error {
	if err := d.ledger.MarkFailed(ctx, p.DeliveryID, reason); err != nil {
		return err
	}
	d.countDeadLetter(ctx, p, reason)
	return nil
}

// countDeadLetter counts and logs a FIFO delivery that failed for good. It
// is a dead letter in Postgres (the API's and hookd dlq's), not an archived
// task: a retry of it goes on its own, out of the queue.
func (d *Deliverer) countDeadLetter(ctx context.Context, p tasks.DeliverPayload, reason string) {
	d.metrics.deadLetters.Inc()
	d.log.WarnContext(ctx, "task dead-lettered", slog.String("task_type", tasks.TypeFIFO), slog.String("delivery_id", p.DeliveryID),
		slog.String("endpoint_id", p.EndpointID), slog.String("err", reason))
}
