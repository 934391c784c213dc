package tasks

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/hookd/hookd/outbox"
)

// QueueConfig names the queues and sets the options of enqueued tasks.
// Zero values take the defaults.
type QueueConfig struct {
	// Events is the fan-out queue (default "events").
	Events string
	// Deliveries is the delivery queue (default "deliveries").
	Deliveries string
	// Overflow holds the deliveries of endpoints with a large backlog
	// (default Deliveries + "_overflow").
	Overflow string
	// Retry is the delivery retry policy; it sets each delivery's MaxRetry.
	Retry RetryPolicy
	// DeliverTimeout bounds one delivery task; it must exceed the HTTP
	// total timeout, or asynq could run a delivery twice at once
	// (default 30s).
	DeliverTimeout time.Duration
	// Retention keeps a finished fan-out's ID in Redis, so that a late
	// duplicate enqueue is refused rather than run (default 24h).
	Retention time.Duration
}

func (c QueueConfig) withDefaults() QueueConfig {
	c.Events = cmp.Or(c.Events, QueueEvents)
	c.Deliveries = cmp.Or(c.Deliveries, QueueDeliveries)
	c.Overflow = cmp.Or(c.Overflow, c.Deliveries+"_overflow")
	c.Retry = c.Retry.withDefaults()
	c.DeliverTimeout = cmp.Or(c.DeliverTimeout, 30*time.Second)
	c.Retention = cmp.Or(c.Retention, 24*time.Hour)
	return c
}

// fanoutMaxRetry is high enough never to be reached in practice (a retry a
// minute for two months): a fan-out only fails while Postgres or Redis does,
// and an archived fan-out would lose an event whose outbox row is already
// marked published.
const fanoutMaxRetry = 100_000

// Queue enqueues hookd's tasks. Every task's ID is the ID of the row it
// stands for, so enqueuing twice is harmless: the second is a conflict,
// which Queue treats as success. Queue is the outbox's Publisher.
type Queue struct {
	client *asynq.Client
	fair   *Fairness
	cfg    QueueConfig
}

// NewQueue returns a Queue enqueuing through client.
func NewQueue(client *asynq.Client, fair *Fairness, cfg QueueConfig) *Queue {
	return &Queue{client: client, fair: fair, cfg: cfg.withDefaults()}
}

// enqueueParallelism is how many Redis calls of a batch (enqueues, task
// lookups) are in flight at once: each is a round trip, and one at a time
// would make a relay batch, a large fan-out or a bulk retry as slow as
// their sum.
const enqueueParallelism = 16

// Publish enqueues one fan-out task per event, with the event's ID as the
// task ID.
func (q *Queue) Publish(ctx context.Context, batch []outbox.Message) error {
	_, err := q.enqueueFanouts(ctx, batch)
	return err
}

// enqueueFanouts enqueues one fan-out task per event and returns how many
// were new (not already held by Redis).
func (q *Queue) enqueueFanouts(ctx context.Context, batch []outbox.Message) (int, error) {
	ts := make([]idTask, len(batch))
	for i, m := range batch {
		payload, err := json.Marshal(FanoutPayload{
			EventID:   m.ID,
			AppID:     m.Tenant,
			Type:      m.Topic,
			Data:      m.Payload,
			CreatedAt: m.CreatedAt,
		})
		if err != nil {
			return 0, fmt.Errorf("encode event %s: %w", m.ID, err)
		}
		ts[i] = idTask{m.ID, asynq.NewTask(TypeFanout, payload,
			asynq.TaskID(m.ID),
			asynq.Queue(q.cfg.Events),
			asynq.MaxRetry(fanoutMaxRetry),
			asynq.Retention(q.cfg.Retention),
		)}
	}
	return q.enqueueAll(ctx, ts)
}

// EnqueueDeliveries enqueues one delivery task per payload, with the
// delivery's ID as the task ID.
func (q *Queue) EnqueueDeliveries(ctx context.Context, ps []DeliverPayload) error {
	_, err := q.enqueueDeliveries(ctx, ps)
	return err
}

// enqueueDeliveries enqueues one delivery task per payload and returns how
// many were new (not already held by Redis).
func (q *Queue) enqueueDeliveries(ctx context.Context, ps []DeliverPayload) (int, error) {
	counts := map[string]int{}
	for _, p := range ps {
		counts[p.EndpointID]++
	}
	overflowing, err := q.fair.Overflowing(ctx, counts)
	if err != nil {
		return 0, err
	}
	ts := make([]idTask, len(ps))
	for i, p := range ps {
		queue := q.cfg.Deliveries
		if overflowing[p.EndpointID] {
			queue = q.cfg.Overflow
		}
		payload, err := json.Marshal(p)
		if err != nil {
			return 0, fmt.Errorf("encode delivery %s: %w", p.DeliveryID, err)
		}
		ts[i] = idTask{p.DeliveryID, asynq.NewTask(TypeDeliver, payload,
			asynq.TaskID(p.DeliveryID),
			asynq.Queue(queue),
			// One spare retry: the deliverer ends a delivery after the
			// policy's last try itself, and asynq must not archive a last
			// try that was only postponed (rate limit, open circuit).
			asynq.MaxRetry(q.cfg.Retry.MaxRetry()+1),
			asynq.Timeout(q.cfg.DeliverTimeout),
			// No retention: a finished delivery's body would sit in Redis
			// for nothing, since the handler skips succeeded deliveries.
		)}
	}
	return q.enqueueAll(ctx, ts)
}

// idTask is a task and its ID, for errors.
type idTask struct {
	id   string
	task *asynq.Task
}

// enqueueAll enqueues ts, up to enqueueParallelism at once, and returns
// how many were new.
func (q *Queue) enqueueAll(ctx context.Context, ts []idTask) (int, error) {
	var created atomic.Int64
	err := inParallel(ctx, len(ts), func(ctx context.Context, i int) error {
		t := ts[i]
		switch _, err := q.client.EnqueueContext(ctx, t.task); {
		case errors.Is(err, asynq.ErrTaskIDConflict):
			// Already enqueued, or done within the retention period.
		case err != nil:
			return fmt.Errorf("enqueue %s %s: %w", t.task.Type(), t.id, err)
		default:
			created.Add(1)
		}
		return nil
	})
	return int(created.Load()), err
}

// inParallel calls fn for each i in [0, n), up to enqueueParallelism at
// once: the Redis round trips of a batch overlap. After the first error,
// calls not yet started are skipped and ctx is cancelled; that error is
// returned.
func inParallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(enqueueParallelism)
	for i := range n {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fn(ctx, i)
		})
	}
	return g.Wait()
}
