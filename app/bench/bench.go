// Package bench is hookd's load generator. It runs the real hookd binary
// (every role in one process) against real Postgres and Redis, publishes
// events through the API and through link clicks, receives the signed
// webhooks on a local receiver and reports ingest rates, end-to-end
// deliveries per second, commit-to-receipt latency, hookd's CPU time and
// peak RSS, and what each delivery cost hookd, Postgres and Redis (Redis
// commands, Postgres transactions and WAL bytes, CPU time). In the same
// run it measures this machine's ceilings (raw Asynq enqueue+process of
// no-op tasks, raw Postgres inserts of outbox rows) so that every rate
// reads as a ratio.
//
// It creates its own Postgres schema and drops it afterwards, and flushes
// its Redis database before and after the run: point it at a database
// nothing else uses.
package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/hookd/hookd/app/redisconn"
)

// Config describes a bench run. Zero values take the defaults.
type Config struct {
	// Binary is the hookd executable to run (default: this executable).
	Binary string
	// DatabaseURL is the Postgres database the run gets a schema in.
	DatabaseURL string
	// RedisURL names the Redis database the run flushes and uses.
	RedisURL string
	// RedisClusterAddrs, when set, runs hookd and the baselines against a
	// Redis Cluster instead (its every master is flushed); RedisURL is
	// then not used.
	RedisClusterAddrs []string
	// Scenarios to run, in order (default Standard()).
	Scenarios []string
	// Events is the event count of the throughput scenarios (default 10000).
	Events int
	// Rate is the offered events/s of the steady scenarios (default 500).
	Rate float64
	// Duration is how long the steady scenarios offer Rate (default 10s).
	Duration time.Duration
	// Soak is how long the soak scenario runs (default 5m).
	Soak time.Duration
	// BaselineTasks is how many no-op tasks and outbox rows the baselines
	// process (default 20000).
	BaselineTasks int
	// Env is added to hookd's environment (HOOKD_*=... settings to try).
	Env []string
	// Worker is how hookd's worker runs asynq; the Asynq baseline runs so
	// too (default: 4 pollers, concurrency 50, 10ms check interval).
	Worker WorkerLayout
	// ProfileDir, when set, receives a CPU and a heap profile of hookd
	// taken during the fanout10 scenario (hookd then runs with
	// HOOKD_PPROF=true).
	ProfileDir string
	// DeliveryTimeout is hookd's HOOKD_DELIVERY_TIMEOUT in the bench
	// (default 3s, shorter than hookd's own default so that the noisy
	// scenario's hanging endpoints do not make the run long).
	DeliveryTimeout time.Duration
	// StatsSettle is how long a scenario waits after its load before it
	// reads Postgres' transaction count: a backend that goes idle
	// publishes its last second of counts 10s late (default 11s).
	StatsSettle time.Duration
	// NoisyPhase is how long app A sends alone, and then next to app B, in
	// the noisy scenario (default 15s each).
	NoisyPhase time.Duration
	// NoisyRate is app A's offered events/s in the noisy scenario
	// (default 50).
	NoisyRate float64
	// NoisyBacklog is how many events app B has queued, to its hanging
	// endpoints, before app A's second phase (default 2000).
	NoisyBacklog int
	// MemoryEndpoints is how many endpoints the memory scenario's large
	// event fans out to (default 200).
	MemoryEndpoints int
}

// Defaults of the costs' and of the noisy and memory scenarios' settings.
const (
	deliveryTimeoutDefault = 3 * time.Second
	statsSettleDefault     = 11 * time.Second
	noisyPhaseDefault      = 15 * time.Second
	noisyRateDefault       = 50
	noisyBacklogDefault    = 2000
	memoryEndpointsDefault = 200
)

// Scenario names.
const (
	ScenarioBaseline = "baseline"
	ScenarioIdle     = "idle"
	ScenarioSteady   = "steady"
	ScenarioBurst    = "burst"
	ScenarioClicks   = "clicks"
	ScenarioFanout   = "fanout10"
	ScenarioFailing  = "failing"
	ScenarioFIFO     = "fifo"
	ScenarioMemory   = "memory"
	ScenarioNoisy    = "noisy"
	ScenarioSoak     = "soak"
)

