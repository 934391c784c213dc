// Package worker runs hookd's task handlers on asynq servers: fan-outs,
// deliveries and bulk retries of dead letters, with the retry policy and
// the postponements of the task contract, and mirrors each delivery that
// asynq dead-letters in Postgres.
//
// It knows the handlers only as asynq.Handlers and the dead-letter mirror
// as a function: it imports the task contract and asynq, nothing else of
// hookd.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/hookd/hookd/tasks"
)

// Defaults of Config.
const (
	DefaultConcurrency              = 50
	DefaultPollers                  = 4
	DefaultTaskCheckInterval        = 10 * time.Millisecond
	DefaultDelayedTaskCheckInterval = 100 * time.Millisecond
	DefaultShutdownTimeout          = 20 * time.Second
)

// Config tunes a Worker. Zero values take the defaults.
type Config struct {
	// Queue names the queues to serve and carries the retry policy.
	Queue tasks.QueueConfig
	// Concurrency is the number of tasks processed at once (default
	// DefaultConcurrency; deliveries mostly wait on the network).
	Concurrency int
	// Pollers is how many asynq servers share Concurrency (default
	// DefaultPollers).
	// An asynq server dequeues one task per Redis round trip, in one loop,
	// so a single one caps a worker at about one task per round trip, and
	// a round trip slows down with the machine's load; several also cut
	// the wait of a task enqueued into an idle queue, since each polls on
	// its own.
	Pollers int
	// TaskCheckInterval is how long an idle poller waits before looking at
	// its queues again (default DefaultTaskCheckInterval; asynq sleeps between half and 1.5
	// times this, and its own default of 1s would add up to a second per
	// hop). Each idle poller costs Redis one dequeue script per wait.
	TaskCheckInterval time.Duration
	// DelayedTaskCheckInterval is how often due retries are moved to their
	// queue (default DefaultDelayedTaskCheckInterval).
	DelayedTaskCheckInterval time.Duration
	// ShutdownTimeout is how long in-flight tasks may run after shutdown
	// begins before they are handed back to the queue (default
	// DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
}

func (c Config) withDefaults() Config {
	c.Queue = c.Queue.WithDefaults()
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.TaskCheckInterval = cmp.Or(c.TaskCheckInterval, DefaultTaskCheckInterval)
	c.DelayedTaskCheckInterval = cmp.Or(c.DelayedTaskCheckInterval, DefaultDelayedTaskCheckInterval)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.Pollers = min(cmp.Or(c.Pollers, DefaultPollers), c.Concurrency)
	return c
}

// Handlers are the handlers of the worker's task types.
type Handlers struct {
	// Fanout handles tasks.TypeFanout.
	Fanout asynq.Handler
	// Deliver handles tasks.TypeDeliver.
	Deliver asynq.Handler
	// FIFO handles tasks.TypeFIFO.
	FIFO asynq.Handler
	// RetryDeadLetters handles tasks.TypeRetryDeadLetters.
	RetryDeadLetters asynq.Handler
	// RecoverEndpoint handles tasks.TypeRecoverEndpoint.
	RecoverEndpoint asynq.Handler
	// DeadLettered mirrors in Postgres a delivery task asynq is about to
	// archive, for the failure cause.
	DeadLettered func(ctx context.Context, t *asynq.Task, cause error) error
}

// Worker serves fan-out and delivery tasks.
type Worker struct {
	srvs []*asynq.Server
	mux  *asynq.ServeMux
}

// New returns a Worker processing tasks from rdb's queues with h. It does
// not close rdb.
func New(rdb redis.UniversalClient, h Handlers, log *slog.Logger, cfg Config) *Worker {
	cfg = cfg.withDefaults()

	acfg := asynq.Config{
		// Fan-outs are short and gate every delivery of an event: prefer them.
		// Fan-outs first (they are cheap and feed the rest), then fresh
		// deliveries, then the overflow of endpoints with a large backlog.
		Queues:                   queues(cfg.Queue),
		RetryDelayFunc:           cfg.Queue.Retry.RetryDelay,
		IsFailure:                tasks.IsFailure,
		TaskCheckInterval:        cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		Logger:                   asynqLogger{log},
		LogLevel:                 asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			if !tasks.IsFailure(err) {
				return // postponed, not failed
			}
			id, _ := asynq.GetTaskID(ctx)
			attrs := []any{slog.String("task_type", t.Type()), slog.String("task_id", id), slog.Any("err", err)}
			if retriesExhausted(ctx) || errors.Is(err, asynq.SkipRetry) {
				log.WarnContext(ctx, "task dead-lettered", attrs...)
				if t.Type() == tasks.TypeDeliver && h.DeadLettered != nil {
					if err := h.DeadLettered(ctx, t, err); err != nil {
						log.ErrorContext(ctx, "mirror dead letter in postgres", slog.String("task_id", id), slog.Any("err", err))
					}
				}
				return
			}
			log.InfoContext(ctx, "task failed; will retry", attrs...)
		}),
	}
	w := &Worker{mux: asynq.NewServeMux()}
	w.mux.Handle(tasks.TypeFanout, h.Fanout)
	w.mux.Handle(tasks.TypeDeliver, h.Deliver)
	w.mux.Handle(tasks.TypeFIFO, h.FIFO)
	w.mux.Handle(tasks.TypeRetryDeadLetters, h.RetryDeadLetters)
	if h.RecoverEndpoint != nil {
		w.mux.Handle(tasks.TypeRecoverEndpoint, h.RecoverEndpoint)
	}
	for i := range cfg.Pollers {
		c := acfg
		// Concurrency split as evenly as it goes: 50 over 4 is 13+13+12+12.
		c.Concurrency = cfg.Concurrency / cfg.Pollers
		if i < cfg.Concurrency%cfg.Pollers {
			c.Concurrency++
		}
		if i > 0 {
			// One forwarder per process is enough: each pass moves every
			// due task of every queue. The others' passes cost Redis a
			// script per queue and set each time, for nothing.
			c.DelayedTaskCheckInterval = spareForwardInterval
		}
		w.srvs = append(w.srvs, asynq.NewServerFromRedisClient(rdb, c))
	}
	return w
}

// queues weighs the queues the pollers serve: the fan-outs 6, each
// shard's deliveries 3 and its overflow 1; the fan-outs' weight grows with
// the shards, so that they keep their share of the dequeues.
func queues(c tasks.QueueConfig) map[string]int {
	qs := map[string]int{c.Events: 6 * c.Shards}
	for i := range c.Shards {
		qs[c.DeliveryQueue(i, false)] = 3
		qs[c.DeliveryQueue(i, true)] = 1
	}
	return qs
}

// spareForwardInterval is how often the pollers but the first move due
// tasks to their queues: rarely, as a spare should the first stall.
const spareForwardInterval = time.Minute

// Run processes tasks until ctx is done, then stops taking new ones and
// waits up to ShutdownTimeout for those in flight.
func (w *Worker) Run(ctx context.Context) error {
	for i, srv := range w.srvs {
		if err := srv.Start(w.mux); err != nil {
			for _, started := range w.srvs[:i] {
				started.Shutdown()
			}
			return fmt.Errorf("start worker: %w", err)
		}
	}
	<-ctx.Done()
	var wg sync.WaitGroup
	for _, srv := range w.srvs {
		wg.Go(srv.Shutdown)
	}
	wg.Wait()
	return nil
}

// retriesExhausted reports whether asynq archives the running task when it
// fails now.
func retriesExhausted(ctx context.Context) bool {
	n, ok1 := asynq.GetRetryCount(ctx)
	limit, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && n >= limit
}
