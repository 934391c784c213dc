package app_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/guard"
)

// TestFreshDeliveryNotDelayedByBacklog gives one endpoint a backlog of
// 100,000 deliveries to a slow receiver, then publishes events for another
// endpoint: each must arrive within a second of its publication.
func TestFreshDeliveryNotDelayedByBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("a 100,000-delivery backlog; skipped with -short")
	}
	backlog := 100_000
	if v, err := strconv.Atoi(os.Getenv("HOOKD_TEST_BACKLOG")); err == nil && v > 0 {
		backlog = v
	}
	h := start(t, map[string]string{"HOOKD_OVERFLOW_BACKLOG": "100", "HOOKD_ENDPOINT_CONCURRENCY": "5"})

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(slow.Close)
	var (
		mu      sync.Mutex
		arrived = map[string]time.Time{}
	)
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived[r.Header.Get("webhook-id")] = time.Now()
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(fast.Close)

	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	busy := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": slow.URL, "event_types": []string{"bulk.import"}})
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": fast.URL, "event_types": []string{"order.paid"}})

	// The backlog: events, delivery rows and their tasks, through the
	// product's queue and its routing.
	start := time.Now()
	_, err := h.db.ExecContext(t.Context(), `
		INSERT INTO outbox_events (id, tenant, topic, payload, published_at, fanned_out_at)
		SELECT 'evt_' || lpad(g::text, 26, '0'), ?, 'bulk.import', '{}', clock_timestamp(), clock_timestamp()
		FROM generate_series(1, ?) AS g`, appID, backlog)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.db.ExecContext(t.Context(), `
		INSERT INTO deliveries (id, event_id, endpoint_id, app_id, event_type)
		SELECT 'dlv_' || lpad(g::text, 26, '0'), 'evt_' || lpad(g::text, 26, '0'), ?, ?, 'bulk.import'
		FROM generate_series(1, ?) AS g`, busy.ID, appID, backlog)
	if err != nil {
		t.Fatal(err)
	}
	gate := guard.New(h.rdb, guard.Config{Backlog: 100})
	queue := tasks.NewQueue(h.rdb, gate, tasks.QueueConfig{Events: h.queues[0], Deliveries: h.queues[1]})
	const chunk = 1000
	var g errgroup.Group
	g.SetLimit(8)
	for i := 0; i < backlog; i += chunk {
		g.Go(func() error {
			ps := make([]tasks.DeliverPayload, 0, chunk)
			for j := i + 1; j <= min(i+chunk, backlog); j++ {
				id := fmt.Sprintf("%026d", j)
				ps = append(ps, tasks.DeliverPayload{DeliveryID: "dlv_" + id, EventID: "evt_" + id, EndpointID: busy.ID, AppID: appID})
			}
			_, err := queue.EnqueueDeliveries(t.Context(), ps)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("backlog of %d deliveries enqueued in %s", backlog, time.Since(start).Round(time.Millisecond))

	var worst time.Duration
	for i := range 10 {
		sent := time.Now()
		ev := h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": i}})
		waitFor(t, "the fresh delivery", func() bool {
			mu.Lock()
			defer mu.Unlock()
			_, ok := arrived[ev.ID]
			return ok
		})
		mu.Lock()
		took := arrived[ev.ID].Sub(sent)
		mu.Unlock()
		worst = max(worst, took)
		// Behind the backlog it would take many minutes; a loaded
		// machine may take a few seconds.
		if took > 5*time.Second {
			t.Errorf("event %d reached its endpoint %s after publication, behind the backlog", i, took)
		}
		time.Sleep(100 * time.Millisecond)
	}
	left := h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'pending'`, busy.ID)
	t.Logf("slowest fresh delivery %s; %d of the backlog still pending", worst.Round(time.Millisecond), left)
	if left < backlog/2 {
		t.Errorf("only %d of the backlog left: the test did not run under backlog", left)
	}
}

// TestNoisyNeighbourBounded measures one app's delivery latency alone and
// then beside a noisy app whose 20 endpoints hang past the delivery
// timeout with a backlog of 2,000 deliveries: what the noisy app holds of
// the workers is capped (HOOKD_APP_CONCURRENCY), and the quiet app's
// deliveries neither wait for its slots nor queue behind its backlog. The
// bound is a ratio of the two measurements, taken in the same run.
func TestNoisyNeighbourBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a noisy app's backlog; skipped with -short")
	}
	h := start(t, map[string]string{
		"HOOKD_APP_CONCURRENCY":   "8",
		"HOOKD_CIRCUIT_THRESHOLD": "100000",
		"HOOKD_DELIVERY_TIMEOUT":  "2s",
		"HOOKD_RETRY_SCHEDULE":    "1s",
	})

	var (
		mu      sync.Mutex
		arrived = map[string]time.Time{}
		hanging atomic.Int64
		// noisyArrivals are when app B's requests came.
		noisyArrivals []time.Time
	)
	quiet := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived[r.Header.Get("webhook-id")] = time.Now()
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(quiet.Close)
	release := make(chan struct{})
	noisy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hanging.Add(1)
		defer hanging.Add(-1)
		mu.Lock()
		noisyArrivals = append(noisyArrivals, time.Now())
		mu.Unlock()
		select { // past hookd's 2s timeout, until the test ends
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(noisy.Close)
	t.Cleanup(func() { close(release) })

	appA := h.mustCreate("/v1/apps", map[string]any{"name": "quiet"}).ID
	h.mustCreate("/v1/apps/"+appA+"/endpoints", map[string]any{"url": quiet.URL})
	appB := h.mustCreate("/v1/apps", map[string]any{"name": "noisy"}).ID
	for range 20 {
		h.mustCreate("/v1/apps/"+appB+"/endpoints", map[string]any{"url": noisy.URL})
	}

	// latencies publishes n events to app A one after another and returns
	// each one's time from publication to receipt, sorted.
	latencies := func(n int) []time.Duration {
		ds := make([]time.Duration, n)
		for i := range n {
			sent := time.Now()
			ev := h.mustCreate("/v1/apps/"+appA+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": i}})
			waitFor(t, "app A's delivery", func() bool {
				mu.Lock()
				defer mu.Unlock()
				_, ok := arrived[ev.ID]
				return ok
			})
			mu.Lock()
			ds[i] = arrived[ev.ID].Sub(sent)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
		slices.Sort(ds)
		return ds
	}
	const samples = 40
	p90 := func(ds []time.Duration) time.Duration { return ds[len(ds)*9/10] }

	alone := latencies(samples)

	// App B's backlog: 100 events to 20 hanging endpoints.
	var g errgroup.Group
	g.SetLimit(8)
	for i := range 100 {
		g.Go(func() error {
			code := h.do(http.MethodPost, "/v1/apps/"+appB+"/events", map[string]any{"type": "bulk.import", "payload": map[string]any{"n": i}}, nil)
			if code != http.StatusCreated {
				return fmt.Errorf("publish to app B: %d", code)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "app B's 2,000 deliveries", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE app_id = ?`, appB) == 2000
	})
	waitFor(t, "app B's endpoints to hang", func() bool { return hanging.Load() > 0 })

	beside := latencies(samples)
	// hookd waits 2s for each of app B's requests: those that came within
	// 1.5s of one another were all in flight at once. (The receiver's own
	// count lags: it sees a request end only once it notices the closed
	// connection.)
	mu.Lock()
	atOnce := 0
	for i, a := range noisyArrivals {
		n := 0
		for _, b := range noisyArrivals[:i+1] {
			if a.Sub(b) < 1500*time.Millisecond {
				n++
			}
		}
		atOnce = max(atOnce, n)
	}
	mu.Unlock()
	if atOnce > 8 {
		t.Errorf("app B had %d requests in flight at once, over its HOOKD_APP_CONCURRENCY of 8", atOnce)
	}
	t.Logf("app A alone: p50 %s p90 %s; beside app B: p50 %s p90 %s; app B requests in flight at once: %d",
		alone[samples/2], p90(alone), beside[samples/2], p90(beside), atOnce)
	// Without the cap, app B's hanging endpoints hold every worker and app
	// A waits seconds (the delivery timeout) per event. A loaded machine
	// adds noise to both phases; the floor keeps a fast first phase from
	// making a few milliseconds of it count.
	bound := 5 * max(p90(alone), 20*time.Millisecond)
	if p90(beside) > bound {
		t.Errorf("app A's p90 beside a noisy app is %s, over 5x its p90 alone (bound %s)", p90(beside), bound)
	}
	if left := h.count(`SELECT count(*) FROM deliveries WHERE app_id = ? AND status = 'pending'`, appB); left < 1000 {
		t.Errorf("only %d of app B's backlog left: the test did not run beside it", left)
	}
}

