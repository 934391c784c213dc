package bench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"
)

// Cost is what a scenario's deliveries cost hookd, Postgres and Redis
// together, in total and per delivery, so that it reads the same whatever
// the machine's speed that day. It covers the scenario's load, from the
// first event published to hookd having recorded the last delivery, not
// its setup.
//
// Redis and Postgres are shared with anything else that uses them: the
// bench's Redis should be its own (then only the bench's few INFO calls
// add to hookd's), but other sessions on the same Postgres add their
// transactions, WAL and CPU. The bench's load generator and receiver are
// not counted.
type Cost struct {
	Seconds float64 `json:"seconds"`
	// Deliveries is the number of distinct deliveries received in the
	// window: the per-delivery figures divide by it.
	Deliveries int `json:"deliveries"`
	// RedisCommands sums the calls of INFO commandstats: the commands
	// run inside Lua scripts count too, as does the EVALSHA that ran them.
	RedisCommands int64 `json:"redis_commands"`
	// PGTransactions is the database's xact_commit+xact_rollback from
	// pg_stat_database, read after a settle (Config.StatsSettle), since
	// Postgres publishes a backend's counts up to 10s late once it idles.
	// Other sessions on the same database count too.
	PGTransactions int64 `json:"pg_transactions"`
	// PGWriteTransactions is the transaction IDs assigned meanwhile, in the
	// whole cluster: transactions that wrote. It is read at once.
	PGWriteTransactions int64 `json:"pg_write_transactions"`
	// WALBytes is the WAL written meanwhile by the whole cluster
	// (pg_wal_lsn_diff of pg_current_wal_lsn()).
	WALBytes int64 `json:"wal_bytes"`
	// The CPU times come from /proc: hookd's process, redis-server's (its
	// process_id) and every process named postgres but the backends
	// pg_stat_activity shows in other databases: the postmaster, the
	// background processes (which work for every database) and the
	// backends of the bench's database, other sessions' included. A
	// process that exits during the window takes its CPU time with it.
	HookdCPUMs    float64 `json:"hookd_cpu_ms"`
	PostgresCPUMs float64 `json:"postgres_cpu_ms"`
	RedisCPUMs    float64 `json:"redis_cpu_ms"`

	PerDelivery PerDelivery `json:"per_delivery"`
	// TopRedisCommands are the five commands called most.
	TopRedisCommands []CommandCount `json:"top_redis_commands"`
}

// PerDelivery is a Cost divided by its deliveries.
type PerDelivery struct {
	RedisCommands       float64 `json:"redis_commands"`
	PGTransactions      float64 `json:"pg_transactions"`
	PGWriteTransactions float64 `json:"pg_write_transactions"`
	WALBytes            float64 `json:"wal_bytes"`
	// CPUMs is hookd's, Postgres' and Redis' CPU time together.
	CPUMs         float64 `json:"cpu_ms"`
	HookdCPUMs    float64 `json:"hookd_cpu_ms"`
	PostgresCPUMs float64 `json:"postgres_cpu_ms"`
	RedisCPUMs    float64 `json:"redis_cpu_ms"`
}

// CommandCount is how often one Redis command was called.
type CommandCount struct {
	Command     string  `json:"command"`
	Calls       int64   `json:"calls"`
	PerDelivery float64 `json:"per_delivery"`
}

// topRedisCommands is how many commands Cost.TopRedisCommands lists.
const topRedisCommands = 5

// counters is a reading of what hookd, Postgres and Redis have spent.
type counters struct {
	at         time.Time
	redisCalls map[string]int64
	xacts      int64
	nextXID    int64
	walBytes   int64
	hookdCPU   time.Duration
	redisCPU   time.Duration
	// postgresCPU is by process (pid and start time), so that a process
	// gone or new between two readings is told apart.
	postgresCPU map[procKey]time.Duration
}

// procKey names a process across pid reuse.
type procKey struct {
	pid   int
	start int64
}

// meter reads the counters.
type meter struct {
	rdb       redis.UniversalClient
	db        *bun.DB
	hookdPID  int
	redisPIDs []int // redis-server processes on this machine (a Cluster's every node)
}

// newMeter finds the redis-server processes through INFO server.
func newMeter(ctx context.Context, rdb redis.UniversalClient, db *bun.DB, hookdPID int) (*meter, error) {
	m := &meter{rdb: rdb, db: db, hookdPID: hookdPID}
	var mu sync.Mutex
	err := eachNode(ctx, rdb, true, func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "server").Result()
		if err != nil {
			return fmt.Errorf("redis info server: %w", err)
		}
		if v, ok := infoField(info, "process_id"); ok {
			pid, _ := strconv.Atoi(v)
			mu.Lock()
			m.redisPIDs = append(m.redisPIDs, pid)
			mu.Unlock()
		}
		return nil
	})
	return m, err
}

