package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/hookd/hookd/tasks"
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

	// The backlog: delivery rows and their tasks, through the product's
	// queue and its routing.
	start := time.Now()
	_, err := h.db.ExecContext(t.Context(), `
		INSERT INTO deliveries (id, event_id, endpoint_id, app_id, event_type)
		SELECT 'dlv_' || lpad(g::text, 26, '0'), 'evt_' || lpad(g::text, 26, '0'), ?, ?, 'bulk.import'
		FROM generate_series(1, ?) AS g`, busy.ID, appID, backlog)
	if err != nil {
		t.Fatal(err)
	}
	fair := tasks.NewFairness(h.rdb, tasks.FairnessConfig{BacklogThreshold: 100})
	queue := tasks.NewQueue(asynq.NewClientFromRedisClient(h.rdb), fair, tasks.QueueConfig{Events: h.queues[0], Deliveries: h.queues[1]})
	body, _ := json.Marshal(map[string]any{"type": "bulk.import", "data": map[string]any{}})
	const chunk = 1000
	var g errgroup.Group
	g.SetLimit(8)
	for i := 0; i < backlog; i += chunk {
		g.Go(func() error {
			ps := make([]tasks.DeliverPayload, 0, chunk)
			for j := i + 1; j <= min(i+chunk, backlog); j++ {
				id := fmt.Sprintf("%026d", j)
				ps = append(ps, tasks.DeliverPayload{DeliveryID: "dlv_" + id, EventID: "evt_" + id, EndpointID: busy.ID, Body: body})
			}
			return queue.EnqueueDeliveries(t.Context(), ps)
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
