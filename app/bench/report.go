package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints the report as a table, then the targets it meets or
// misses.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "machine: %d CPUs (%s), %s, %s, %s\n", r.Machine.CPUs, r.Machine.Model, r.Machine.Memory, r.Machine.OS, r.Machine.Go)
	if bl := r.Baseline; bl != nil {
		fmt.Fprintf(&b, "baseline: raw asynq %.0f no-op tasks/s (%d pollers, concurrency %d, check every %s), raw postgres %.0f outbox rows/s (%d each)\n",
			bl.AsynqTasksPerSec, bl.Worker.Pollers, bl.Worker.Concurrency, bl.Worker.TaskCheckInterval, bl.OutboxRowsPerSec, bl.Tasks)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsource\tevents\toffered/s\tfan-out\tendpoints\tingest ev/s\tdeliveries/s\tof asynq\tp50 ms\tp95 ms\tp99 ms\tmax ms\tdelivered\tdups\tCPU s\tpeak RSS MiB\t")
	for _, res := range r.Results {
		offered := "max"
		switch {
		case res.Scenario == ScenarioIdle:
			offered = "1 at a time"
		case res.Scenario == ScenarioMemory:
			offered = "1 event"
		case res.OfferedRate > 0:
			offered = fmt.Sprintf("%.0f", res.OfferedRate)
		}
		eps := fmt.Sprint(res.Endpoints)
		if res.FailingEndpoints > 0 {
			eps += fmt.Sprintf(" (%d failing)", res.FailingEndpoints)
		}
		if res.HangingEndpoints > 0 {
			eps += fmt.Sprintf(" (+%d hanging)", res.HangingEndpoints)
		}
		ratio := "-"
		if res.AsynqRatio > 0 {
			ratio = fmt.Sprintf("%.0f%%", 100*res.AsynqRatio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%d/%d\t%d\t%.1f\t%.0f\t\n",
			res.Scenario, res.Source, res.Events, offered, res.FanOut, eps,
			rate(res.IngestPerSec), rate(res.DeliveriesPerSec), ratio,
			res.Latency.P50, res.Latency.P95, res.Latency.P99, res.Latency.Max,
			res.Delivered, res.Expected, res.Duplicates, res.CPUSeconds, res.PeakRSSMiB)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range r.Results {
		if n := res.Noisy; n != nil {
			fmt.Fprintf(&b, "\nnoisy: app A at %.0f ev/s to %d endpoints, %.0fs alone then %.0fs next to app B (%d endpoints hanging past the %s delivery timeout, %d events queued: %d deliveries in %.1fs; %d requests held):\n",
				n.Rate, n.Endpoints, n.PhaseSeconds, n.PhaseSeconds, n.HangingEndpoints, time.Duration(n.DeliveryTimeoutSeconds*float64(time.Second)), n.Backlog,
				n.BacklogDeliveries, n.FanoutSeconds, n.HungRequests)
			fmt.Fprintf(&b, "  A alone p50 %.1f ms, p99 %.1f ms; next to B p50 %.1f ms, p99 %.1f ms: p99 ×%.2f\n",
				n.Alone.P50, n.Alone.P99, n.NextToB.P50, n.NextToB.P99, n.P99Ratio)
		}
		if res.FIFO && res.DeliveriesPerSec > 0 && res.ReplyMS > 0 {
			ceiling := 1000 / res.ReplyMS
			fmt.Fprintf(&b, "\nfifo: one FIFO endpoint answering in %.0f ms: %.1f deliveries/s, %.0f%% of the %.0f/s its answer time allows one at a time (%.1f ms of hookd per delivery besides the answer)\n",
				res.ReplyMS, res.DeliveriesPerSec, 100*res.DeliveriesPerSec/ceiling, ceiling, 1000/res.DeliveriesPerSec-res.ReplyMS)
		}
		if m := res.LargeEvent; m != nil {
			fmt.Fprintf(&b, "\nmemory: one %d KiB event to %d endpoints: hookd RSS %.1f → %.1f MiB (%+.1f MB); Redis used_memory %+.1f MB at its peak, %+.1f MB when all arrived, %+.1f MB %.0fs later (from %.1f MB)\n",
				m.PayloadBytes>>10, m.Deliveries, mib(m.HookdRSSBeforeBytes), mib(m.HookdRSSPeakBytes), mb(m.HookdRSSIncreaseBytes),
				mb(m.RedisPeakIncreaseBytes), mb(m.RedisIncreaseBytes), mb(m.RedisLaterIncreaseBytes), m.LaterSeconds, mb(m.RedisBeforeBytes))
		}
	}
	if err := r.writeCosts(&b); err != nil {
		return err
	}
	for _, res := range r.Results {
		if len(res.Memory) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s memory (every 10s): ", res.Scenario)
		for i, m := range res.Memory {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%.0fs %.0f/%.0f MiB %d rows", m.AtSeconds, m.RSSMiB, m.HeapMiB, m.OutboxRows)
		}
		b.WriteString(" (RSS/heap in use, outbox rows)\n")
	}
	b.WriteString("\ntargets:\n")
	for _, t := range r.Targets() {
		mark := "MET   "
		if !t.Met {
			mark = "MISSED"
		}
		fmt.Fprintf(&b, "  %s %s: %s\n", mark, t.Name, t.Detail)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCosts prints the second table: what a delivery cost.
func (r *Report) writeCosts(b *strings.Builder) error {
	type row struct {
		name string
		c    *Cost
	}
	var rows []row
	for _, res := range r.Results {
		if n := res.Noisy; n != nil {
			rows = append(rows, row{res.Scenario + " (A alone)", &n.AloneCost})
			rows = append(rows, row{res.Scenario + " (A next to B)", res.Cost})
			continue
		}
		if res.Cost != nil {
			rows = append(rows, row{res.Scenario, res.Cost})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	b.WriteString("\ncost per delivery, from the first event to the last delivery recorded (CPU: hookd, Postgres and Redis together;\n" +
		"other sessions count too: in the bench's database for Postgres transactions and CPU, in the whole server for writes and WAL):\n")
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tdeliveries\tseconds\tredis cmds\tpg xacts\tpg writes\tWAL bytes\tCPU ms\thookd ms\tpostgres ms\tredis ms\t")
	for _, rw := range rows {
		c, p := rw.c, rw.c.PerDelivery
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.2f\t%.2f\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t\n",
			rw.name, c.Deliveries, c.Seconds, p.RedisCommands, p.PGTransactions, p.PGWriteTransactions, p.WALBytes,
			p.CPUMs, p.HookdCPUMs, p.PostgresCPUMs, p.RedisCPUMs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("top Redis commands per delivery:\n")
	for _, rw := range rows {
		fmt.Fprintf(b, "  %s:", rw.name)
		for i, cc := range rw.c.TopRedisCommands {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(b, " %s %.2f", cc.Command, cc.PerDelivery)
		}
		b.WriteString("\n")
	}
	return nil
}

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }
func mb(bytes int64) float64  { return float64(bytes) / 1e6 }

func rate(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

// Target is one of the performance targets, checked against a report.
type Target struct {
	Name   string `json:"name"`
	Met    bool   `json:"met"`
	Detail string `json:"detail"`
}

// Targets checks the report against hookd's performance targets, for the
// scenarios it ran.
func (r *Report) Targets() []Target {
	var ts []Target
	by := map[string]Result{}
	for _, res := range r.Results {
		by[res.Scenario] = res
	}
	if r.Baseline != nil {
		best := Result{}
		for _, name := range []string{ScenarioBurst, ScenarioClicks, ScenarioFanout} {
			if res, ok := by[name]; ok && res.DeliveriesPerSec > best.DeliveriesPerSec {
				best = res
			}
		}
		if best.Scenario != "" {
			ts = append(ts, Target{
				Name: "throughput ≥ 25% of raw asynq (aim 50%)", Met: best.AsynqRatio >= 0.25,
				Detail: fmt.Sprintf("%.0f deliveries/s in %s = %.0f%% of %.0f tasks/s", best.DeliveriesPerSec, best.Scenario, 100*best.AsynqRatio, r.Baseline.AsynqTasksPerSec),
			})
		}
	}
	if res, ok := by[ScenarioSteady]; ok {
		ts = append(ts, Target{
			Name: fmt.Sprintf("latency at %.0f ev/s: p99 ≤ 50 ms, p50 ≤ 10 ms", res.OfferedRate),
			Met:  res.Latency.P99 <= 50 && res.Latency.P50 <= 10,
			Detail: fmt.Sprintf("p50 %.1f ms, p99 %.1f ms (ingest kept up at %.0f ev/s)",
				res.Latency.P50, res.Latency.P99, res.IngestPerSec),
		})
	}
	if res, ok := by[ScenarioIdle]; ok {
		ts = append(ts, Target{
			Name:   "single event on an idle system < 50 ms",
			Met:    res.Latency.Max < 50,
			Detail: fmt.Sprintf("max %.1f ms, p50 %.1f ms over %d events", res.Latency.Max, res.Latency.P50, res.Events),
		})
	}
	if res, ok := by[ScenarioNoisy]; ok && res.Noisy != nil {
		n := res.Noisy
		ts = append(ts, Target{
			Name: "a noisy neighbour leaves p99 latency ≤ 1.5× (hanging endpoints and a backlog next door)",
			Met:  n.P99Ratio > 0 && n.P99Ratio <= 1.5,
			Detail: fmt.Sprintf("app A's p99 %.1f ms alone, %.1f ms next to app B = ×%.2f (B: %d hanging endpoints, %d events queued)",
				n.Alone.P99, n.NextToB.P99, n.P99Ratio, n.HangingEndpoints, n.Backlog),
		})
	}
	if res, ok := by[ScenarioMemory]; ok && res.LargeEvent != nil {
		m := res.LargeEvent
		ts = append(ts, Target{
			Name:   fmt.Sprintf("one %d KiB event to %d endpoints: hookd RSS +≤ 30 MB", m.PayloadBytes>>10, m.Deliveries),
			Met:    m.HookdRSSIncreaseBytes <= 30e6,
			Detail: fmt.Sprintf("RSS %.1f → %.1f MiB peak (%+.1f MB)", mib(m.HookdRSSBeforeBytes), mib(m.HookdRSSPeakBytes), mb(m.HookdRSSIncreaseBytes)),
		})
		limit := 2e6 + 1024*float64(m.Deliveries)
		ts = append(ts, Target{
			Name: fmt.Sprintf("one %d KiB event to %d endpoints: Redis +≤ 2 MB + 1 KiB per delivery (%.1f MB)", m.PayloadBytes>>10, m.Deliveries, limit/1e6),
			Met:  float64(m.RedisIncreaseBytes) <= limit,
			Detail: fmt.Sprintf("used_memory %+.1f MB when all arrived (%+.1f MB at its peak), %+.1f MB %.0fs later",
				mb(m.RedisIncreaseBytes), mb(m.RedisPeakIncreaseBytes), mb(m.RedisLaterIncreaseBytes), m.LaterSeconds),
		})
	}
	if res, ok := by[ScenarioSoak]; ok && len(res.Memory) >= 3 {
		// Flat: the last third's RSS is within 10% of the first third's
		// after warm-up (the first sample is taken before load).
		m := res.Memory[1:]
		third := max(len(m)/3, 1)
		first, last := avgRSS(m[:third]), avgRSS(m[len(m)-third:])
		growth := last/first - 1
		ts = append(ts, Target{
			Name:   "memory flat over the soak (≤ 10% growth), RSS < 200 MB",
			Met:    growth <= 0.10 && res.PeakRSSMiB*(1<<20) < 200e6,
			Detail: fmt.Sprintf("RSS %.0f → %.0f MiB (%+.1f%%), peak %.0f MiB over %.0fs", first, last, 100*growth, res.PeakRSSMiB, res.Seconds),
		})
	}
	return ts
}

func avgRSS(ms []MemorySample) float64 {
	var sum float64
	for _, m := range ms {
		sum += m.RSSMiB
	}
	return sum / float64(len(ms))
}