// read takes a reading of every counter. The transaction count is read
// again after the settle, by xacts.
func (m *meter) read(ctx context.Context) (counters, error) {
	c := counters{at: time.Now()}
	var err error
	if c.redisCalls, err = m.commandStats(ctx); err != nil {
		return c, err
	}
	err = m.db.NewRaw(`SELECT xact_commit + xact_rollback,
		pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,
		pg_snapshot_xmax(pg_current_snapshot())::text::bigint
		FROM pg_stat_database WHERE datname = current_database()`).Scan(ctx, &c.xacts, &c.walBytes, &c.nextXID)
	if err != nil {
		return c, fmt.Errorf("read postgres counters: %w", err)
	}
	if u, err := procUsage(m.hookdPID); err == nil {
		c.hookdCPU = u.CPU
	}
	for _, pid := range m.redisPIDs {
		if u, err := procUsage(pid); err == nil {
			c.redisCPU += u.CPU
		}
	}
	var others []int
	err = m.db.NewRaw(`SELECT pid FROM pg_stat_activity WHERE datname <> current_database()`).Scan(ctx, &others)
	if err != nil {
		return c, fmt.Errorf("read postgres backends: %w", err)
	}
	c.postgresCPU = postgresCPU(others)
	return c, nil
}

// xacts reads the database's transaction count alone.
func (m *meter) xacts(ctx context.Context) (int64, error) {
	var n int64
	err := m.db.NewRaw(`SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(ctx, &n)
	if err != nil {
		return 0, fmt.Errorf("read postgres transactions: %w", err)
	}
	return n, nil
}

// commandStats returns the calls of each Redis command so far, summed
// over a Cluster's masters (what hookd asked; replicas repeat it).
func (m *meter) commandStats(ctx context.Context) (map[string]int64, error) {
	calls := map[string]int64{}
	var mu sync.Mutex
	err := eachNode(ctx, m.rdb, false, func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return fmt.Errorf("redis info commandstats: %w", err)
		}
		mu.Lock()
		defer mu.Unlock()
		addCommandStats(calls, info)
		return nil
	})
	return calls, err
}

// addCommandStats adds the calls of INFO commandstats' info to calls.
func addCommandStats(calls map[string]int64, info string) {
	for line := range strings.Lines(info) {
		// cmdstat_evalsha:calls=12,usec=345,usec_per_call=28.75,...
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		for kv := range strings.SplitSeq(stats, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				calls[name] += n
			}
		}
	}
}

// cost is what was spent between two readings, over deliveries; xacts is
// the transaction count read after the settle.
func cost(before, after counters, xacts int64, deliveries int) Cost {
	c := Cost{
		Seconds:             after.at.Sub(before.at).Seconds(),
		Deliveries:          deliveries,
		PGTransactions:      xacts - before.xacts,
		PGWriteTransactions: after.nextXID - before.nextXID,
		WALBytes:            after.walBytes - before.walBytes,
		HookdCPUMs:          ms(after.hookdCPU - before.hookdCPU),
		RedisCPUMs:          ms(after.redisCPU - before.redisCPU),
	}
	var pg time.Duration
	for k, cpu := range after.postgresCPU {
		pg += cpu - before.postgresCPU[k] // a new process started at zero
	}
	c.PostgresCPUMs = ms(pg)
	var top []CommandCount
	for name, calls := range after.redisCalls {
		if d := calls - before.redisCalls[name]; d > 0 {
			c.RedisCommands += d
			top = append(top, CommandCount{Command: name, Calls: d})
		}
	}
	slices.SortFunc(top, func(a, b CommandCount) int {
		return cmp.Or(cmp.Compare(b.Calls, a.Calls), strings.Compare(a.Command, b.Command))
	})
	c.TopRedisCommands = top[:min(len(top), topRedisCommands)]
	if deliveries > 0 {
		n := float64(deliveries)
		for i := range c.TopRedisCommands {
			c.TopRedisCommands[i].PerDelivery = float64(c.TopRedisCommands[i].Calls) / n
		}
		c.PerDelivery = PerDelivery{
			RedisCommands:       float64(c.RedisCommands) / n,
			PGTransactions:      float64(c.PGTransactions) / n,
			PGWriteTransactions: float64(c.PGWriteTransactions) / n,
			WALBytes:            float64(c.WALBytes) / n,
			CPUMs:               (c.HookdCPUMs + c.PostgresCPUMs + c.RedisCPUMs) / n,
			HookdCPUMs:          c.HookdCPUMs / n,
			PostgresCPUMs:       c.PostgresCPUMs / n,
			RedisCPUMs:          c.RedisCPUMs / n,
		}
	}
	return c
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// postgresCPU returns the CPU time of every process whose command name is
// postgres, but those in skip, by process.
func postgresCPU(skip []int) map[procKey]time.Duration {
	cpu := map[procKey]time.Duration{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || slices.Contains(skip, pid) {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		if u, err := procUsage(pid); err == nil {
			cpu[procKey{pid, u.Start}] = u.CPU
		}
	}
	return cpu
}

// infoField returns a field of an INFO reply.
func infoField(info, name string) (string, bool) {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