// TestBodyHeldOncePerEvent publishes one 250 KiB event to 200 endpoints
// that fail until their deliveries become dead letters: the delivery tasks
// and the dead letters Redis keeps hold no copy of the body.
func TestBodyHeldOncePerEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and Redis; skipped with -short")
	}
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms"})
	var (
		mu     sync.Mutex
		bodies = map[int]int{} // body length -> requests
	)
	fail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies[len(b)]++
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(fail.Close)

	appID := h.mustCreate("/v1/apps", map[string]any{"name": "big"}).ID
	const endpoints = 200
	for range endpoints {
		h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": fail.URL})
	}
	blob := strings.Repeat("x", 250<<10)
	ev := h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "big.event", "payload": map[string]any{"blob": blob}})

	var taskMem, maxDelivery int64
	measure := func() {
		taskMem, maxDelivery = 0, 0
		for i, q := range h.queues {
			var cursor uint64
			for {
				keys, next, err := h.rdb.Scan(t.Context(), cursor, "asynq:{"+q+"}:t:*", 500).Result()
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range keys {
					n, err := h.rdb.MemoryUsage(t.Context(), k).Result()
					if err != nil {
						t.Fatal(err)
					}
					taskMem += n
					if i > 0 {
						maxDelivery = max(maxDelivery, n)
					}
				}
				if cursor = next; cursor == 0 {
					break
				}
			}
		}
	}
	// The fan-out makes each first attempt, which fails: each delivery
	// then has a task for its retry.
	waitFor(t, "200 first attempts", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE event_id = ? AND attempts > 0`, ev.ID) == endpoints
	})
	measure()
	t.Logf("after the first attempts: tasks hold %d bytes in Redis; largest delivery task %d bytes", taskMem, maxDelivery)
	waitFor(t, "200 dead letters", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE event_id = ? AND status = 'failed'`, ev.ID) == endpoints
	})
	measure()
	t.Logf("dead-lettered: tasks hold %d bytes in Redis; largest delivery task %d bytes", taskMem, maxDelivery)
	// The fan-out task keeps the event (its body, once) for its retention;
	// each delivery task and dead letter only names it.
	if limit := int64(2<<20 + endpoints<<10); taskMem > limit {
		t.Errorf("Redis holds %d bytes of tasks for one 250 KiB event to %d endpoints, over %d", taskMem, endpoints, limit)
	}
	if maxDelivery > 1<<10 {
		t.Errorf("a delivery task holds %d bytes, over 1 KiB: the body is in it", maxDelivery)
	}
	mu.Lock()
	defer mu.Unlock()
	for n := range bodies {
		if n < 250<<10 {
			t.Errorf("a request carried a %d-byte body, want the whole event", n)
		}
	}
}

