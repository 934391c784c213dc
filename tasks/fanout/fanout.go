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
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hookd/hookd/outbox/groupcommit"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/body"
	"github.com/hookd/hookd/tasks/delivery"
	"github.com/hookd/hookd/tasks/ledger"
	"github.com/hookd/hookd/tasks/repair"
)

// Subscriber is an endpoint subscribed to an event.
type Subscriber struct {
	EndpointID string
	// FIFO tells an endpoint that receives its deliveries one at a time,
	// in the order of their events: its pump sends them (see
	// tasks.TypeFIFO), never a first attempt or a delivery task.
	FIFO bool
}

// SubscribersFunc returns the enabled endpoints of an app that subscribe
// to an event type and whose filters accept its payload.
type SubscribersFunc func(ctx context.Context, appID, eventType string, payload json.RawMessage) ([]Subscriber, error)

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

// Group commits: the fan-outs running at a moment look up their events in
// one read and write their deliveries in one statement and one commit, up
// to batchEvents events at a time; a flush taking longer than batchTimeout
// fails, and its fan-outs are retried.
const (
	batchEvents  = 64
	batchTimeout = 30 * time.Second
)

// Fanout handles TypeFanout tasks.
type Fanout struct {
	writes      *groupcommit.Batcher[*ledger.Writing]
	lookups     *groupcommit.Batcher[*lookup]
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
	f := &Fanout{
		ledger: deps.Ledger, queue: deps.Queue, finder: repair.NewFinder(deps.Ledger, deps.Queue),
		subscribers: deps.Subscribers, bodies: deps.Bodies, deliverer: deps.Deliverer, metrics: deps.Metrics, log: log,
	}
	f.writes = groupcommit.New(batchEvents, batchTimeout, f.ledger.WriteAll)
	f.lookups = groupcommit.New(batchEvents, batchTimeout, f.lookUp)
	return f
}

// lookup asks whether an event has deliveries written.
type lookup struct {
	eventID string
	fanned  bool
}

// lookUp answers lookups in one read.
func (f *Fanout) lookUp(ctx context.Context, ls []*lookup) error {
	ids := make([]string, len(ls))
	for i, l := range ls {
		ids[i] = l.eventID
	}
	fanned, err := f.ledger.Fanned(ctx, ids)
	if err != nil {
		return err
	}
	for _, l := range ls {
		l.fanned = fanned[l.eventID]
	}
	return nil
}

// ProcessTask implements asynq.Handler.
func (f *Fanout) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var ev tasks.FanoutPayload
	if err := json.Unmarshal(t.Payload(), &ev); err != nil {
		return fmt.Errorf("decode fan-out payload: %w: %w", err, asynq.SkipRetry)
	}
	subs, err := f.subscribers(ctx, ev.AppID, ev.Type, ev.Data)
	if err != nil {
		return fmt.Errorf("find subscribers of %s: %w", ev.EventID, err)
	}
	f.metrics.events.Inc()
	f.metrics.perEvent.Observe(float64(len(subs)))
	if len(subs) == 0 {
		return f.ledger.MarkFannedOut(ctx, ev.EventID)
	}
	// The body is encoded once, here, for every delivery this worker makes
	// of the event; the others load it from the outbox.
	webhook, err := body.Encode(ev.Type, ev.CreatedAt, ev.Data)
	if err != nil {
		// No retry can deliver it: it is marked fanned out, with no
		// delivery, so that it holds back neither the reconciler nor the
		// FIFO endpoints of its app (whose heads wait for every earlier
		// event to fan out).
		if markErr := f.ledger.MarkFannedOut(ctx, ev.EventID); markErr != nil {
			return fmt.Errorf("event %s: %w (and not marked: %w)", ev.EventID, err, markErr)
		}
		return fmt.Errorf("event %s: %w: %w", ev.EventID, err, asynq.SkipRetry)
	}
	f.bodies.Put(ev.EventID, webhook)

	// A first run writes no row before its first attempts: its deliveries
	// are written once, with what their attempt made of them. A run again
	// (a fan-out recovered from a dead worker, retried after an error, or
	// published again) may find rows of an earlier run: it writes the
	// missing ones first, and attempts none itself, since an earlier
	// delivery's task may be under way. A first run finds no row: an
	// indexed read, shared by the fan-outs of the moment, tells it; their
	// writes after the attempts share one statement and one commit too.
	entry := ledger.Event{ID: ev.EventID, AppID: ev.AppID, Type: ev.Type, FannedOutAt: time.Now()}
	if f.deliverer == nil || slices.ContainsFunc(subs, func(s Subscriber) bool { return s.FIFO }) {
		// No first attempts: every delivery is a task, as on a run again.
		// An event with a FIFO endpoint makes none either: its rows are
		// written at once, since the FIFO endpoints' heads behind it wait
		// for them, which first attempts (up to a delivery timeout) would
		// hold up.
		return f.again(ctx, ev, entry, subs)
	}
	first, err := f.firstRun(ctx, ev.EventID)
	switch {
	case err != nil:
		return err
	case !first:
		return f.again(ctx, ev, entry, subs)
	}
	return f.first(ctx, ev, entry, subs, webhook)
}

