package tasks

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
)

// WorkerConfig tunes a Worker. Zero values take the defaults.
type WorkerConfig struct {
	// Queue names the queues to serve and carries the retry policy.
	Queue QueueConfig
	// Concurrency is the number of tasks processed at once (default 50;
	// deliveries mostly wait on the network).
	Concurrency int
	// Pollers is how many asynq servers share Concurrency (default 4).
	// An asynq server dequeues one task per Redis round trip, in one loop,
	// so a single one caps a worker at about one task per round trip, and
	// a round trip slows down with the machine's load; several also cut
	// the wait of a task enqueued into an idle queue, since each polls on
	// its own.
	Pollers int
	// TaskCheckInterval is how long an idle poller waits before looking at
	// its queues again (default 10ms; asynq sleeps between half and 1.5
	// times this, and its own default of 1s would add up to a second per
	// hop). Each idle poller costs Redis one dequeue script per wait.
	TaskCheckInterval time.Duration
	// DelayedTaskCheckInterval is how often due retries are moved to their
	// queue (default 100ms).
	DelayedTaskCheckInterval time.Duration
	// ShutdownTimeout is how long in-flight tasks may run after shutdown
	// begins before they are handed back to the queue (default 20s).
	ShutdownTimeout time.Duration
}

// Worker serves fan-out and delivery tasks.
type Worker struct {
	srvs []*asynq.Server
	mux  *asynq.ServeMux
}

// NewWorker returns a Worker processing tasks from rdb's queues. It does not
// close rdb.
func NewWorker(rdb redis.UniversalClient, fanout *Fanout, deliverer *Deliverer, deadLetters *DeadLetters, log *slog.Logger, cfg WorkerConfig) *Worker {
	cfg.Queue = cfg.Queue.withDefaults()
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 50)
	cfg.TaskCheckInterval = cmp.Or(cfg.TaskCheckInterval, 10*time.Millisecond)
	cfg.DelayedTaskCheckInterval = cmp.Or(cfg.DelayedTaskCheckInterval, 100*time.Millisecond)
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, 20*time.Second)
	cfg.Pollers = min(cmp.Or(cfg.Pollers, 4), cfg.Concurrency)

	acfg := asynq.Config{
		// Fan-outs are short and gate every delivery of an event: prefer them.
		// Fan-outs first (they are cheap and feed the rest), then fresh
		// deliveries, then the overflow of endpoints with a large backlog.
		Queues:                   map[string]int{cfg.Queue.Events: 6, cfg.Queue.Deliveries: 3, cfg.Queue.Overflow: 1},
		RetryDelayFunc:           cfg.Queue.Retry.retryDelay,
		IsFailure:                isFailure,
		TaskCheckInterval:        cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		Logger:                   asynqLogger{log},
		LogLevel:                 asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			if !isFailure(err) {
				return // postponed, not failed
			}
			id, _ := asynq.GetTaskID(ctx)
			attrs := []any{slog.String("task_type", t.Type()), slog.String("task_id", id), slog.Any("err", err)}
			if retriesExhausted(ctx) || errors.Is(err, asynq.SkipRetry) {
				log.WarnContext(ctx, "task dead-lettered", attrs...)
				if t.Type() == TypeDeliver {
					if err := deliverer.deadLettered(ctx, t, err); err != nil {
						log.ErrorContext(ctx, "mirror dead letter in postgres", slog.String("task_id", id), slog.Any("err", err))
					}
				}
				return
			}
			log.InfoContext(ctx, "task failed; will retry", attrs...)
		}),
	}
	w := &Worker{mux: asynq.NewServeMux()}
	w.mux.Handle(TypeFanout, fanout)
	w.mux.Handle(TypeDeliver, deliverer)
	w.mux.Handle(TypeRetryDeadLetters, deadLetters)
	for i := range cfg.Pollers {
		c := acfg
		// Concurrency split as evenly as it goes: 50 over 4 is 13+13+12+12.
		c.Concurrency = cfg.Concurrency / cfg.Pollers
		if i < cfg.Concurrency%cfg.Pollers {
			c.Concurrency++
		}
		w.srvs = append(w.srvs, asynq.NewServerFromRedisClient(rdb, c))
	}
	return w
}

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
