package bench

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"
	"golang.org/x/sync/errgroup"

	"github.com/hookd/hookd/tasks/ledger"
)

// Result is what one scenario measured.
type Result struct {
	Scenario string `json:"scenario"`
	// Source is how events were published: "api" (POST
	// /v1/apps/{app}/events) or "clicks" (GET /r/{code}).
	Source string `json:"source"`
	// OfferedRate is the offered events/s; 0 means as fast as hookd takes
	// them (32 concurrent clients), or one at a time for "idle".
	OfferedRate      float64 `json:"offered_events_per_sec"`
	Events           int     `json:"events"`
	FanOut           int     `json:"fan_out"`
	Endpoints        int     `json:"endpoints"`
	FailingEndpoints int     `json:"failing_endpoints"`
	// HangingEndpoints hold each request past hookd's delivery timeout.
	HangingEndpoints int `json:"hanging_endpoints,omitempty"`
	// FIFO tells that the endpoints are FIFO, ReplyMS how long each
	// takes to answer (0: at once).
	FIFO    bool    `json:"fifo,omitempty"`
	ReplyMS float64 `json:"reply_ms,omitempty"`
	// IngestPerSec is events committed per second, from the first request
	// to the last response.
	IngestPerSec float64 `json:"ingest_events_per_sec"`
	// Expected counts deliveries owed to endpoints that answer 2xx.
	Expected  int `json:"expected_deliveries"`
	Delivered int `json:"delivered"`
	// Duplicates are deliveries received more than once.
	Duplicates int `json:"duplicates"`
	// FailedRequests are requests the failing endpoints answered with 500.
	FailedRequests int `json:"failed_requests"`
	// DeliveriesPerSec is distinct deliveries received per second, from
	// the first request to the last delivery.
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	// AsynqRatio is DeliveriesPerSec over the baseline's raw Asynq rate.
	AsynqRatio float64 `json:"asynq_ratio,omitempty"`
	// Latency is from outbox commit to receipt, over delivered deliveries.
	Latency    Latency `json:"latency"`
	CPUSeconds float64 `json:"hookd_cpu_seconds"`
	PeakRSSMiB float64 `json:"hookd_peak_rss_mib"`
	Seconds    float64 `json:"seconds"`
	// Memory is sampled during a soak.
	Memory []MemorySample `json:"memory,omitempty"`
	// Cost is what the scenario's deliveries cost hookd, Postgres and
	// Redis.
	Cost *Cost `json:"cost,omitempty"`
	// Noisy is the noisy scenario's comparison.
	Noisy *Noisy `json:"noisy,omitempty"`
	// LargeEvent is the memory scenario's measure.
	LargeEvent *LargeEvent `json:"large_event,omitempty"`
}

// MemorySample is hookd's memory at one moment of a soak.
type MemorySample struct {
	AtSeconds float64 `json:"at_seconds"`
	RSSMiB    float64 `json:"rss_mib"`
	HeapMiB   float64 `json:"heap_inuse_mib"`
	// OutboxRows counts the outbox table's rows (retention keeps it
	// bounded under sustained load).
	OutboxRows int `json:"outbox_rows"`
}

// shape is a scenario's load: where events go and how fast.
type shape struct {
	source   string  // "api" or "clicks"
	apps     int     // events go round-robin to the apps
	perApp   int     // endpoints per app: the fan-out
	failing  int     // endpoints answering 500 (the first of the first apps)
	hanging  int     // endpoints hanging (the ones after the failing ones)
	events   int     // how many
	rate     float64 // offered events/s; 0: as fast as possible
	idle     bool    // one at a time, each delivered before the next
	soak     bool    // sample memory
	profile  bool    // take profiles meanwhile
	fifo     bool    // the endpoints are FIFO ("ordering": "fifo")
	slow     bool    // the endpoints answer after slowReplyDefault
	clientsN int
}

type runner struct {
	cfg      Config
	db       *bun.DB // the bench schema
	rdb      redis.UniversalClient
	meter    *meter
	hookd    *hookd
	recv     *receiver
	log      *slog.Logger
	baseline *Baseline
	// last tells that no scenario follows the one running.
	last bool
}