// firstRun reports whether the running fan-out is the first of its event:
// its task never failed, and no delivery of the event is written.
func (f *Fanout) firstRun(ctx context.Context, eventID string) (bool, error) {
	if n, _ := asynq.GetRetryCount(ctx); n > 0 {
		return false, nil
	}
	l := &lookup{eventID: eventID}
	if err := f.lookups.Do(ctx, l); err != nil {
		return false, err
	}
	return !l.fanned, nil
}

// first fans ev out to subs the first time: first attempts, then the
// rows with what the attempts made of them, then the tasks of the
// deliveries not attempted and of those still pending. FIFO endpoints get
// their rows, and their pumps a kick.
func (f *Fanout) first(ctx context.Context, ev tasks.FanoutPayload, entry ledger.Event, subs []Subscriber, webhook []byte) error {
	var (
		ps []tasks.DeliverPayload
		ds []ledger.NewDelivery
	)
	for _, sub := range subs {
		if sub.FIFO {
			ds = append(ds, ledger.NewDelivery{ID: ledger.NewDeliveryID(), EndpointID: sub.EndpointID, FIFO: true})
			continue
		}
		ps = append(ps, tasks.DeliverPayload{DeliveryID: ledger.NewDeliveryID(), EventID: ev.EventID, EndpointID: sub.EndpointID, AppID: ev.AppID, CreatedAt: ev.CreatedAt})
	}
	firsts := f.deliverer.First(ctx, ps, webhook)
	for _, fa := range firsts {
		ds = append(ds, ledger.NewDelivery{ID: fa.Payload.DeliveryID, EndpointID: fa.Payload.EndpointID, First: fa.Record})
	}
	// Only the deliveries written here are this run's: a delivery to the
	// same endpoint that an earlier run wrote (a duplicate fan-out) won,
	// and is owed a task only if Redis lost its own. Should the write
	// fail, the attempts made are lost with it: the run again makes them
	// again (at least once).
	written, now, err := f.write(ctx, ev, entry, ds)
	if err != nil {
		return err
	}
	mine := make(map[string]bool, len(written))
	for _, d := range written {
		mine[d.ID] = d.Fresh
	}
	var (
		retries []tasks.Retry
		made    int
	)
	for _, fa := range firsts {
		if !mine[fa.Payload.DeliveryID] {
			continue
		}
		if fa.Record == nil {
			now = append(now, fa.Payload)
			continue
		}
		made++
		switch fa.Record.Status {
		case ledger.StatusPending:
			retries = append(retries, tasks.Retry{Payload: fa.Payload, Pause: fa.Pause})
		case ledger.StatusFailed:
			f.deliverer.DeadLetter(ctx, fa)
		}
	}
	f.metrics.firstAttempts.Add(float64(made))
	if err := f.enqueue(ctx, ev, now, retries); err != nil {
		return err
	}
	return f.kick(ctx, ev, written)
}

