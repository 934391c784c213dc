package tasks

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks/guard"
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
	// Shards is how many delivery queues (each with its overflow) share
	// the deliveries, by endpoint: an endpoint's deliveries stay in one
	// shard. asynq keeps each queue in one Redis Cluster hash slot, so
	// shards spread the deliveries over a Cluster's masters (default
	// DefaultShards: one queue, Deliveries). Every process of a fleet must
	// use the same count.
	Shards int
	// Retry is the delivery retry policy; it sets each delivery's MaxRetry.
	Retry RetryPolicy
	// DeliverTimeout bounds one delivery task; it must exceed the HTTP
	// total timeout, or asynq could run a delivery twice at once
	// (default DefaultDeliverTimeout).
	DeliverTimeout time.Duration
	// Retention keeps a finished fan-out in Redis, so that a duplicate
	// enqueue soon after (a relay that died before its commit, whose batch
	// another relay publishes again) is refused rather than run (default
	// DefaultRetention). A later duplicate runs, harmlessly: the fan-out is
	// idempotent. A retained fan-out holds its event's data.
	Retention time.Duration
}

// WithDefaults returns c with its zero values set to the defaults.
func (c QueueConfig) WithDefaults() QueueConfig {
	c.Events = cmp.Or(c.Events, QueueEvents)
	c.Deliveries = cmp.Or(c.Deliveries, QueueDeliveries)
	c.Overflow = cmp.Or(c.Overflow, c.Deliveries+"_overflow")
	c.Shards = cmp.Or(c.Shards, DefaultShards)
	c.Retry = c.Retry.withDefaults()
	c.DeliverTimeout = cmp.Or(c.DeliverTimeout, DefaultDeliverTimeout)
	c.Retention = cmp.Or(c.Retention, DefaultRetention)
	return c
}

// DefaultShards is one delivery queue: a single Redis gains nothing from
// more, and each queue more costs the workers' dequeue a script when the
// queues are empty.
const DefaultShards = 1

// MaxShards bounds Shards: each shard is two queues every poller checks.
const MaxShards = 64

// Shard returns the shard of endpointID's deliveries, from 0 to Shards-1.
func (c QueueConfig) Shard(endpointID string) int {
	if c.Shards <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(endpointID))
	return int(h.Sum32() % uint32(c.Shards))
}

// DeliveryQueue returns the delivery queue of shard i (i > 0:
// Deliveries-i), or its overflow queue.
func (c QueueConfig) DeliveryQueue(i int, overflow bool) string {
	switch {
	case i == 0 && overflow:
		return c.Overflow
	case i == 0:
		return c.Deliveries
	case overflow:
		return c.Deliveries + "-" + strconv.Itoa(i) + "_overflow"
	}
	return c.Deliveries + "-" + strconv.Itoa(i)
}

// DeliveryQueues returns every delivery queue of the shards: each shard's
// queue, then each shard's overflow.
func (c QueueConfig) DeliveryQueues() []string {
	qs := make([]string, 0, 2*c.Shards)
	for _, overflow := range []bool{false, true} {
		for i := range max(c.Shards, 1) {
			qs = append(qs, c.DeliveryQueue(i, overflow))
		}
	}
	return qs
}

// DefaultDeliverTimeout bounds a delivery task when the application sets
// no timeout: the deliverer's default HTTP timeout and a margin.
const DefaultDeliverTimeout = 30 * time.Second

// DefaultRetention is how long a finished fan-out stays in Redis: far
// longer than a relay takes to publish a dead relay's batch again (seconds),
// and short enough that Redis holds a minute of events' data, not more (at
// 500 events/s of 1 KiB, 30 MB; it was 500 MB at 15 minutes). A duplicate
// coming later runs and finds its event's deliveries written: it sends
// nothing again.
const DefaultRetention = time.Minute

// retryJobTimeout bounds one run of a bulk retry or a recovery; a longer
// one continues, from its saved position, in its next run.
const retryJobTimeout = time.Hour

// fanoutMaxRetry is high enough never to be reached in practice (a retry a
// minute for two months): a fan-out only fails while Postgres or Redis does,
// and an archived fan-out would lose an event whose outbox row is already
// marked published.
const fanoutMaxRetry = 100_000

