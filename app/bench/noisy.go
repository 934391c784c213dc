package bench

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/hookd/hookd/tasks/ledger"
)

// Noisy is what the noisy scenario measured: the latency of app A, which
// sends a steady rate to healthy endpoints, first alone and then next to
// app B, whose endpoints all hang past hookd's delivery timeout and which
// has a backlog queued for them.
//
// hookd runs with the bench's delivery timeout (Config.DeliveryTimeout, 3s
// by default rather than hookd's 15s), so that B's attempts end, and the
// run with them, in a bounded time; B's endpoints hold each request that
// long and then some, then close the connection. hookd's other settings
// (endpoint concurrency, circuit breaker, worker concurrency) keep their
// values, from the environment or hookd's defaults.
type Noisy struct {
	// Rate is A's offered events/s, open loop, to Endpoints healthy
	// endpoints, for PhaseSeconds alone and PhaseSeconds next to B.
	Rate         float64 `json:"rate"`
	Endpoints    int     `json:"endpoints"`
	PhaseSeconds float64 `json:"phase_seconds"`
	// HangingEndpoints are B's, each holding a request past
	// DeliveryTimeoutSeconds; Backlog events were posted to B before A's
	// second phase.
	HangingEndpoints       int     `json:"hanging_endpoints"`
	Backlog                int     `json:"backlog_events"`
	DeliveryTimeoutSeconds float64 `json:"delivery_timeout_seconds"`
	// BacklogDeliveries is how many of B's delivery rows hookd had written
	// when A's second phase began: Backlog × HangingEndpoints, unless the
	// wait for them (noisyFanoutWaitDefault) ran out. FanoutSeconds is
	// from B's first event posted to then.
	BacklogDeliveries int     `json:"backlog_deliveries"`
	FanoutSeconds     float64 `json:"backlog_fanout_seconds"`
	// HungRequests counts the requests B's endpoints held.
	HungRequests int `json:"hung_requests"`
	// Alone and NextToB are A's commit-to-receipt latencies in each phase;
	// P99Ratio is NextToB.P99 over Alone.P99.
	Alone    Latency `json:"alone"`
	NextToB  Latency `json:"next_to_b"`
	P99Ratio float64 `json:"p99_ratio"`
	// AloneCost is the cost of A's first phase, per delivery to A. The
	// scenario's Cost is that of its second phase, per delivery to A too:
	// it includes what B's attempts and postponements cost meanwhile (and,
	// for its Postgres transactions, during the settle after it).
	AloneCost Cost `json:"alone_cost"`
}

// The noisy scenario's layout.
const (
	noisyHealthyEndpoints = 2
	noisyHangingEndpoints = 20
	// noisyFanoutWaitDefault bounds the wait for B's delivery rows.
	noisyFanoutWaitDefault = 2 * time.Minute
	// noisyDrainWaitDefault bounds the wait, when another scenario
	// follows, for hookd to drop the tasks B left behind.
	noisyDrainWaitDefault = 90 * time.Second
	// deliveryIdleWaitDefault is how long a scenario waits for its next
	// delivery before it counts the missing ones as lost.
	deliveryIdleWaitDefault = 20 * time.Second
)

// phaseResult is what one of app A's phases measured.
type phaseResult struct {
	start, lastResp, last time.Time
	sent, delivered, dups int
	lat                   Latency
	cost                  Cost
	complete              bool
}

