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

// First makes the first attempt of fresh deliveries of one event inside
// the fan-out that created them, so that a delivery whose first attempt
// succeeds costs no task: no enqueue, dequeue or completion in Redis. Only
// deliveries the gate admits at once go this way, at most FirstAttempts at
// a time per process. It returns the deliveries not attempted, to enqueue
// now (their task waits, or is postponed, as any), and those whose first
// attempt failed, to enqueue for their next try.
//
// Should the worker die meanwhile, the fan-out runs again: the deliveries
// still pending whose task Redis lacks are enqueued then, as the reconciler
// would.
func (d *Deliverer) First(ctx context.Context, ps []tasks.DeliverPayload, webhook []byte) (now []tasks.DeliverPayload, retry []tasks.Retry) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, p := range ps {
		select {
		case d.firsts <- struct{}{}:
		default: // every sender is busy: the task makes the attempt
			mu.Lock()
			now = append(now, p)
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			defer func() { <-d.firsts }()
			l, attempted := d.firstAttempt(ctx, p, webhook)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !attempted:
				now = append(now, p)
			case l != nil:
				retry = append(retry, *l)
			}
		})
	}
	wg.Wait()
	return now, retry
}

// firstAttempt makes p's first attempt if its endpoint takes it now: the
// endpoint is enabled, has no rate limit and its circuit and the in-flight
// caps of the endpoint and its app let it through. It reports whether it
// made the attempt, and returns the retry a failed one needs.
func (d *Deliverer) firstAttempt(ctx context.Context, p tasks.DeliverPayload, webhook []byte) (*tasks.Retry, bool) {
	ep, err := d.endpoint(ctx, p.EndpointID)
	if err != nil || ep.Disabled || len(ep.Keys) == 0 || ep.RateLimit > 0 {
		return nil, false // the task handles all of these
	}
	ticket := guard.Ticket{AppID: ep.AppID, EndpointID: ep.ID, DeliveryID: p.DeliveryID, NoRoom: true}
	v, err := d.enter(ctx, ticket)
	if err != nil {
		d.log.WarnContext(ctx, "first attempt not gated", slog.String("delivery_id", p.DeliveryID), slog.Any("err", err))
		return nil, false
	}
	if v.Wait > 0 {
		return nil, false
	}
	var o guard.Outcome
	r, err := d.attempt(ctx, ep, p, webhook, d.retry.MaxRetry() == 0, &o)
	// The backlogs count deliveries enqueued: this one never was.
	o.Finished = false
	d.settle(context.WithoutCancel(ctx), ticket, o)
	if err != nil {
		// Sent but not recorded: its task sends it again (at least once).
		d.log.WarnContext(ctx, "first attempt not recorded", slog.String("delivery_id", p.DeliveryID), slog.Any("err", err))
		return nil, false
	}
	switch r.next {
	case ledger.StatusSucceeded:
		return nil, true
	case ledger.StatusFailed:
		// A dead letter, as if its task had failed for good.
		d.metrics.deadLetters.Inc()
		d.log.WarnContext(ctx, "task dead-lettered", slog.String("task_type", tasks.TypeDeliver), slog.String("task_id", p.DeliveryID), slog.String("err", describe(r.a)))
		if err := d.queue.ArchiveDelivery(context.WithoutCancel(ctx), p); err != nil {
			d.log.WarnContext(ctx, "dead letter not archived in redis", slog.String("delivery_id", p.DeliveryID), slog.Any("err", err))
		}
		return nil, true
	}
	p.Attempts = 1
	pause := d.retry.Delay(0)
	if r.asked {
		// Retry-After is in seconds: a second more keeps the retry from
		// coming early (as RetryDelay does).
		pause = max(pause, r.retryAfter+time.Second)
	}
	return &tasks.Retry{Payload: p, Pause: pause}, true
}
