package bench

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/hookd/hookd/outbox"
)

// Baseline is what this machine does without hookd's logic: the ceilings
// hookd's rates are read against.
type Baseline struct {
	// AsynqTasksPerSec is the rate of no-op tasks enqueued and processed
	// by asynq servers laid out as hookd's worker (Worker), enqueued by 16
	// goroutines meanwhile.
	AsynqTasksPerSec float64      `json:"asynq_tasks_per_sec"`
	Worker           WorkerLayout `json:"worker"`
	// OutboxRowsPerSec is the rate of outbox rows inserted by
	// outbox.Publish, one row per transaction, from 16 goroutines.
	OutboxRowsPerSec float64 `json:"outbox_rows_per_sec"`
	Tasks            int     `json:"tasks"`
}

// WorkerLayout is how a worker runs asynq: Pollers servers sharing
// Concurrency, polling idle queues every TaskCheckInterval.
type WorkerLayout struct {
	Pollers           int           `json:"pollers"`
	Concurrency       int           `json:"concurrency"`
	TaskCheckInterval time.Duration `json:"task_check_interval_ns"`
}

const baselineWriters = 16

func measureBaseline(ctx context.Context, rdb redis.UniversalClient, dbURL string, n int, w WorkerLayout) (Baseline, error) {
	b := Baseline{Tasks: n, Worker: w}
	var err error
	if b.AsynqTasksPerSec, err = rawAsynq(ctx, rdb, n, w); err != nil {
		return b, err
	}
	if b.OutboxRowsPerSec, err = rawOutbox(ctx, dbURL, n); err != nil {
		return b, err
	}
	return b, nil
}

// rawAsynq enqueues n no-op tasks from baselineWriters goroutines into a
// queue that asynq servers laid out as w drain at the same time, and
// returns tasks/s from the first enqueue to the last task done.
func rawAsynq(ctx context.Context, rdb redis.UniversalClient, n int, w WorkerLayout) (float64, error) {
	const queue = "bench_baseline"
	var done atomic.Int64
	finished := make(chan struct{})
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error {
		if done.Add(1) == int64(n) {
			close(finished)
		}
		return nil
	})
	for i := range w.Pollers {
		concurrency := w.Concurrency / w.Pollers
		if i < w.Concurrency%w.Pollers {
			concurrency++
		}
		srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency:              concurrency,
			Queues:                   map[string]int{queue: 1},
			TaskCheckInterval:        w.TaskCheckInterval,
			DelayedTaskCheckInterval: 100 * time.Millisecond,
			LogLevel:                 asynq.ErrorLevel,
		})
		if err := srv.Start(mux); err != nil {
			return 0, fmt.Errorf("start asynq baseline server: %w", err)
		}
		defer srv.Shutdown()
	}
	client := asynq.NewClientFromRedisClient(rdb)

	payload := make([]byte, 512) // about a delivery task's size
	start := time.Now()
	err := forEach(ctx, n, baselineWriters, func(ctx context.Context, i int) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask("noop", payload, asynq.Queue(queue), asynq.TaskID("noop-"+strconv.Itoa(i))))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("asynq baseline enqueue: %w", err)
	}
	select {
	case <-finished:
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("asynq baseline: %d of %d tasks done after 2 minutes", done.Load(), n)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// rawOutbox inserts n outbox rows with outbox.Publish, one per
// transaction, from baselineWriters goroutines, into a scratch table, and
// returns rows/s.
func rawOutbox(ctx context.Context, dbURL string, n int) (float64, error) {
	sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dbURL)))
	sqldb.SetMaxOpenConns(baselineWriters)
	db := bun.NewDB(sqldb, pgdialect.New())
	defer db.Close()
	// The scratch table is the outbox table itself, before hookd starts;
	// the rows are removed afterwards, so hookd's relay never sees them.
	if _, err := db.ExecContext(ctx, outbox.Schema()); err != nil {
		return 0, fmt.Errorf("create outbox table: %w", err)
	}
	payload := []byte(`{"link_id":"lnk_0000000000000000000000000","code":"abcdefg","url":"https://example.com/some/where","clicked_at":"2026-01-01T00:00:00Z"}`)
	start := time.Now()
	err := forEach(ctx, n, baselineWriters, func(ctx context.Context, _ int) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return outbox.Publish(ctx, tx, &outbox.Message{Tenant: "app_bench", Topic: "bench.raw", Payload: payload})
		})
	})
	if err != nil {
		return 0, fmt.Errorf("outbox baseline insert: %w", err)
	}
	rate := float64(n) / time.Since(start).Seconds()
	// hookd's migrations create the table with more to come; start clean.
	if _, err := db.ExecContext(ctx, `DROP TABLE outbox_events CASCADE; DROP FUNCTION IF EXISTS outbox_events_notify() CASCADE`); err != nil {
		return 0, fmt.Errorf("drop scratch outbox: %w", err)
	}
	return rate, nil
}