func (r *runner) shape(name string) shape {
	steadyEvents := int(r.cfg.Rate * r.cfg.Duration.Seconds())
	switch name {
	case ScenarioIdle:
		return shape{source: "api", apps: 1, perApp: 1, events: 20, idle: true}
	case ScenarioSteady:
		return shape{source: "api", apps: 100, perApp: 1, events: steadyEvents, rate: r.cfg.Rate}
	case ScenarioBurst:
		return shape{source: "api", apps: 100, perApp: 1, events: r.cfg.Events}
	case ScenarioClicks:
		return shape{source: "clicks", apps: 100, perApp: 1, events: r.cfg.Events / 2}
	case ScenarioFanout:
		return shape{source: "api", apps: 10, perApp: 10, events: r.cfg.Events / 5, profile: r.cfg.ProfileDir != ""}
	case ScenarioFailing:
		// 1 of 100 endpoints fails; a tenth of the events fan out to it.
		return shape{source: "api", apps: 10, perApp: 10, failing: 1, events: steadyEvents / 5, rate: r.cfg.Rate / 5}
	case ScenarioFIFO:
		// One FIFO endpoint answering in 10ms: its deliveries go one at a
		// time, so it takes at most 100 a second.
		return shape{source: "api", apps: 1, perApp: 1, fifo: true, slow: true, events: max(r.cfg.Events/10, 1)}
	case ScenarioSoak:
		return shape{source: "api", apps: 100, perApp: 1, events: int(r.cfg.Rate * r.cfg.Soak.Seconds()), rate: r.cfg.Rate, soak: true}
	}
	panic("unknown scenario " + name)
}

// target is one app of a scenario.
type target struct {
	appID    string
	code     string // its short link, for clicks
	expected int    // deliveries owed per event (endpoints that answer 2xx)
}

func (r *runner) run(ctx context.Context, name, prefix string) (Result, error) {
	switch name {
	case ScenarioNoisy:
		return r.runNoisy(ctx, prefix)
	case ScenarioMemory:
		return r.runMemory(ctx, prefix)
	}
	sh := r.shape(name)
	res := Result{Scenario: name, Source: sh.source, OfferedRate: sh.rate, Events: sh.events, FanOut: sh.perApp,
		Endpoints: sh.apps * sh.perApp, FailingEndpoints: sh.failing, FIFO: sh.fifo}
	if sh.slow {
		res.ReplyMS = float64(slowReplyDefault) / float64(time.Millisecond)
	}
	targets, endpoints, err := r.setup(ctx, prefix, sh)
	if err != nil {
		return res, err
	}
	for i := range sh.events {
		res.Expected += targets[i%len(targets)].expected
	}
	rd := r.recv.begin(endpoints, res.Expected)
	before, err := r.meter.read(ctx)
	if err != nil {
		return res, err
	}
	usage := r.hookd.sample(sampleIntervalDefault)
	var profiled chan error
	if sh.profile {
		profiled = make(chan error, 1)
		go func() { profiled <- r.hookd.profile(ctx, r.cfg.ProfileDir, 10*time.Second) }()
	}
	stopMemory := func() []MemorySample { return nil }
	start := time.Now()
	if sh.soak {
		stopMemory = r.sampleMemory(ctx, start)
	}

	send := r.sender(sh, targets)
	var (
		sent     int
		lastResp time.Time
	)
	switch {
	case sh.idle:
		for i := range sh.events {
			if err := send(ctx, i); err != nil {
				return res, err
			}
			if !r.recv.wait(rd, i+1, 5*time.Second) {
				return res, fmt.Errorf("event %d not delivered within 5s on an idle system", i)
			}
			time.Sleep(50 * time.Millisecond)
		}
		sent, lastResp = sh.events, time.Now()
	default:
		sent, lastResp, err = drive(ctx, sh, send)
		if err != nil {
			return res, err
		}
	}
	res.IngestPerSec = float64(sent) / lastResp.Sub(start).Seconds()

	complete := r.recv.wait(rd, res.Expected, deliveryIdleWaitDefault)
	res.Memory = stopMemory()
	cpu, peak := usage.end()
	delivered, dups, failed, _, last, lat := r.recv.summary(rd)
	res.Delivered, res.Duplicates, res.FailedRequests, res.Latency = delivered, dups, failed, lat
	res.DeliveriesPerSec = float64(delivered) / last.Sub(start).Seconds()
	if sh.idle {
		res.IngestPerSec, res.DeliveriesPerSec = 0, 0 // paced by the bench, not by hookd
	}
	if r.baseline != nil && res.DeliveriesPerSec > 0 {
		res.AsynqRatio = res.DeliveriesPerSec / r.baseline.AsynqTasksPerSec
	}
	res.CPUSeconds = cpu.Seconds()
	res.PeakRSSMiB = float64(peak) / (1 << 20)
	res.Seconds = time.Since(start).Seconds()
	if profiled != nil {
		if err := <-profiled; err != nil {
			r.log.WarnContext(ctx, "profiling failed", slog.Any("err", err))
		}
	}
	r.recorded(ctx, appIDs(targets), delivered)
	c, err := r.costSince(ctx, before, delivered)
	if err != nil {
		return res, err
	}
	res.Cost = &c
	if !complete {
		return res, fmt.Errorf("%w: %d of %d arrived", errIncomplete, delivered, res.Expected)
	}
	return res, nil
}