// Queue enqueues hookd's tasks and is the one place that reads or changes
// asynq's keys besides asynq's own servers. Every task's ID is the ID of
// the row it stands for, so enqueuing twice is harmless: the second is a
// conflict, which Queue treats as success. Queue is the outbox's
// Publisher.
type Queue struct {
	client    *asynq.Client
	inspector *asynq.Inspector
	rdb       redis.Cmdable // the Redis of client, for wakes
	gate      *guard.Gate   // routes deliveries by backlog
	wakeup    *redis.Script
	fifo      fifoScripts
	cfg       QueueConfig
}

// NewQueue returns a Queue enqueuing through an asynq client on rdb. The
// gate routes the deliveries of endpoints with a large backlog to the
// overflow queue.
func NewQueue(rdb redis.UniversalClient, gate *guard.Gate, cfg QueueConfig) *Queue {
	return &Queue{client: asynq.NewClientFromRedisClient(rdb), inspector: asynq.NewInspectorFromRedisClient(rdb), rdb: rdb, gate: gate, wakeup: redis.NewScript(wakeScript), fifo: newFIFOScripts(), cfg: cfg.WithDefaults()}
}

// enqueueParallelism is how many Redis calls of a batch (enqueues, task
// lookups) are in flight at once: each is a round trip, and one at a time
// would make a relay batch, a large fan-out or a bulk retry as slow as
// their sum.
const enqueueParallelism = 16

// Publish enqueues one fan-out task per event, with the event's ID as the
// task ID.
func (q *Queue) Publish(ctx context.Context, batch []outbox.Message) error {
	_, err := q.EnqueueFanouts(ctx, batch)
	return err
}

// encodeFanout returns the payload of m's fan-out task. json.Marshal
// would escape the HTML characters of m's payload (< as \u003c): the
// fan-out encodes the webhook body from this copy, which must say what the
// outbox holds.
func encodeFanout(m outbox.Message) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(FanoutPayload{EventID: m.ID, AppID: m.Tenant, Type: m.Topic, Data: m.Payload, CreatedAt: m.CreatedAt})
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), err
}

// EnqueueFanouts enqueues one fan-out task per event and returns how many
// were new (not already held by Redis).
func (q *Queue) EnqueueFanouts(ctx context.Context, batch []outbox.Message) (int, error) {
	ts := make([]idTask, len(batch))
	for i, m := range batch {
		payload, err := encodeFanout(m)
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
// delivery's ID as the task ID, and returns how many were new (not already
// held by Redis).
func (q *Queue) EnqueueDeliveries(ctx context.Context, ps []DeliverPayload) (int, error) {
	return q.enqueueLater(ctx, ps, nil)
}

// Retry is a delivery whose first attempt failed, to enqueue due after
// Pause.
type Retry struct {
	Payload DeliverPayload
	Pause   time.Duration
}

// EnqueueRetries enqueues the deliveries whose first attempt failed, each
// due after its pause, and returns how many were new.
func (q *Queue) EnqueueRetries(ctx context.Context, rs []Retry) (int, error) {
	ps, pauses := make([]DeliverPayload, len(rs)), make([]time.Duration, len(rs))
	for i, r := range rs {
		ps[i], pauses[i] = r.Payload, r.Pause
	}
	return q.enqueueLater(ctx, ps, pauses)
}

// enqueueLater enqueues one delivery task per payload, due after the
// payload's pause (none when pauses is nil), and returns how many were new.
func (q *Queue) enqueueLater(ctx context.Context, ps []DeliverPayload, pauses []time.Duration) (int, error) {
	counts := map[string]map[string]int{}
	for _, p := range ps {
		if counts[p.AppID] == nil {
			counts[p.AppID] = map[string]int{}
		}
		counts[p.AppID][p.EndpointID]++
	}
	overflowing, err := q.gate.Route(ctx, counts)
	if err != nil {
		return 0, err
	}
	ts := make([]idTask, len(ps))
	for i, p := range ps {
		queue := q.cfg.DeliveryQueue(q.cfg.Shard(p.EndpointID), overflowing[p.EndpointID])
		payload, err := json.Marshal(p)
		if err != nil {
			return 0, fmt.Errorf("encode delivery %s: %w", p.DeliveryID, err)
		}
		opts := []asynq.Option{
			asynq.TaskID(p.DeliveryID),
			asynq.Queue(queue),
			// One spare retry: the deliverer ends a delivery after the
			// policy's last try itself, and asynq must not archive a last
			// try that was only postponed (rate limit, open circuit).
			// Attempts made before the task count.
			asynq.MaxRetry(q.cfg.Retry.MaxRetry() + 1 - p.Attempts),
			asynq.Timeout(q.cfg.DeliverTimeout),
			// No retention: a finished delivery's task would sit in Redis
			// for nothing, since the handler skips succeeded deliveries.
		}
		if pauses != nil {
			opts = append(opts, asynq.ProcessIn(pauses[i]))
		}
		ts[i] = idTask{p.DeliveryID, asynq.NewTask(TypeDeliver, payload, opts...)}
	}
	return q.enqueueAll(ctx, ts)
}

// ArchiveDelivery leaves p's task archived, a dead letter, as asynq leaves
// a delivery task whose last try failed: for a delivery that the fan-out's
// first attempt ended for good (410 Gone, or no retries), which had no
// task. It is enqueued a day off, so that no worker takes it, and archived
// at once.
func (q *Queue) ArchiveDelivery(ctx context.Context, p DeliverPayload) error {
	payload, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode delivery %s: %w", p.DeliveryID, err)
	}
	queue := q.cfg.DeliveryQueue(q.cfg.Shard(p.EndpointID), false)
	t := asynq.NewTask(TypeDeliver, payload, asynq.TaskID(p.DeliveryID), asynq.Queue(queue),
		asynq.MaxRetry(0), asynq.Timeout(q.cfg.DeliverTimeout), asynq.ProcessIn(24*time.Hour))
	if _, err := q.client.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue dead letter %s: %w", p.DeliveryID, err)
	}
	if err := q.inspector.ArchiveTask(queue, p.DeliveryID); err != nil {
		return fmt.Errorf("archive dead letter %s: %w", p.DeliveryID, err)
	}
	return nil
}