// again fans ev out to subs when it may have run before: it writes the
// missing deliveries, then enqueues a task for each of them and for each
// earlier one whose task Redis lost, and kicks the pumps of the FIFO
// endpoints.
func (f *Fanout) again(ctx context.Context, ev tasks.FanoutPayload, entry ledger.Event, subs []Subscriber) error {
	ds := make([]ledger.NewDelivery, len(subs))
	for i, sub := range subs {
		ds[i] = ledger.NewDelivery{ID: ledger.NewDeliveryID(), EndpointID: sub.EndpointID, FIFO: sub.FIFO}
	}
	written, now, err := f.write(ctx, ev, entry, ds)
	if err != nil {
		return err
	}
	for _, d := range written {
		if d.Fresh && d.Status == ledger.StatusPending && !d.FIFO {
			now = append(now, f.payload(ev, d))
		}
	}
	if err := f.enqueue(ctx, ev, now, nil); err != nil {
		return err
	}
	return f.kick(ctx, ev, written)
}

// kick tells the pumps of the FIFO endpoints with a pending delivery of ev
// (written now or by an earlier run) that it waits in their queue.
func (f *Fanout) kick(ctx context.Context, ev tasks.FanoutPayload, written []ledger.Written) error {
	var endpoints []string
	for _, d := range written {
		if d.FIFO && d.Status == ledger.StatusPending {
			endpoints = append(endpoints, d.EndpointID)
		}
	}
	if len(endpoints) == 0 {
		return nil
	}
	if err := f.queue.Kick(ctx, endpoints, ev.AppID); err != nil {
		return fmt.Errorf("fan out %s: %w", ev.EventID, err)
	}
	return nil
}

// write writes ds, deliveries of ev, with the fan-outs of the moment, and
// returns every delivery of the event, and the task payloads of those an
// earlier run wrote whose task Redis lost.
func (f *Fanout) write(ctx context.Context, ev tasks.FanoutPayload, entry ledger.Event, ds []ledger.NewDelivery) ([]ledger.Written, []tasks.DeliverPayload, error) {
	w := &ledger.Writing{Event: entry, Deliveries: ds}
	if err := f.writes.Do(ctx, w); err != nil {
		return nil, nil, err
	}
	lost, err := f.lost(ctx, ev, w.Written)
	if err != nil {
		return nil, nil, err
	}
	return w.Written, lost, nil
}

// payload is the task payload of delivery d of ev.
func (f *Fanout) payload(ev tasks.FanoutPayload, d ledger.Written) tasks.DeliverPayload {
	return tasks.DeliverPayload{DeliveryID: d.ID, EventID: ev.EventID, EndpointID: d.EndpointID, AppID: ev.AppID, CreatedAt: ev.CreatedAt}
}

// enqueue enqueues the delivery tasks of ev: now, due at once, and
// retries, due after their pause.
func (f *Fanout) enqueue(ctx context.Context, ev tasks.FanoutPayload, now []tasks.DeliverPayload, retries []tasks.Retry) error {
	if _, err := f.queue.EnqueueDeliveries(ctx, now); err != nil {
		return fmt.Errorf("fan out %s: %w", ev.EventID, err)
	}
	if _, err := f.queue.EnqueueRetries(ctx, retries); err != nil {
		return fmt.Errorf("fan out %s: %w", ev.EventID, err)
	}
	f.metrics.enqueued.Add(float64(len(now) + len(retries)))
	return nil
}

// lost returns the task payloads of the deliveries of written that an
// earlier run wrote, are still pending and whose task Redis lost. The
// others may be under way or done by now: only those whose task is lost
// are enqueued again, as the reconciler does, so that none is sent twice.
func (f *Fanout) lost(ctx context.Context, ev tasks.FanoutPayload, written []ledger.Written) ([]tasks.DeliverPayload, error) {
	var earlier []tasks.TaskRef
	for _, d := range written {
		if !d.Fresh && d.Status == ledger.StatusPending && !d.FIFO {
			earlier = append(earlier, tasks.TaskRef{DeliveryID: d.ID, EndpointID: d.EndpointID})
		}
	}
	if len(earlier) == 0 {
		return nil, nil
	}
	lost, _, err := f.finder.Lost(ctx, earlier, nil)
	if err != nil {
		return nil, fmt.Errorf("fan out %s again: %w", ev.EventID, err)
	}
	isLost := make(map[string]bool, len(lost))
	for _, id := range lost {
		isLost[id] = true
	}
	var ps []tasks.DeliverPayload
	for _, d := range written {
		if isLost[d.ID] {
			ps = append(ps, f.payload(ev, d))
		}
	}
	return ps, nil
}