// TestBusyEndpointWaitersAreWoken: deliveries that find their endpoint's
// in-flight slots taken wait to be woken when one frees, rather than
// coming back to ask every second: each is postponed about once, and the
// backlog drains at the endpoint's concurrency.
func TestBusyEndpointWaitersAreWoken(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and Redis; skipped with -short")
	}
	h := start(t, map[string]string{"HOOKD_ENDPOINT_CONCURRENCY": "2"})
	var inFlight, most atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(200 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(slow.Close)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": slow.URL})
	const events = 40
	for i := range events {
		h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": i}})
	}
	waitFor(t, "every delivery", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE status = 'succeeded'`) == events
	})
	busy := h.metricValue("hookd_delivery_attempts_total", map[string]string{"outcome": "endpoint_busy"})
	woken := h.metricValue("hookd_deliveries_woken_total", nil)
	t.Logf("%d deliveries, at most %d in flight: %v postponements for a busy endpoint, %v wakes", events, most.Load(), busy, woken)
	if most.Load() > 2 {
		t.Errorf("%d requests in flight at once, over HOOKD_ENDPOINT_CONCURRENCY=2", most.Load())
	}
	// Draining takes 40 x 200ms / 2 = 4s: asking again every second would
	// postpone each waiting delivery about 2 times on average.
	if busy > 1.5*events {
		t.Errorf("%v postponements for %d deliveries: waiters are not woken", busy, events)
	}
	if woken == 0 {
		t.Error("no waiting delivery was woken")
	}
}