// setup creates the scenario's apps, endpoints (on the receiver) and, for
// clicks, links, through the API.
func (r *runner) setup(ctx context.Context, prefix string, sh shape) ([]target, map[string]reply, error) {
	targets := make([]target, sh.apps)
	endpoints := make(map[string]reply, sh.apps*sh.perApp)
	eventType := "bench.event"
	if sh.source == "clicks" {
		eventType = "link.clicked"
	}
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for a := range sh.apps {
		g.Go(func() error {
			var app struct{ ID string }
			if err := r.hookd.post(ctx, "/v1/apps", map[string]any{"name": fmt.Sprintf("%s-app-%d", prefix, a)}, http.StatusCreated, &app); err != nil {
				return err
			}
			t := target{appID: app.ID}
			for e := range sh.perApp {
				name := fmt.Sprintf("%s-%d-%d", prefix, a, e)
				kind := replyOK
				if sh.slow {
					kind = replySlow
				}
				switch i := a*sh.perApp + e; {
				case i < sh.failing:
					kind = replyFail
				case i < sh.failing+sh.hanging:
					kind = replyHang
				}
				in := map[string]any{"url": r.recv.url(name), "event_types": []string{eventType}}
				if sh.fifo {
					in["ordering"] = "fifo"
				}
				if err := r.hookd.post(ctx, "/v1/apps/"+app.ID+"/endpoints", in, http.StatusCreated, nil); err != nil {
					return err
				}
				mu.Lock()
				endpoints[name] = kind
				mu.Unlock()
				if kind == replyOK || kind == replySlow {
					t.expected++
				}
			}
			if sh.source == "clicks" {
				var link struct{ Code string }
				if err := r.hookd.post(ctx, "/v1/apps/"+app.ID+"/links", map[string]any{"url": "https://example.com/" + prefix}, http.StatusCreated, &link); err != nil {
					return err
				}
				t.code = link.Code
			}
			targets[a] = t
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, fmt.Errorf("set up: %w", err)
	}
	return targets, endpoints, nil
}

// sender returns a function that publishes event i of the scenario.
func (r *runner) sender(sh shape, targets []target) func(ctx context.Context, i int) error {
	pad := strings.Repeat("x", 300) // a payload of about 400 bytes
	noRedirect := &http.Client{
		Timeout:       30 * time.Second,
		Transport:     r.hookd.client.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return func(ctx context.Context, i int) error {
		t := targets[i%len(targets)]
		if sh.source == "clicks" {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.hookd.api+"/r/"+t.code, nil)
			if err != nil {
				return err
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				return fmt.Errorf("click: %w", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound {
				return fmt.Errorf("GET /r/%s: %d", t.code, resp.StatusCode)
			}
			return nil
		}
		ev := map[string]any{
			"type":    "bench.event",
			"payload": map[string]any{"n": i, "order_id": "ord_" + strconv.Itoa(i), "amount": 4200, "currency": "EUR", "note": pad},
		}
		return r.hookd.post(ctx, "/v1/apps/"+t.appID+"/events", ev, http.StatusCreated, nil)
	}
}

// drive publishes sh.events events: at the offered rate (open loop: a
// slow response does not delay the next request) or, without a rate, from
// 32 clients as fast as hookd answers. It returns how many were committed
// and when the last response came.
func drive(ctx context.Context, sh shape, send func(context.Context, int) error) (int, time.Time, error) {
	var (
		sent     atomic.Int64
		mu       sync.Mutex
		lastResp time.Time
	)
	done := func() {
		sent.Add(1)
		now := time.Now()
		mu.Lock()
		if now.After(lastResp) {
			lastResp = now
		}
		mu.Unlock()
	}
	if sh.rate == 0 {
		err := forEach(ctx, sh.events, 32, func(ctx context.Context, i int) error {
			if err := send(ctx, i); err != nil {
				return err
			}
			done()
			return nil
		})
		return int(sent.Load()), lastResp, err
	}
	// Open loop: a slow response does not delay the next request.
	g, ctx := errgroup.WithContext(ctx)
	work := make(chan int, 4096)
	for range 128 {
		g.Go(func() error {
			for i := range work {
				if err := send(ctx, i); err != nil {
					return err
				}
				done()
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(work)
		start := time.Now()
		interval := time.Duration(float64(time.Second) / sh.rate)
		for i := range sh.events {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			select {
			case work <- i:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	err := g.Wait()
	return int(sent.Load()), lastResp, err
}

// sampleMemory records hookd's RSS and Go heap every 10s until the
// returned function stops it and returns the samples.
func (r *runner) sampleMemory(ctx context.Context, start time.Time) func() []MemorySample {
	var (
		mu      sync.Mutex
		samples []MemorySample
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	take := func() {
		u, _ := r.hookd.usage()
		heap, _ := r.hookd.gauge(ctx, "go_memstats_heap_inuse_bytes")
		rows, _ := r.db.NewSelect().Table("outbox_events").Count(ctx)
		mu.Lock()
		samples = append(samples, MemorySample{
			AtSeconds:  time.Since(start).Round(time.Second).Seconds(),
			RSSMiB:     float64(u.RSS) / (1 << 20),
			HeapMiB:    heap / (1 << 20),
			OutboxRows: int(rows),
		})
		mu.Unlock()
	}
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		take()
		for {
			select {
			case <-stop:
				take()
				return
			case <-t.C:
				take()
			}
		}
	}()
	return func() []MemorySample {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return samples
	}
}

// gauge reads one unlabelled metric from hookd's /metrics.
func (h *hookd) gauge(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.metrics+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}

// recordedWaitDefault bounds how long a scenario waits for hookd to record
// the deliveries its receiver had.
const recordedWaitDefault = 10 * time.Second

// recorded waits until hookd has recorded want deliveries of the apps as
// succeeded (the receiver has them a moment before), so that a scenario's
// cost includes that work. It gives up, saying so, after
// recordedWaitDefault.
func (r *runner) recorded(ctx context.Context, apps []string, want int) {
	deadline := time.Now().Add(recordedWaitDefault)
	for {
		n, err := ledger.New(r.db).Count(ctx, apps, ledger.StatusSucceeded)
		if err == nil && n >= want {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.log.WarnContext(ctx, "deliveries not all recorded as succeeded", slog.Int("recorded", n), slog.Int("delivered", want), slog.Any("err", err))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// costSince reads the counters now and returns what was spent since
// before, over deliveries; it takes the transaction count after the
// settle.
func (r *runner) costSince(ctx context.Context, before counters, deliveries int) (Cost, error) {
	after, err := r.meter.read(ctx)
	if err != nil {
		return Cost{}, err
	}
	xacts, err := r.settled(ctx, after.at)
	if err != nil {
		return Cost{}, err
	}
	return cost(before, after, xacts, deliveries), nil
}

// settled waits until Config.StatsSettle has passed since since, for
// Postgres to publish every backend's counts, and reads the transaction
// count.
func (r *runner) settled(ctx context.Context, since time.Time) (int64, error) {
	select {
	case <-time.After(time.Until(since.Add(r.cfg.StatsSettle))):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return r.meter.xacts(ctx)
}

// queued counts the tasks hookd's queues hold (pending, active, scheduled
// or waiting to retry).
func (r *runner) queued() (int, error) {
	in := asynq.NewInspectorFromRedisClient(r.rdb)
	queues, err := in.Queues()
	if err != nil {
		return 0, fmt.Errorf("list queues: %w", err)
	}
	var n int
	for _, q := range queues {
		info, err := in.GetQueueInfo(q)
		if err != nil {
			return 0, fmt.Errorf("inspect queue %s: %w", q, err)
		}
		n += info.Pending + info.Active + info.Scheduled + info.Retry
	}
	return n, nil
}

func appIDs(ts []target) []string {
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.appID
	}
	return ids
}

// forEach calls fn for each i in [0, n) from workers goroutines, as fast
// as they go, and returns the first error.
func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for range workers {
		g.Go(func() error {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := fn(ctx, i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}
