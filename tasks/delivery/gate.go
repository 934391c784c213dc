package delivery

import (
	"context"
	"log/slog"
	"time"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/guard"
)

// settle tells the gate what became of an admitted delivery and makes
// the waiters it woke, if any, due. Errors are logged: none of them may
// lose the attempt.
func (d *Deliverer) settle(ctx context.Context, t guard.Ticket, o guard.Outcome) {
	ws, err := d.gate.Leave(ctx, t, o)
	if err != nil {
		d.log.WarnContext(ctx, "endpoint slots, circuit or backlog not updated", slog.String("endpoint_id", t.EndpointID), slog.Any("err", err))
		return
	}
	d.wake(ctx, ws)
}

// enter asks the gate to admit t. Slots a wake held for t, which it may
// not use now, go to the next waiter.
func (d *Deliverer) enter(ctx context.Context, t guard.Ticket) (guard.Verdict, error) {
	v, err := d.gate.Enter(ctx, t)
	if err == nil && v.Released {
		d.forgo(ctx, t.Waiter())
	}
	return v, err
}

// forgo gives up the slots held for w and wakes the next waiters instead.
func (d *Deliverer) forgo(ctx context.Context, w guard.Waiter) {
	next, err := d.gate.Forgo(context.WithoutCancel(ctx), w)
	if err != nil {
		d.log.WarnContext(ctx, "held slots not given up", slog.String("endpoint_id", w.EndpointID), slog.Any("err", err))
		return
	}
	d.wake(ctx, next)
}

// maxForgone bounds how many woken waiters one settle hands on: a waiter
// whose task is gone gives its slots to the next ones.
const maxForgone = 4

// wake makes the postponed tasks of ws, which the gate woke, due now. A
// waiter whose task is gone or done gives its slots to the next; one whose
// task runs keeps them (it holds them already, or will find them when it
// asks the gate). A waiter left unwoken comes back by itself when its
// postponement ends, and the slots held for it lapse.
func (d *Deliverer) wake(ctx context.Context, ws []guard.Waiter) {
	ctx = context.WithoutCancel(ctx)
	for forgone := 0; len(ws) > 0; {
		w := ws[0]
		ws = ws[1:]
		state, err := d.queue.Wake(ctx, w.Queue, w.DeliveryID)
		if err != nil {
			d.log.WarnContext(ctx, "waiting delivery not woken", slog.String("delivery_id", w.DeliveryID), slog.Any("err", err))
			continue
		}
		switch state {
		case tasks.Woken:
			d.metrics.woken.Inc()
			continue
		case tasks.Running:
			continue
		}
		if forgone == maxForgone {
			continue
		}
		forgone++
		next, err := d.gate.Forgo(ctx, w)
		if err != nil {
			d.log.WarnContext(ctx, "held slots not given up", slog.String("endpoint_id", w.EndpointID), slog.Any("err", err))
			continue
		}
		ws = append(ws, next...)
	}
}

// maxRateHold is the longest a worker waits in place for a delivery's
// rate-limit slot. asynq schedules retries to the whole second, so a
// delivery postponed by less comes back early, up to a second; waiting out
// the last moments here sends it on time, which keeps the rate even.
const maxRateHold = 250 * time.Millisecond

// admit asks the endpoint's rate limit for the delivery's slot. A slot at
// most maxRateHold away is waited for in place; otherwise it returns how
// long the delivery must be postponed.
func (d *Deliverer) admit(ctx context.Context, ep Endpoint, deliveryID string) (time.Duration, error) {
	wait, err := d.limiter.Allow(ctx, ep.ID, deliveryID, ep.RateLimit)
	if err != nil || wait == 0 || wait > maxRateHold {
		return wait, err
	}
	select {
	case <-time.After(wait):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return d.limiter.Allow(ctx, ep.ID, deliveryID, ep.RateLimit)
}

// finished takes a delivery that did not pass the gate off the backlogs.
func (d *Deliverer) finished(ctx context.Context, p tasks.DeliverPayload) {
	if err := d.gate.Finished(context.WithoutCancel(ctx), p.AppID, p.EndpointID); err != nil {
		d.log.WarnContext(ctx, "backlog not updated", slog.String("endpoint_id", p.EndpointID), slog.Any("err", err))
	}
}