// Standard returns the scenarios `go tool task bench` runs. Noisy comes
// last: the hanging endpoints' backlog it leaves takes a while to drain.
func Standard() []string {
	return []string{ScenarioBaseline, ScenarioIdle, ScenarioSteady, ScenarioBurst, ScenarioClicks, ScenarioFanout, ScenarioFailing,
		ScenarioFIFO, ScenarioMemory, ScenarioNoisy}
}

// All returns every scenario name.
func All() []string { return append(Standard(), ScenarioSoak) }

func (c Config) withDefaults() (Config, error) {
	if c.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("find the hookd binary: %w", err)
		}
		c.Binary = exe
	}
	c.DatabaseURL = cmp.Or(c.DatabaseURL, "postgres://hookd:hookd@127.0.0.1:5432/hookd?sslmode=disable")
	c.RedisURL = cmp.Or(c.RedisURL, "redis://127.0.0.1:6379/15")
	if len(c.Scenarios) == 0 {
		c.Scenarios = Standard()
	}
	for _, s := range c.Scenarios {
		if !slices.Contains(All(), s) {
			return c, fmt.Errorf("unknown scenario %q (want %s)", s, strings.Join(All(), ", "))
		}
	}
	c.Events = cmp.Or(c.Events, 10000)
	c.Rate = cmp.Or(c.Rate, 500)
	c.Duration = cmp.Or(c.Duration, 10*time.Second)
	c.Soak = cmp.Or(c.Soak, 5*time.Minute)
	c.BaselineTasks = cmp.Or(c.BaselineTasks, 20000)
	c.Worker.Pollers = cmp.Or(c.Worker.Pollers, 4)
	c.Worker.Concurrency = cmp.Or(c.Worker.Concurrency, 50)
	c.Worker.TaskCheckInterval = cmp.Or(c.Worker.TaskCheckInterval, 10*time.Millisecond)
	c.DeliveryTimeout = cmp.Or(c.DeliveryTimeout, deliveryTimeoutDefault)
	c.StatsSettle = cmp.Or(c.StatsSettle, statsSettleDefault)
	c.NoisyPhase = cmp.Or(c.NoisyPhase, noisyPhaseDefault)
	c.NoisyRate = cmp.Or(c.NoisyRate, noisyRateDefault)
	c.NoisyBacklog = cmp.Or(c.NoisyBacklog, noisyBacklogDefault)
	c.MemoryEndpoints = cmp.Or(c.MemoryEndpoints, memoryEndpointsDefault)
	return c, nil
}

// Report is what a run measured.
type Report struct {
	Started  time.Time `json:"started"`
	Machine  Machine   `json:"machine"`
	Baseline *Baseline `json:"baseline,omitempty"`
	Results  []Result  `json:"results"`
}

