package main_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookd/hookd/outbox/outboxtest"
)

// benchRedisDB is TestBenchSmoke's own logical Redis database: the bench
// flushes it before and after its run.
const benchRedisDB = 7

// TestBenchSmoke runs `hookd bench` on a small load through every standard
// scenario and checks that its JSON report holds plausible numbers: rates,
// latencies, what each delivery cost, the noisy scenario's comparison and
// the memory scenario's measures. It checks no target: a loaded machine
// may miss any.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and Redis; skipped with -short")
	}
	t.Parallel()
	bin := build(t)
	redisURL, _ := url.Parse(cmp.Or(os.Getenv("HOOKD_TEST_REDIS_URL"), "redis://127.0.0.1:6379"))
	redisURL.Path = fmt.Sprintf("/%d", benchRedisDB)
	jsonFile := filepath.Join(t.TempDir(), "bench.json")

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench",
		"--scenarios", "baseline,idle,steady,burst,clicks,fanout10,failing,memory,noisy",
		"--events", "200", "--rate", "50", "--duration", "2s", "--baseline", "500",
		// Tiny sizes: the cost figures then carry hookd's idle polling
		// (and a Redis shared with other tests, their commands), and a
		// short settle leaves some Postgres transactions uncounted; only
		// their presence is checked.
		"--stats-settle", "1s", "--noisy-phase", "2s", "--noisy-backlog", "25", "--memory-endpoints", "20",
		// The noisy scenario's endpoints hang for 4s (timeout + 2s), not 5s.
		"--delivery-timeout", "2s",
		"--json", jsonFile,
		"--redis-url", redisURL.String(),
		"--database-url", outboxtest.DatabaseURL(),
	)
	// On timeout, let the bench stop its hookd and drop its schema.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Stderr = t.Output()
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("hookd bench: %v\n%s", err, stdout)
	}
	if !strings.Contains(string(stdout), "\ntargets:\n") {
		t.Errorf("table has no targets section:\n%s", stdout)
	}

	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Baseline struct {
			AsynqTasksPerSec float64 `json:"asynq_tasks_per_sec"`
			OutboxRowsPerSec float64 `json:"outbox_rows_per_sec"`
		} `json:"baseline"`
		Results []struct {
			Scenario   string `json:"scenario"`
			Expected   int    `json:"expected_deliveries"`
			Delivered  int    `json:"delivered"`
			Duplicates *int   `json:"duplicates"`
			Failed     int    `json:"failed_requests"`
			Latency    struct {
				P50 float64 `json:"p50_ms"`
				P99 float64 `json:"p99_ms"`
				Max float64 `json:"max_ms"`
			} `json:"latency"`
			CPUSeconds float64     `json:"hookd_cpu_seconds"`
			PeakRSSMiB float64     `json:"hookd_peak_rss_mib"`
			Cost       *benchCost  `json:"cost"`
			Noisy      *benchNoisy `json:"noisy"`
			LargeEvent *struct {
				PayloadBytes       int    `json:"payload_bytes"`
				Deliveries         int    `json:"deliveries"`
				RSSBefore          int64  `json:"hookd_rss_before_bytes"`
				RSSPeak            int64  `json:"hookd_rss_peak_bytes"`
				RSSIncrease        int64  `json:"hookd_rss_increase_bytes"`
				RedisBefore        int64  `json:"redis_used_memory_before_bytes"`
				RedisAfter         int64  `json:"redis_used_memory_after_bytes"`
				RedisLater         int64  `json:"redis_used_memory_later_bytes"`
				RedisPeak          int64  `json:"redis_used_memory_peak_bytes"`
				RedisIncrease      *int64 `json:"redis_increase_bytes"`
				RedisLaterIncrease *int64 `json:"redis_later_increase_bytes"`
			} `json:"large_event"`
		} `json:"results"`
		Targets []struct {
			Name string `json:"name"`
		} `json:"targets"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("decode %s: %v", jsonFile, err)
	}
	if rep.Baseline.AsynqTasksPerSec <= 0 || rep.Baseline.OutboxRowsPerSec <= 0 {
		t.Errorf("baseline = %+v, want positive rates", rep.Baseline)
	}

	want := []string{"idle", "steady", "burst", "clicks", "fanout10", "failing", "memory", "noisy"}
	var got []string
	for _, res := range rep.Results {
		got = append(got, res.Scenario)
		if res.Expected <= 0 || res.Delivered != res.Expected {
			t.Errorf("%s: delivered %d of %d", res.Scenario, res.Delivered, res.Expected)
		}
		if res.Duplicates == nil || *res.Duplicates < 0 {
			t.Errorf("%s: duplicates missing or negative", res.Scenario)
		}
		if l := res.Latency; l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max {
			t.Errorf("%s: latency %+v, want 0 < p50 <= p99 <= max", res.Scenario, l)
		}
		if res.CPUSeconds <= 0 || res.PeakRSSMiB <= 0 {
			t.Errorf("%s: CPU %gs, peak RSS %g MiB, want both positive", res.Scenario, res.CPUSeconds, res.PeakRSSMiB)
		}
		if res.Scenario == "failing" && res.Failed <= 0 {
			t.Errorf("failing: %d failed requests, want some", res.Failed)
		}
		perCost := res.Delivered
		if res.Scenario == "noisy" {
			perCost /= 2 // each phase has its cost: the scenario's is the second
		}
		checkCost(t, res.Scenario, res.Cost, perCost)
		switch res.Scenario {
		case "noisy":
			n := res.Noisy
			if n == nil {
				t.Errorf("noisy: no noisy section")
				break
			}
			if n.Alone.P99 <= 0 || n.NextToB.P99 <= 0 || n.P99Ratio <= 0 {
				t.Errorf("noisy: alone %+v, next to B %+v, ratio %g, want positive p99s and ratio", n.Alone, n.NextToB, n.P99Ratio)
			}
			if n.BacklogDeliveries != 25*20 || n.HungRequests <= 0 {
				t.Errorf("noisy: %d backlog deliveries, %d requests held, want 500 and some", n.BacklogDeliveries, n.HungRequests)
			}
			checkCost(t, "noisy alone", n.AloneCost, perCost)
		case "memory":
			m := res.LargeEvent
			switch {
			case m == nil:
				t.Errorf("memory: no large_event section")
			case m.PayloadBytes != 250<<10 || m.Deliveries != 20:
				t.Errorf("memory: %d bytes to %d endpoints, want %d to 20", m.PayloadBytes, m.Deliveries, 250<<10)
			case m.RSSBefore <= 0 || m.RSSPeak < m.RSSBefore || m.RSSIncrease != m.RSSPeak-m.RSSBefore:
				t.Errorf("memory: RSS %d -> %d (+%d), want a positive start and a peak no lower", m.RSSBefore, m.RSSPeak, m.RSSIncrease)
			case m.RedisBefore <= 0 || m.RedisAfter <= 0 || m.RedisLater <= 0 || m.RedisIncrease == nil || m.RedisLaterIncrease == nil:
				t.Errorf("memory: Redis used_memory %d, %d, %d, want all positive, and their increases", m.RedisBefore, m.RedisAfter, m.RedisLater)
			case m.RedisPeak < m.RedisBefore || m.RedisPeak < m.RedisAfter:
				t.Errorf("memory: Redis used_memory peak %d, want at least the readings before (%d) and after (%d)", m.RedisPeak, m.RedisBefore, m.RedisAfter)
			}
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("scenarios = %v, want %v", got, want)
	}
	var targets []string
	for _, tg := range rep.Targets {
		targets = append(targets, tg.Name)
	}
	for _, want := range []string{"noisy neighbour", "hookd RSS", "Redis +"} {
		if !strings.Contains(strings.Join(targets, "\n"), want) {
			t.Errorf("no target about %q in %q", want, targets)
		}
	}
	for _, want := range []string{"\ncost per delivery", "noisy (A alone)", "\nmemory: one 250 KiB event"} {
		if !strings.Contains(string(stdout), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}

// benchCost is the part of a scenario's report the smoke test checks.
type benchCost struct {
	Deliveries          int   `json:"deliveries"`
	RedisCommands       int64 `json:"redis_commands"`
	PGTransactions      int64 `json:"pg_transactions"`
	PGWriteTransactions int64 `json:"pg_write_transactions"`
	WALBytes            int64 `json:"wal_bytes"`
	PerDelivery         struct {
		RedisCommands float64 `json:"redis_commands"`
		WALBytes      float64 `json:"wal_bytes"`
		CPUMs         float64 `json:"cpu_ms"`
		HookdCPUMs    float64 `json:"hookd_cpu_ms"`
	} `json:"per_delivery"`
	TopRedisCommands []struct {
		Command string `json:"command"`
		Calls   int64  `json:"calls"`
	} `json:"top_redis_commands"`
}

// benchNoisy is the noisy scenario's section of the report.
type benchNoisy struct {
	BacklogDeliveries int `json:"backlog_deliveries"`
	HungRequests      int `json:"hung_requests"`
	Alone             struct {
		P99 float64 `json:"p99_ms"`
	} `json:"alone"`
	NextToB struct {
		P99 float64 `json:"p99_ms"`
	} `json:"next_to_b"`
	P99Ratio  float64    `json:"p99_ratio"`
	AloneCost *benchCost `json:"alone_cost"`
}

// checkCost checks that a scenario's cost is present and plausible: every
// delivery takes Redis commands, Postgres writes (and their WAL) and CPU.
// Postgres' transaction count may lag behind its writes, so it need only
// not be negative.
func checkCost(t *testing.T, scenario string, c *benchCost, delivered int) {
	t.Helper()
	switch {
	case c == nil:
		t.Errorf("%s: no cost", scenario)
	case c.Deliveries != delivered:
		t.Errorf("%s: cost over %d deliveries, want %d", scenario, c.Deliveries, delivered)
	case c.RedisCommands <= 0 || c.PerDelivery.RedisCommands <= 0 || len(c.TopRedisCommands) == 0 || c.TopRedisCommands[0].Calls <= 0:
		t.Errorf("%s: %d Redis commands (%g per delivery, top %+v), want some", scenario, c.RedisCommands, c.PerDelivery.RedisCommands, c.TopRedisCommands)
	case c.PGWriteTransactions <= 0 || c.WALBytes <= 0 || c.PerDelivery.WALBytes <= 0 || c.PGTransactions < 0:
		t.Errorf("%s: %d Postgres transactions, %d writes, %d WAL bytes, want writes and WAL", scenario, c.PGTransactions, c.PGWriteTransactions, c.WALBytes)
	case c.PerDelivery.CPUMs <= 0 || c.PerDelivery.CPUMs < c.PerDelivery.HookdCPUMs:
		t.Errorf("%s: %g CPU ms per delivery (hookd %g), want positive and at least hookd's", scenario, c.PerDelivery.CPUMs, c.PerDelivery.HookdCPUMs)
	}
}

// TestBenchCluster runs `hookd bench --redis-cluster-addrs` on a small load
// against a Redis Cluster of the test's own, its deliveries sharded: every
// delivery arrives, and the cost figures count the Cluster's commands.
func TestBenchCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and a Redis Cluster; skipped with -short")
	}
	t.Parallel()
	bin := build(t)
	topo := startClusterRedis(t)
	jsonFile := filepath.Join(t.TempDir(), "bench.json")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench",
		"--scenarios", "baseline,burst,fanout10",
		"--events", "200", "--baseline", "500", "--stats-settle", "1s",
		"--json", jsonFile,
		"--redis-cluster-addrs", strings.Join(topo.addrs(), ","),
		"--database-url", outboxtest.DatabaseURL(),
	)
	cmd.Env = append(os.Environ(), "HOOKD_QUEUE_SHARDS=6")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Stderr = t.Output()
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("hookd bench: %v\n%s", err, out)
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Baseline struct {
			AsynqTasksPerSec float64 `json:"asynq_tasks_per_sec"`
		} `json:"baseline"`
		Results []struct {
			Scenario  string     `json:"scenario"`
			Expected  int        `json:"expected_deliveries"`
			Delivered int        `json:"delivered"`
			Cost      *benchCost `json:"cost"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Baseline.AsynqTasksPerSec <= 0 || len(rep.Results) != 2 {
		t.Fatalf("report: %s", b)
	}
	for _, r := range rep.Results {
		if r.Expected == 0 || r.Delivered != r.Expected {
			t.Errorf("%s: delivered %d of %d", r.Scenario, r.Delivered, r.Expected)
		}
		if r.Cost == nil || r.Cost.PerDelivery.RedisCommands <= 0 {
			t.Errorf("%s: no Redis commands counted: %+v", r.Scenario, r.Cost)
		}
	}
}