// EnqueueRetryJob enqueues the task that performs bulk retry jobID.
func (q *Queue) EnqueueRetryJob(ctx context.Context, jobID string) error {
	payload, err := json.Marshal(RetryJobPayload{JobID: jobID})
	if err != nil {
		return fmt.Errorf("encode bulk retry: %w", err)
	}
	task := asynq.NewTask(TypeRetryDeadLetters, payload, asynq.TaskID(jobID), asynq.Queue(q.cfg.Events),
		asynq.MaxRetry(fanoutMaxRetry), asynq.Timeout(retryJobTimeout), asynq.Retention(q.cfg.Retention))
	if _, err := q.enqueueAll(ctx, []idTask{{jobID, task}}); err != nil {
		return fmt.Errorf("bulk retry %s: %w", jobID, err)
	}
	return nil
}

// EnqueueRecovery enqueues the task that performs recovery id.
func (q *Queue) EnqueueRecovery(ctx context.Context, id string) error {
	payload, err := json.Marshal(RecoveryPayload{RecoveryID: id})
	if err != nil {
		return fmt.Errorf("encode recovery: %w", err)
	}
	task := asynq.NewTask(TypeRecoverEndpoint, payload, asynq.TaskID(id), asynq.Queue(q.cfg.Events),
		asynq.MaxRetry(fanoutMaxRetry), asynq.Timeout(retryJobTimeout), asynq.Retention(q.cfg.Retention))
	if _, err := q.enqueueAll(ctx, []idTask{{id, task}}); err != nil {
		return fmt.Errorf("recovery %s: %w", id, err)
	}
	return nil
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

// FanoutStates returns the asynq state of the fan-out task of each event
// ("" where Redis holds none). It reads the tasks' hashes directly: the
// inspector first checks that the queue is registered, and after a Redis
// restart the queue stays unregistered until a process that never
// registered it enqueues (asynq's client remembers that it did), so every
// lookup would say "queue not found" meanwhile.
func (q *Queue) FanoutStates(ctx context.Context, eventIDs []string) ([]string, error) {
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(eventIDs))
	for i, id := range eventIDs {
		cmds[i] = pipe.HGet(ctx, "asynq:{"+q.cfg.Events+"}:t:"+id, "state")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("look up fan-out tasks: %w", err)
	}
	states := make([]string, len(eventIDs))
	for i, c := range cmds {
		states[i] = c.Val() // "" for redis.Nil
	}
	return states, nil
}

