package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hookd/hookd/app/bench"
	"github.com/hookd/hookd/app/redisconn"
)

// benchCommand runs "hookd bench": the load generator.
func benchCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("hookd bench", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: hookd bench [flags]

Runs this hookd binary (every role in one process) against real Postgres
and Redis and a local receiver, and reports ingest and delivery rates,
commit-to-receipt latency, hookd's CPU time and peak RSS, next to this
machine's raw Asynq and Postgres rates measured in the same run, and what
each delivery cost hookd, Postgres and Redis: Redis commands, Postgres
transactions and WAL bytes, CPU time.

It works in a schema of its own (dropped afterwards) and FLUSHES the Redis
database it is given (or every master of the Redis Cluster), before and
after: give it a Redis nothing else uses (its command counts, CPU and
memory are measured too). hookd inherits the
environment, so HOOKD_* settings can be tried; its delivery timeout is
--delivery-timeout.

Scenarios: %s (default: all but soak).

Flags:
`, strings.Join(bench.All(), ", "))
		fs.PrintDefaults()
	}
	var cfg bench.Config
	fs.StringVar(&cfg.DatabaseURL, "database-url", envOr(getenv, "HOOKD_DATABASE_URL"), "Postgres URL to create the bench schema in (HOOKD_DATABASE_URL)")
	fs.StringVar(&cfg.RedisURL, "redis-url", "redis://127.0.0.1:6379/15", "Redis URL of a database the bench may flush")
	fs.Func("redis-cluster-addrs", "comma-separated host:port of a Redis Cluster the bench may flush (every master), instead of --redis-url; set HOOKD_QUEUE_SHARDS to spread the deliveries", func(v string) error {
		addrs, err := redisconn.ParseAddrs(v)
		cfg.RedisClusterAddrs = addrs
		return err
	})
	scenarios := fs.String("scenarios", strings.Join(bench.Standard(), ","), "comma-separated scenarios to run, in order")
	fs.IntVar(&cfg.Events, "events", 10000, "events of the burst scenario (clicks: half, fanout10: a fifth)")
	fs.Float64Var(&cfg.Rate, "rate", 500, "offered events/s of the steady and soak scenarios (failing: a fifth)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long the steady and failing scenarios offer their rate")
	fs.DurationVar(&cfg.Soak, "soak", 5*time.Minute, "how long the soak scenario runs")
	fs.IntVar(&cfg.BaselineTasks, "baseline", 20000, "no-op tasks and outbox rows of the baselines")
	fs.StringVar(&cfg.ProfileDir, "profile", "", "write CPU and heap profiles of hookd, taken during fanout10, to this directory")
	deliveryTimeout := 3 * time.Second
	if v := getenv("HOOKD_DELIVERY_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("bench: invalid HOOKD_DELIVERY_TIMEOUT=%q: %w", v, err)
		}
		deliveryTimeout = d
	}
	fs.DurationVar(&cfg.DeliveryTimeout, "delivery-timeout", deliveryTimeout, "hookd's delivery timeout in the bench (HOOKD_DELIVERY_TIMEOUT if set); the noisy scenario's hanging endpoints hold each request 2s longer")
	fs.DurationVar(&cfg.StatsSettle, "stats-settle", 11*time.Second, "wait after each scenario before reading Postgres' transaction count, which an idle backend publishes up to 10s late")
	fs.DurationVar(&cfg.NoisyPhase, "noisy-phase", 15*time.Second, "how long app A sends alone, and then next to app B, in the noisy scenario")
	fs.Float64Var(&cfg.NoisyRate, "noisy-rate", 50, "app A's offered events/s in the noisy scenario")
	fs.IntVar(&cfg.NoisyBacklog, "noisy-backlog", 2000, "events queued for app B's 20 hanging endpoints before app A's second phase")
	fs.IntVar(&cfg.MemoryEndpoints, "memory-endpoints", 200, "endpoints the memory scenario's 250 KiB event fans out to")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	cfg.Scenarios = strings.Split(*scenarios, ",")
	// The Asynq baseline runs as hookd's worker will: the same pollers,
	// concurrency and check interval (HOOKD_* from the environment).
	hcfg, err := ParseConfig(getenv)
	if err != nil {
		return fmt.Errorf("bench: hookd's configuration: %w", err)
	}
	cfg.Worker = bench.WorkerLayout{Pollers: hcfg.Pollers, Concurrency: hcfg.Concurrency, TaskCheckInterval: hcfg.TaskCheckInterval}

	rep, err := bench.Run(ctx, cfg, log)
	if rep != nil {
		if werr := rep.WriteTable(stdout); werr != nil {
			err = errors.Join(err, werr)
		}
		if *jsonOut != "" {
			f, ferr := os.Create(*jsonOut)
			if ferr == nil {
				ferr = errors.Join(rep.WriteJSON(f), f.Close())
			}
			err = errors.Join(err, ferr)
		}
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}
