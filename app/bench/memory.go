package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// LargeEvent is what the memory scenario measured: the memory that one
// large event takes in hookd and in Redis while it fans out to many
// endpoints and is delivered to them.
type LargeEvent struct {
	// PayloadBytes is the size of the event's payload (a JSON object with
	// one long string of random hex digits, under the API's default
	// 262,144-byte limit of a request), delivered to Deliveries
	// endpoints.
	PayloadBytes int `json:"payload_bytes"`
	Deliveries   int `json:"deliveries"`
	// hookd's RSS just before the event was published (after warm-up
	// traffic and a quiet moment), and the highest seen, sampled every
	// 20ms from /proc, until every delivery had arrived.
	HookdRSSBeforeBytes   int64 `json:"hookd_rss_before_bytes"`
	HookdRSSPeakBytes     int64 `json:"hookd_rss_peak_bytes"`
	HookdRSSIncreaseBytes int64 `json:"hookd_rss_increase_bytes"`
	// Redis' used_memory (INFO memory) just before the event was published,
	// right after every delivery arrived, and LaterSeconds after that: what
	// stays.
	RedisBeforeBytes        int64   `json:"redis_used_memory_before_bytes"`
	RedisAfterBytes         int64   `json:"redis_used_memory_after_bytes"`
	RedisLaterBytes         int64   `json:"redis_used_memory_later_bytes"`
	RedisIncreaseBytes      int64   `json:"redis_increase_bytes"`
	RedisLaterIncreaseBytes int64   `json:"redis_later_increase_bytes"`
	LaterSeconds            float64 `json:"later_seconds"`
	// RedisPeakBytes is the highest used_memory seen, sampled every 100ms
	// from the publish until every delivery arrived: how much of the
	// event Redis held at once, which the reading after the last delivery
	// may miss.
	RedisPeakBytes         int64 `json:"redis_used_memory_peak_bytes"`
	RedisPeakIncreaseBytes int64 `json:"redis_peak_increase_bytes"`
}

// The memory scenario's event and measures.
const (
	// largePayloadBytes is 250 KiB: with the request's envelope it stays
	// under the API's default limit of 262,144 bytes.
	largePayloadBytes = 250 << 10
	// memoryWarmupEvents small events go to the same endpoints first.
	memoryWarmupEvents = 5
	// memorySampleInterval is how often hookd's RSS is sampled.
	memorySampleInterval = 20 * time.Millisecond
	// redisSampleInterval is how often Redis' used_memory is sampled
	// (each sample is an INFO call, which the scenario's cost counts).
	redisSampleInterval = 100 * time.Millisecond
	// memoryLaterDefault is when Redis' memory is read again after the
	// last delivery.
	memoryLaterDefault = 5 * time.Second
)