// wakeScript makes a postponed task due now, at the head of its queue: a
// waiter the gate woke holds slots already. It only moves a task asynq
// holds in its retry set (a postponement); it returns 1 when it did, -1
// while the task runs, 2 when it is due already, 0 when it is neither (gone,
// done, archived). It knows asynq's (v0.26) keys, as no asynq API runs a
// task only from that state: Inspector.RunTask would run an archived one
// too.
//
// KEYS: the task's hash, the queue's retry set, its pending list.
// ARGV: the task ID, the time in Unix nanoseconds.
const wakeScript = `
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'active' then return -1 end
if state == 'pending' then return 2 end
if state ~= 'retry' or redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'pending', 'pending_since', ARGV[2])
return 1
`

// wakeTries is how many times a wake that finds its task running tries;
// the pause between tries starts at wakePause and grows fivefold: the
// handler that postponed the task may be returning, and asynq records the
// postponement in its next round trip.
const (
	wakeTries = 4
	wakePause = 2 * time.Millisecond
)

// WakeResult is what a wake found of its task.
type WakeResult int

// Wake results.
const (
	// Woken: the task was postponed and is due now.
	Woken WakeResult = iota
	// Running: the task runs, or is due already: it will use the slots
	// held for it, or give them back, when it asks the gate.
	Running
	// Absent: no task will ask the gate for the slots held for it.
	Absent
)

// Wake makes the postponed delivery task id of queue due now.
func (q *Queue) Wake(ctx context.Context, queue, id string) (WakeResult, error) {
	prefix := "asynq:{" + queue + "}:"
	keys := []string{prefix + "t:" + id, prefix + "retry", prefix + "pending"}
	for try, pause := 0, wakePause; ; try, pause = try+1, pause*5 {
		n, err := q.wakeup.Run(ctx, q.rdb, keys, id, time.Now().UnixNano()).Int()
		switch {
		case err != nil:
			return Absent, fmt.Errorf("wake task %s: %w", id, err)
		case n == 1:
			return Woken, nil
		case n == 2:
			return Running, nil
		case n == 0:
			return Absent, nil
		case try+1 == wakeTries:
			return Running, nil
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return Running, ctx.Err()
		}
	}
}

// TaskRef names a delivery's task: its ID, and the endpoint whose shard
// holds it.
type TaskRef struct {
	DeliveryID, EndpointID string
}

// DeliveryTasks returns the delivery task of each of refs, in the same
// order, nil where Redis holds it in neither queue of its shard, in any
// state. Redis is asked a few times per delivery (asynq has no batch
// lookup), so the lookups run enqueueParallelism at once: a bulk retry of
// thousands waits on round trips, not on Redis.
func (q *Queue) DeliveryTasks(ctx context.Context, refs []TaskRef) ([]*asynq.TaskInfo, error) {
	infos := make([]*asynq.TaskInfo, len(refs))
	err := inParallel(ctx, len(refs), func(_ context.Context, i int) error {
		var err error
		infos[i], err = q.deliveryTask(refs[i])
		return err
	})
	if err != nil {
		return nil, err
	}
	return infos, nil
}

// deliveryTask returns the delivery task of ref in either queue of its
// shard, whatever its state, or nil when Redis does not hold it.
func (q *Queue) deliveryTask(ref TaskRef) (*asynq.TaskInfo, error) {
	shard := q.cfg.Shard(ref.EndpointID)
	for _, overflow := range []bool{false, true} {
		info, err := q.inspector.GetTaskInfo(q.cfg.DeliveryQueue(shard, overflow), ref.DeliveryID)
		switch {
		case err == nil:
			return info, nil
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		default:
			return nil, fmt.Errorf("look up task %s: %w", ref.DeliveryID, err)
		}
	}
	return nil, nil
}

// DeleteTasks deletes tasks (nil entries are skipped), whatever their
// state but active; one already gone is no error.
func (q *Queue) DeleteTasks(ctx context.Context, tasks []*asynq.TaskInfo) error {
	return inParallel(ctx, len(tasks), func(_ context.Context, i int) error {
		t := tasks[i]
		if t == nil {
			return nil
		}
		if err := q.inspector.DeleteTask(t.Queue, t.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return fmt.Errorf("delete task %s: %w", t.ID, err)
		}
		return nil
	})
}