// Run runs the configured scenarios and returns their report. It writes
// progress to log.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now().UTC(), Machine: describeMachine()}

	rdb, err := openRedis(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	if err := flush(ctx, rdb); err != nil {
		return nil, err
	}
	defer flush(context.WithoutCancel(ctx), rdb)

	schema := "bench_" + strings.ToLower(rand.Text()[:12])
	dbURL, drop, err := createSchema(ctx, cfg.DatabaseURL, schema)
	if err != nil {
		return nil, err
	}
	defer drop()

	if slices.Contains(cfg.Scenarios, ScenarioBaseline) {
		log.InfoContext(ctx, "measuring baselines", slog.Int("tasks", cfg.BaselineTasks))
		b, err := measureBaseline(ctx, rdb, dbURL, cfg.BaselineTasks, cfg.Worker)
		if err != nil {
			return nil, err
		}
		rep.Baseline = &b
	}

	rest := slices.DeleteFunc(slices.Clone(cfg.Scenarios), func(s string) bool { return s == ScenarioBaseline })
	if len(rest) == 0 {
		return rep, nil
	}
	recv, err := startReceiver(cfg.DeliveryTimeout + hangMarginDefault)
	if err != nil {
		return nil, err
	}
	defer recv.Close()
	env := []string{
		"HOOKD_DATABASE_URL=" + dbURL,
		"HOOKD_DELIVERY_TIMEOUT=" + cfg.DeliveryTimeout.String(),
	}
	if len(cfg.RedisClusterAddrs) > 0 {
		env = append(env, "HOOKD_REDIS_CLUSTER_ADDRS="+strings.Join(cfg.RedisClusterAddrs, ","))
	} else {
		env = append(env, "HOOKD_REDIS_URL="+cfg.RedisURL)
	}
	if cfg.ProfileDir != "" {
		// hookd serves /debug/pprof/ only when asked to.
		env = append(env, "HOOKD_PPROF=true")
	}
	h, err := startHookd(ctx, cfg.Binary, append(env, cfg.Env...), log)
	if err != nil {
		return nil, err
	}
	defer h.Stop()

	db := bun.NewDB(sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dbURL))), pgdialect.New())
	defer db.Close()
	m, err := newMeter(ctx, rdb, db, h.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, db: db, rdb: rdb, meter: m, hookd: h, recv: recv, log: log, baseline: rep.Baseline}
	for i, name := range rest {
		log.InfoContext(ctx, "running scenario", slog.String("scenario", name))
		r.last = i == len(rest)-1
		res, err := r.run(ctx, name, fmt.Sprintf("s%d", i))
		if err != nil {
			return rep, fmt.Errorf("scenario %s: %w", name, err)
		}
		rep.Results = append(rep.Results, res)
	}
	if err := h.Stop(); err != nil {
		return rep, fmt.Errorf("hookd did not stop cleanly: %w", err)
	}
	return rep, nil
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*Report
		Targets []Target `json:"targets"`
	}{r, r.Targets()})
}

// redisPoolSize is the pool of the bench's own Redis client (per node of
// a Cluster): the baseline's asynq servers share it.
const redisPoolSize = 64

// openRedis connects to the bench's Redis, as hookd does:
// cfg.RedisURL's database, or cfg.RedisClusterAddrs' Cluster.
func openRedis(ctx context.Context, cfg Config) (redis.UniversalClient, error) {
	return redisconn.Config{URL: cfg.RedisURL, ClusterAddrs: cfg.RedisClusterAddrs}.Open(ctx, redisPoolSize)
}

// eachNode calls fn with a client of each Redis server the bench uses:
// the one server, or every master of a Cluster (and, with replicas, every
// node: replicas spend CPU on what they replicate).
func eachNode(ctx context.Context, rdb redis.UniversalClient, replicas bool, fn func(ctx context.Context, c *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		if replicas {
			return c.ForEachShard(ctx, fn)
		}
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("unsupported redis client %T", rdb)
}

// flush empties the bench's Redis database, or every master of its Cluster.
func flush(ctx context.Context, rdb redis.UniversalClient) error {
	err := eachNode(ctx, rdb, false, func(ctx context.Context, c *redis.Client) error { return c.FlushDB(ctx).Err() })
	if err != nil {
		return fmt.Errorf("flush redis: %w", err)
	}
	return nil
}

// createSchema creates schema in the database and returns a URL whose
// connections use it, and a function that drops it.
func createSchema(ctx context.Context, rawURL, schema string) (string, func(), error) {
	admin := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(rawURL)))
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA "`+schema+`"`); err != nil {
		_ = admin.Close()
		return "", nil, fmt.Errorf("create schema %s (is Postgres up? run `go tool task services`): %w", schema, err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_, _ = admin.ExecContext(ctx, `DROP SCHEMA "`+schema+`" CASCADE`)
		_ = admin.Close()
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		drop()
		return "", nil, fmt.Errorf("parse database url: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), drop, nil
}

// errIncomplete marks a scenario whose deliveries did not all arrive.
var errIncomplete = errors.New("deliveries missing")