// runMemory runs the memory scenario: warm-up traffic to an app's
// endpoints, a quiet moment, then one large event to all of them.
func (r *runner) runMemory(ctx context.Context, prefix string) (Result, error) {
	sh := shape{source: "api", apps: 1, perApp: r.cfg.MemoryEndpoints, events: 1}
	res := Result{Scenario: ScenarioMemory, Source: "api", Events: 1, FanOut: sh.perApp, Endpoints: sh.perApp}
	targets, endpoints, err := r.setup(ctx, prefix, sh)
	if err != nil {
		return res, err
	}
	a := targets[0]
	res.Expected = a.expected

	// Warm-up: hookd's pools, caches and heap grow as they do under
	// traffic, so that the baseline is that of a working hookd. The settle
	// then lets it, and Postgres' statistics, come to rest.
	warm := shape{source: "api", apps: 1, events: memoryWarmupEvents}
	rd := r.recv.begin(endpoints, warm.events*a.expected)
	if _, _, err := drive(ctx, warm, r.sender(warm, targets)); err != nil {
		return res, fmt.Errorf("warm up: %w", err)
	}
	if !r.recv.wait(rd, warm.events*a.expected, deliveryIdleWaitDefault) {
		return res, fmt.Errorf("%w: warm-up: %d of %d arrived", errIncomplete, r.recv.received(rd), warm.events*a.expected)
	}
	r.recorded(ctx, []string{a.appID}, warm.events*a.expected)
	if _, err := r.settled(ctx, time.Now()); err != nil {
		return res, err
	}

	payload, err := largePayload(largePayloadBytes)
	if err != nil {
		return res, err
	}
	m := &LargeEvent{PayloadBytes: largePayloadBytes, Deliveries: a.expected, LaterSeconds: memoryLaterDefault.Seconds()}
	res.LargeEvent = m
	rd = r.recv.begin(endpoints, a.expected)
	before, err := r.meter.read(ctx)
	if err != nil {
		return res, err
	}
	if m.RedisBeforeBytes, err = r.usedMemory(ctx); err != nil {
		return res, err
	}
	usage := r.hookd.sample(memorySampleInterval)
	redisPeak := r.sampleUsedMemory(ctx, m.RedisBeforeBytes)
	start := time.Now()
	ev := map[string]any{"type": "bench.event", "payload": payload}
	if err := r.hookd.post(ctx, "/v1/apps/"+a.appID+"/events", ev, http.StatusCreated, nil); err != nil {
		usage.end()
		redisPeak()
		return res, err
	}
	complete := r.recv.wait(rd, a.expected, deliveryIdleWaitDefault)
	usedAfter, err := r.usedMemory(ctx)
	cpu, peak := usage.end()
	m.RedisPeakBytes = max(redisPeak(), usedAfter)
	m.RedisPeakIncreaseBytes = m.RedisPeakBytes - m.RedisBeforeBytes
	if err != nil {
		return res, err
	}
	delivered, dups, _, _, last, lat := r.recv.summary(rd)
	res.Delivered, res.Duplicates, res.Latency = delivered, dups, lat
	res.CPUSeconds = cpu.Seconds()
	res.PeakRSSMiB = float64(peak) / (1 << 20)
	res.Seconds = time.Since(start).Seconds()
	m.HookdRSSBeforeBytes, m.HookdRSSPeakBytes = usage.start.RSS, peak
	m.HookdRSSIncreaseBytes = peak - usage.start.RSS
	m.RedisAfterBytes = usedAfter
	m.RedisIncreaseBytes = usedAfter - m.RedisBeforeBytes

	r.recorded(ctx, []string{a.appID}, warm.events*a.expected+delivered)
	after, err := r.meter.read(ctx)
	if err != nil {
		return res, err
	}
	select {
	case <-time.After(time.Until(last.Add(memoryLaterDefault))):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if m.RedisLaterBytes, err = r.usedMemory(ctx); err != nil {
		return res, err
	}
	m.RedisLaterIncreaseBytes = m.RedisLaterBytes - m.RedisBeforeBytes
	xacts, err := r.settled(ctx, after.at)
	if err != nil {
		return res, err
	}
	c := cost(before, after, xacts, delivered)
	res.Cost = &c
	if !complete {
		return res, fmt.Errorf("%w: %d of %d arrived", errIncomplete, delivered, a.expected)
	}
	return res, nil
}

// largePayload returns a JSON object of exactly size bytes once encoded:
// one string of random hex digits, which Postgres cannot compress away.
func largePayload(size int) (map[string]any, error) {
	const envelope = len(`{"blob":""}`)
	b := make([]byte, (size-envelope+1)/2)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("large payload: %w", err)
	}
	return map[string]any{"blob": hex.EncodeToString(b)[:size-envelope]}, nil
}

// sampleUsedMemory samples Redis' used_memory every redisSampleInterval
// until the returned function stops it and returns the highest seen (at
// least from).
func (r *runner) sampleUsedMemory(ctx context.Context, from int64) func() int64 {
	stop, done := make(chan struct{}), make(chan struct{})
	peak := from
	go func() {
		defer close(done)
		t := time.NewTicker(redisSampleInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if n, err := r.usedMemory(ctx); err == nil {
					peak = max(peak, n)
				}
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		return peak
	}
}

// usedMemory reads Redis' used_memory, summed over a Cluster's masters.
func (r *runner) usedMemory(ctx context.Context) (int64, error) {
	var total atomic.Int64
	err := eachNode(ctx, r.rdb, false, func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return fmt.Errorf("redis info memory: %w", err)
		}
		v, ok := infoField(info, "used_memory")
		if !ok {
			return fmt.Errorf("redis info memory: no used_memory")
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("redis used_memory %q: %w", v, err)
		}
		total.Add(n)
		return nil
	})
	return total.Load(), err
}
