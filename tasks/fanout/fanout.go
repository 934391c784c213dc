// Package fanout turns an event into deliveries: it finds the endpoints
// subscribed to it, writes one delivery per endpoint (unique per event and
// endpoint), has the deliverer make the first attempt of those it can make
// at once, and enqueues a delivery task for every other. Running it twice
// for one event changes nothing.
//
// It reads subscriptions through the function type it declares
// (SubscribersFunc) and never imports the app.
package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/body"
	"github.com/hookd/hookd/tasks/delivery"
	"github.com/hookd/hookd/tasks/ledger"
	"github.com/hookd/hookd/tasks/repair"
)

// SubscribersFunc returns the IDs of the enabled endpoints of an app that
// subscribe to an event type and whose filters accept its payload.
type SubscribersFunc func(ctx context.Context, appID, eventType string, payload json.RawMessage) ([]string, error)

// Deps are what a Fanout works with.
type Deps struct {
	Ledger      *ledger.Store
	Queue       *tasks.Queue
	Subscribers SubscribersFunc
	// Bodies receives each event's webhook body, for its deliveries.
	Bodies *body.Cache
	// Deliverer makes the first attempt of fresh deliveries (nil: none).
	Deliverer *delivery.Deliverer
	Metrics   *Metrics
}

// Fanout handles TypeFanout tasks.
type Fanout struct {
	ledger      *ledger.Store
	queue       *tasks.Queue
	finder      *repair.Finder
	subscribers SubscribersFunc
	bodies      *body.Cache
	deliverer   *delivery.Deliverer
	metrics     *Metrics
	log         *slog.Logger
}

// New returns a fan-out handler.
func New(deps Deps, log *slog.Logger) *Fanout {
	return &Fanout{
		ledger: deps.Ledger, queue: deps.Queue, finder: repair.NewFinder(deps.Ledger, deps.Queue),
		subscribers: deps.Subscribers, bodies: deps.Bodies, deliverer: deps.Deliverer, metrics: deps.Metrics, log: log,
	}
}

// ProcessTask implements asynq.Handler.
func (f *Fanout) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var ev tasks.FanoutPayload
	if err := json.Unmarshal(t.Payload(), &ev); err != nil {
		return fmt.Errorf("decode fan-out payload: %w: %w", err, asynq.SkipRetry)
	}
	endpoints, err := f.subscribers(ctx, ev.AppID, ev.Type, ev.Data)
	if err != nil {
		return fmt.Errorf("find subscribers of %s: %w", ev.EventID, err)
	}
	f.metrics.events.Inc()
	f.metrics.perEvent.Observe(float64(len(endpoints)))
	if len(endpoints) == 0 {
		return f.ledger.MarkFannedOut(ctx, ev.EventID)
	}
	written, err := f.ledger.Write(ctx, ledger.Event{ID: ev.EventID, AppID: ev.AppID, Type: ev.Type}, endpoints)
	if err != nil {
		return err
	}
	enqueue, err := f.owed(ctx, written)
	if err != nil {
		return fmt.Errorf("fan out %s again: %w", ev.EventID, err)
	}

	// The body is encoded once, here, for every delivery this worker makes
	// of the event; the others load it from the outbox.
	webhook, err := body.Encode(ev.Type, ev.CreatedAt, ev.Data)
	if err != nil {
		return fmt.Errorf("event %s: %w: %w", ev.EventID, err, asynq.SkipRetry)
	}
	f.bodies.Put(ev.EventID, webhook)
	var payloads, firsts []tasks.DeliverPayload
	for _, d := range enqueue {
		p := tasks.DeliverPayload{DeliveryID: d.ID, EventID: ev.EventID, EndpointID: d.EndpointID, AppID: ev.AppID, CreatedAt: ev.CreatedAt}
		if d.Fresh && f.deliverer != nil {
			firsts = append(firsts, p)
		} else {
			payloads = append(payloads, p)
		}
	}
	// Fresh deliveries get their first attempt here; those it could not
	// make, and those it made in vain, become tasks.
	var retries []tasks.Retry
	if len(firsts) > 0 {
		var now []tasks.DeliverPayload
		now, retries = f.deliverer.First(ctx, firsts, webhook)
		payloads = append(payloads, now...)
		f.metrics.firstAttempts.Add(float64(len(firsts) - len(now)))
	}
	if _, err := f.queue.EnqueueDeliveries(ctx, payloads); err != nil {
		return fmt.Errorf("fan out %s: %w", ev.EventID, err)
	}
	if _, err := f.queue.EnqueueRetries(ctx, retries); err != nil {
		return fmt.Errorf("fan out %s: %w", ev.EventID, err)
	}
	f.metrics.enqueued.Add(float64(len(payloads) + len(retries)))
	return nil
}

// owed returns the deliveries of written that need a task or a first
// attempt: the pending ones this run created, and those an earlier run
// created whose task Redis lost. The others may be under way or done by
// now: only those whose task is lost are enqueued again, as the reconciler
// does, so that none is sent twice.
func (f *Fanout) owed(ctx context.Context, written []ledger.Written) ([]ledger.Written, error) {
	var owed []ledger.Written
	var earlier []string
	for _, d := range written {
		switch {
		case d.Status != ledger.StatusPending:
		case d.Fresh:
			owed = append(owed, d)
		default:
			earlier = append(earlier, d.ID)
		}
	}
	if len(earlier) == 0 {
		return owed, nil
	}
	lost, _, err := f.finder.Lost(ctx, earlier, nil)
	if err != nil {
		return nil, err
	}
	isLost := make(map[string]bool, len(lost))
	for _, id := range lost {
		isLost[id] = true
	}
	for _, d := range written {
		if isLost[d.ID] {
			owed = append(owed, d)
		}
	}
	return owed, nil
}