// runNoisy runs the noisy scenario: A alone, B's backlog, A next to B.
func (r *runner) runNoisy(ctx context.Context, prefix string) (Result, error) {
	phaseEvents := int(r.cfg.NoisyRate * r.cfg.NoisyPhase.Seconds())
	shA := shape{source: "api", apps: 1, perApp: noisyHealthyEndpoints, events: phaseEvents, rate: r.cfg.NoisyRate}
	shB := shape{source: "api", apps: 1, perApp: noisyHangingEndpoints, hanging: noisyHangingEndpoints, events: r.cfg.NoisyBacklog}
	n := &Noisy{
		Rate: shA.rate, Endpoints: shA.perApp, PhaseSeconds: r.cfg.NoisyPhase.Seconds(),
		HangingEndpoints: shB.hanging, Backlog: shB.events, DeliveryTimeoutSeconds: r.cfg.DeliveryTimeout.Seconds(),
	}
	res := Result{
		Scenario: ScenarioNoisy, Source: "api", OfferedRate: shA.rate, Events: 2 * phaseEvents,
		FanOut: shA.perApp, Endpoints: shA.perApp, HangingEndpoints: shB.hanging, Noisy: n,
	}
	as, epA, err := r.setup(ctx, prefix+"a", shA)
	if err != nil {
		return res, err
	}
	bs, epB, err := r.setup(ctx, prefix+"b", shB)
	if err != nil {
		return res, err
	}
	a, b := as[0], bs[0]
	res.Expected = 2 * phaseEvents * a.expected
	endpoints := maps.Clone(epA)
	maps.Copy(endpoints, epB)

	usage := r.hookd.sample(sampleIntervalDefault)
	start := time.Now()
	rd1 := r.recv.begin(endpoints, phaseEvents*a.expected)
	defer r.recv.release(rd1) // B's requests still held, whatever happens
	alone, err := r.noisyPhase(ctx, rd1, shA, a, 0)
	if err != nil {
		return res, err
	}
	if !alone.complete {
		return res, fmt.Errorf("%w: A alone: %d of %d arrived", errIncomplete, alone.delivered, phaseEvents*a.expected)
	}

	// B's backlog, posted to endpoints that already hang.
	queued, err := r.queued()
	if err != nil {
		return res, err
	}
	backlogStart := time.Now()
	if _, _, err := drive(ctx, shB, r.sender(shB, bs)); err != nil {
		return res, fmt.Errorf("post B's backlog: %w", err)
	}
	if n.BacklogDeliveries, err = r.fannedOut(ctx, b.appID, shB.events*noisyHangingEndpoints); err != nil {
		return res, err
	}
	n.FanoutSeconds = time.Since(backlogStart).Seconds()

	rd2 := r.recv.next(rd1, phaseEvents*a.expected)
	next, err := r.noisyPhase(ctx, rd2, shA, a, alone.delivered)
	if err != nil {
		return res, err
	}
	cpu, peak := usage.end()
	n.HungRequests = r.recv.hung(rd1) + r.recv.hung(rd2)
	n.Alone, n.NextToB, n.AloneCost = alone.lat, next.lat, alone.cost
	if alone.lat.P99 > 0 {
		n.P99Ratio = next.lat.P99 / alone.lat.P99
	}
	res.Delivered, res.Duplicates = alone.delivered+next.delivered, alone.dups+next.dups
	res.Latency, res.Cost = next.lat, &next.cost
	res.IngestPerSec = float64(next.sent) / next.lastResp.Sub(next.start).Seconds()
	res.DeliveriesPerSec = float64(next.delivered) / next.last.Sub(next.start).Seconds()
	res.CPUSeconds = cpu.Seconds()
	res.PeakRSSMiB = float64(peak) / (1 << 20)
	res.Seconds = time.Since(start).Seconds()

	// Let go of B: its held requests, then the app, whose queued
	// deliveries hookd then drops as it meets them.
	r.recv.release(rd2)
	if err := r.hookd.delete(ctx, "/v1/apps/"+b.appID); err != nil {
		return res, fmt.Errorf("delete app B: %w", err)
	}
	if !r.last {
		r.drained(ctx, queued)
	}
	if !next.complete {
		return res, fmt.Errorf("%w: A next to B: %d of %d arrived", errIncomplete, next.delivered, phaseEvents*a.expected)
	}
	return res, nil
}

// noisyPhase sends app A's events at its rate into round rd and measures
// their latency and cost; A had delivered deliveries recorded before.
func (r *runner) noisyPhase(ctx context.Context, rd *round, sh shape, a target, delivered int) (phaseResult, error) {
	before, err := r.meter.read(ctx)
	if err != nil {
		return phaseResult{}, err
	}
	p := phaseResult{start: time.Now()}
	if p.sent, p.lastResp, err = drive(ctx, sh, r.sender(sh, []target{a})); err != nil {
		return p, err
	}
	p.complete = r.recv.wait(rd, sh.events*a.expected, deliveryIdleWaitDefault)
	p.delivered, p.dups, _, _, p.last, p.lat = r.recv.summary(rd)
	r.recorded(ctx, []string{a.appID}, delivered+p.delivered)
	p.cost, err = r.costSince(ctx, before, p.delivered)
	return p, err
}

// fannedOut waits until app has want delivery rows, or
// noisyFanoutWaitDefault passed, and returns how many it has.
func (r *runner) fannedOut(ctx context.Context, app string, want int) (int, error) {
	deadline := time.Now().Add(noisyFanoutWaitDefault)
	for {
		n, err := ledger.New(r.db).Count(ctx, []string{app}, "")
		if err != nil {
			return 0, fmt.Errorf("count B's deliveries: %w", err)
		}
		if n >= want {
			return n, nil
		}
		if time.Now().After(deadline) {
			r.log.WarnContext(ctx, "backlog not fanned out in time", slog.Int("deliveries", n), slog.Int("want", want))
			return n, nil
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
}

// drained waits until hookd's queues hold no more tasks than they did
// before (queued), or noisyDrainWaitDefault passed, so that the next
// scenario does not share hookd with what B left behind.
func (r *runner) drained(ctx context.Context, queued int) {
	deadline := time.Now().Add(noisyDrainWaitDefault)
	for {
		n, err := r.queued()
		if err == nil && n <= queued {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.log.WarnContext(ctx, "tasks left by the noisy scenario still queued", slog.Int("queued", n), slog.Int("before", queued), slog.Any("err", err))
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}
