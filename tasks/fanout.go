package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks/body"
)

// SubscribersFunc returns the IDs of the enabled endpoints of an app that
// subscribe to an event type and whose filters accept its payload.
type SubscribersFunc func(ctx context.Context, appID, eventType string, payload json.RawMessage) ([]string, error)

// Fanout handles TypeFanout tasks: it writes one delivery row per subscribed
// endpoint (unique per event and endpoint) and enqueues one delivery task per
// pending row. Running it twice for one event changes nothing.
type Fanout struct {
	db          *bun.DB
	queue       *Queue
	requeue     requeuer
	subscribers SubscribersFunc
	bodies      *body.Cache
	// deliverer makes the first attempt of fresh deliveries (nil: none).
	deliverer *Deliverer
	log       *slog.Logger
	metrics   *Metrics
}

// NewFanout returns a fan-out handler. It asks inspector which delivery
// tasks Redis holds when it runs again for an event, leaves each event's
// webhook body in bodies for its deliveries and, when deliverer is not nil,
// has it make the first attempt of fresh deliveries.
func NewFanout(db *bun.DB, queue *Queue, inspector *asynq.Inspector, subscribers SubscribersFunc, bodies *body.Cache, deliverer *Deliverer, metrics *Metrics, log *slog.Logger) *Fanout {
	return &Fanout{db: db, queue: queue, requeue: requeuer{db, queue, inspector}, subscribers: subscribers, bodies: bodies, deliverer: deliverer, metrics: metrics, log: log}
}

// ProcessTask implements asynq.Handler.
func (f *Fanout) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var ev FanoutPayload
	if err := json.Unmarshal(t.Payload(), &ev); err != nil {
		return fmt.Errorf("decode fan-out payload: %w: %w", err, asynq.SkipRetry)
	}
	endpoints, err := f.subscribers(ctx, ev.AppID, ev.Type, ev.Data)
	if err != nil {
		return fmt.Errorf("find subscribers of %s: %w", ev.EventID, err)
	}
	f.metrics.eventsFannedOut.Inc()
	f.metrics.perEvent.Observe(float64(len(endpoints)))
	if len(endpoints) == 0 {
		// Nothing is owed; the mark spares the event the reconciler.
		_, err := f.db.NewUpdate().Table("outbox_events").Set("fanned_out_at = clock_timestamp()").
			Where("id = ? AND fanned_out_at IS NULL", ev.EventID).Exec(ctx)
		if err != nil {
			return fmt.Errorf("mark %s fanned out: %w", ev.EventID, err)
		}
		return nil
	}

	rows := make([]Delivery, len(endpoints))
	for i, ep := range endpoints {
		rows[i] = Delivery{
			ID:         outbox.NewID("dlv"),
			EventID:    ev.EventID,
			EndpointID: ep,
			AppID:      ev.AppID,
			EventType:  ev.Type,
		}
	}
	// One statement inserts the missing rows and returns every row of the
	// event: those it inserted, and those a previous run created (with
	// other IDs), which its snapshot still shows. It selects by event only,
	// through the unique index: a status condition would invite the
	// planner to the partial index on pending rows, whose dead entries
	// (deliveries since done) grow until vacuum.
	//
	// It also marks the event fanned out: from here on, should Redis lose
	// the delivery tasks before they run, the reconciler finds their rows
	// pending and enqueues them again; it enqueues the fan-out again only
	// for an event never marked.
	var written []struct {
		ID         string `bun:"id"`
		EndpointID string `bun:"endpoint_id"`
		Status     string `bun:"status"`
		Fresh      bool   `bun:"fresh"`
	}
	err = f.db.NewRaw(`WITH inserted AS (?), marked AS (
			UPDATE outbox_events SET fanned_out_at = clock_timestamp() WHERE id = ? AND fanned_out_at IS NULL
		) SELECT id, endpoint_id, status, true AS fresh FROM inserted
		UNION ALL SELECT id, endpoint_id, status, false FROM deliveries WHERE event_id = ?`,
		f.db.NewInsert().Model(&rows).On("CONFLICT (event_id, endpoint_id) DO NOTHING").Returning("id, endpoint_id, status"),
		ev.EventID, ev.EventID,
	).Scan(ctx, &written)
	if err != nil {
		return fmt.Errorf("write deliveries of %s: %w", ev.EventID, err)
	}
	// A previous run's pending rows may be under way or done by now: only
	// those whose task Redis lost are enqueued again, as the reconciler
	// does, so that none is sent twice.
	var enqueue, earlier []string
	for _, d := range written {
		switch {
		case d.Status != StatusPending:
		case d.Fresh:
			enqueue = append(enqueue, d.ID)
		default:
			earlier = append(earlier, d.ID)
		}
	}
	if len(earlier) > 0 {
		lost, _, err := f.requeue.missing(ctx, earlier, nil)
		if err != nil {
			return fmt.Errorf("fan out %s again: %w", ev.EventID, err)
		}
		enqueue = append(enqueue, lost...)
	}

	// The body is encoded once, here, for every delivery this worker makes
	// of the event; the others load it from the outbox.
	webhook, err := body.Encode(ev.Type, ev.CreatedAt, ev.Data)
	if err != nil {
		return fmt.Errorf("event %s: %w: %w", ev.EventID, err, asynq.SkipRetry)
	}
	f.bodies.Put(ev.EventID, webhook)
	endpointOf, fresh := make(map[string]string, len(written)), make(map[string]bool, len(written))
	for _, d := range written {
		endpointOf[d.ID], fresh[d.ID] = d.EndpointID, d.Fresh
	}
	var payloads, firsts []DeliverPayload
	for _, id := range enqueue {
		p := DeliverPayload{DeliveryID: id, EventID: ev.EventID, EndpointID: endpointOf[id], AppID: ev.AppID, CreatedAt: ev.CreatedAt}
		if fresh[id] && f.deliverer != nil {
			firsts = append(firsts, p)
		} else {
			payloads = append(payloads, p)
		}
	}
	// Fresh deliveries get their first attempt here; those it could not
	// make, and those it made in vain, become tasks.
	var retries []later
	if len(firsts) > 0 {
		var now []DeliverPayload
		now, retries = f.deliverer.first(ctx, firsts, webhook)
		payloads = append(payloads, now...)
		f.metrics.firstAttempts.Add(float64(len(firsts) - len(now)))
	}
	if _, err := f.queue.enqueueDeliveries(ctx, payloads); err != nil {
		return fmt.Errorf("fan out %s: %w", ev.EventID, err)
	}
	if _, err := f.queue.enqueueRetries(ctx, retries); err != nil {
		return fmt.Errorf("fan out %s: %w", ev.EventID, err)
	}
	f.metrics.deliveriesCreated.Add(float64(len(payloads) + len(retries)))
	return nil
}
