package app_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks"
)

type deadLetterItem struct {
	DeliveryID string  `json:"delivery_id"`
	AppID      string  `json:"app_id"`
	EndpointID string  `json:"endpoint_id"`
	EventID    string  `json:"event_id"`
	EventType  string  `json:"event_type"`
	LastError  *string `json:"last_error"`
	FailedAt   string  `json:"failed_at"`
}

type deadLetterPage struct {
	Data       []deadLetterItem `json:"data"`
	NextCursor *string          `json:"next_cursor"`
}

// switchable returns a receiver that fails with 500 until ok is set.
func switchable(t *testing.T) (*receiver, *atomic.Bool) {
	var ok atomic.Bool
	return newReceiver(t, func(int) int {
		if ok.Load() {
			return http.StatusNoContent
		}
		return http.StatusInternalServerError
	}), &ok
}

func (h *harness) deliveryStatus(id string) string {
	h.t.Helper()
	var status string
	if err := h.db.NewSelect().Table("deliveries").Column("status").Where("id = ?", id).Scan(h.t.Context(), &status); err != nil {
		return ""
	}
	return status
}

func TestDeadLetterRetryFromAPI(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms"})
	recv, ok := switchable(t)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	ep := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})
	ev := h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": 1}})

	var dl deadLetterPage
	waitFor(t, "a dead letter", func() bool {
		h.do(http.MethodGet, "/v1/dead-letters?app_id="+appID, nil, &dl)
		return len(dl.Data) == 1
	})
	d := dl.Data[0]
	if d.AppID != appID || d.EndpointID != ep.ID || d.EventID != ev.ID || d.EventType != "order.paid" || d.LastError == nil || d.FailedAt == "" {
		t.Fatalf("dead letter = %+v", d)
	}
	if n := len(recv.got()); n != 2 {
		t.Errorf("receiver got %d requests before the dead letter, want 2 (1 try + 1 retry)", n)
	}

	ok.Store(true)
	var retried struct {
		Status string `json:"status"`
	}
	if code := h.do(http.MethodPost, "/v1/dead-letters/"+d.DeliveryID+"/retry", nil, &retried); code != http.StatusAccepted || retried.Status != "pending" {
		t.Fatalf("retry = %d %+v, want 202 pending", code, retried)
	}
	waitFor(t, "the retried dead letter to succeed", func() bool {
		var got struct {
			Status string `json:"status"`
		}
		h.do(http.MethodGet, "/v1/apps/"+appID+"/deliveries/"+d.DeliveryID, nil, &got)
		return got.Status == "succeeded"
	})
	if code, p, _ := h.raw(http.MethodPost, "/v1/dead-letters/"+d.DeliveryID+"/retry", "Bearer "+adminKey, "", ""); code != http.StatusConflict {
		t.Errorf("retrying a succeeded delivery = %d %v, want 409", code, p)
	}
	h.do(http.MethodGet, "/v1/dead-letters?app_id="+appID, nil, &dl)
	if len(dl.Data) != 0 {
		t.Errorf("dead letters after the retry succeeded: %+v", dl.Data)
	}
	// The retried webhook is the same message: same webhook-id and body.
	got := recv.got()
	last, first := got[len(got)-1], got[0]
	if last.header.Get("webhook-id") != first.header.Get("webhook-id") || !bytes.Equal(last.body, first.body) {
		t.Errorf("retried webhook differs: %s %s vs %s %s", last.header.Get("webhook-id"), last.body, first.header.Get("webhook-id"), first.body)
	}
}

// TestDeadLetterRetryWhileTaskActive: a dead letter is marked in Postgres a
// moment before asynq archives its task; a retry in that moment waits for
// the task, holding no lock, instead of failing. Here the delivery's task
// (its retry: the fan-out made the first attempt, which fails) is held
// active by a slow receiver and then succeeds: the retry finds no dead
// letter left (409) and nothing is sent twice.
func TestDeadLetterRetryWhileTaskActive(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	// The receiver holds the request until the test has marked the
	// delivery failed and is sending the retry.
	release := make(chan struct{})
	var once sync.Once
	releaseNow := func() { once.Do(func() { close(release) }) }
	recv := newReceiver(t, func(n int) int {
		if n == 0 {
			return http.StatusInternalServerError
		}
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		return http.StatusNoContent
	})
	t.Cleanup(releaseNow) // before the receiver's Close waits for it
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})
	h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": 1}})
	waitFor(t, "the delivery's task under way", func() bool { return len(recv.got()) == 2 })
	var id string
	if err := h.db.NewRaw(`UPDATE deliveries SET status = 'failed', failed_at = clock_timestamp() RETURNING id`).Scan(t.Context(), &id); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(200*time.Millisecond, releaseNow) // while the retry waits
	code, p, _ := h.raw(http.MethodPost, "/v1/dead-letters/"+id+"/retry", "Bearer "+adminKey, "", "")
	if code != http.StatusConflict {
		t.Errorf("retry while the task runs = %d %v, want 409 once it has succeeded", code, p)
	}
	if got := h.deliveryStatus(id); got != "succeeded" {
		t.Errorf("delivery %s, want succeeded", got)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(recv.got()); n != 2 {
		t.Errorf("receiver got %d requests, want 2 (the first attempt and the task's)", n)
	}
}

func TestBulkRetryByEndpoint(t *testing.T) {
	t.Parallel()
	// Every delivery fails: the circuits must stay closed for them to.
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms", "HOOKD_CIRCUIT_THRESHOLD": "1000"})
	recv1, ok1 := switchable(t)
	recv2, ok2 := switchable(t)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	ep1 := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv1.URL})
	ep2 := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv2.URL})
	const events = 30
	for i := range events {
		h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": i}})
	}
	waitFor(t, "every delivery to fail", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE status = 'failed'`) == 2*events
	})
	ok1.Store(true)
	ok2.Store(true)

	var job struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Retried int    `json:"retried"`
	}
	if code := h.do(http.MethodPost, "/v1/dead-letters/retry", map[string]any{"endpoint_id": ep1.ID}, &job); code != http.StatusAccepted || !strings.HasPrefix(job.ID, "dlr_") {
		t.Fatalf("bulk retry = %d %+v, want 202 with a job", code, job)
	}
	waitFor(t, "the bulk retry to complete", func() bool {
		h.do(http.MethodGet, "/v1/dead-letters/retries/"+job.ID, nil, &job)
		return job.Status == "completed"
	})
	if job.Retried != events {
		t.Errorf("bulk retry retried %d, want %d", job.Retried, events)
	}
	waitFor(t, "endpoint 1's deliveries to succeed", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'succeeded'`, ep1.ID) == events
	})
	if n := h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'failed'`, ep2.ID); n != events {
		t.Errorf("endpoint 2 has %d dead letters after a retry of endpoint 1's, want %d", n, events)
	}

	// The CLI retries the rest.
	var out bytes.Buffer
	env := map[string]string{
		"HOOKD_DATABASE_URL": accDatabaseURL(t, h),
		"HOOKD_REDIS_URL":    testRedisURL(t),
	}
	log := slog.New(slog.DiscardHandler)
	if err := app.Main(t.Context(), []string{"dlq", "list", "--endpoint", ep2.ID}, func(k string) string { return env[k] }, &out, log); err != nil {
		t.Fatalf("dlq list: %v", err)
	}
	if n := strings.Count(out.String(), ep2.ID); n != events {
		t.Errorf("dlq list shows %d dead letters of endpoint 2, want %d:\n%s", n, events, out.String())
	}
	// The CLI enqueues on the default queue, which no worker of this test
	// serves: the test checks that Postgres and the queue agree on what was
	// retried, then drops the queue.
	t.Cleanup(func() { _ = asynq.NewInspectorFromRedisClient(h.rdb).DeleteQueue("deliveries", true) })
	out.Reset()
	if err := app.Main(t.Context(), []string{"dlq", "retry", "--all", "--endpoint", ep2.ID}, func(k string) string { return env[k] }, &out, log); err != nil {
		t.Fatalf("dlq retry: %v", err)
	}
	if !strings.Contains(out.String(), "retried 30 dead letters") {
		t.Errorf("dlq retry printed %q", out.String())
	}
	if n := h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'pending'`, ep2.ID); n != events {
		t.Errorf("%d of endpoint 2's deliveries pending after dlq retry --all, want %d", n, events)
	}
	var ids []string
	if err := h.db.NewSelect().Table("deliveries").Column("id").Where("endpoint_id = ?", ep2.ID).Scan(t.Context(), &ids); err != nil {
		t.Fatal(err)
	}
	ins := asynq.NewInspectorFromRedisClient(h.rdb)
	for _, id := range ids {
		if _, err := ins.GetTaskInfo("deliveries", id); err != nil {
			t.Errorf("delivery %s retried without a task: %v", id, err)
		}
	}
}

// TestBulkRetryOfTenThousand retries 10,000 dead letters: the request
// returns at once with a job, which retries them all in the background.
func TestBulkRetryOfTenThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 dead letters; skipped with -short")
	}
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	ep := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})
	const n = 10_000
	// Event IDs of today (retention takes older ones for expired), of
	// events published and fanned out long ago.
	day := outbox.IDAt("evt", time.Now())[:len("evt_")+12]
	_, err := h.db.ExecContext(t.Context(), `
		INSERT INTO outbox_events (id, tenant, topic, payload, published_at, fanned_out_at)
		SELECT ? || lpad(g::text, 14, '0'), ?, 'bulk.import', '{"n":1}', clock_timestamp(), clock_timestamp()
		FROM generate_series(1, ?) AS g`, day, appID, n)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.db.ExecContext(t.Context(), `
		INSERT INTO deliveries (id, event_id, endpoint_id, app_id, event_type, status, attempts, last_error, failed_at)
		SELECT 'dlv_' || lpad(g::text, 26, '0'), ? || lpad(g::text, 14, '0'), ?, ?, 'bulk.import',
		       'failed', 8, 'HTTP 500', clock_timestamp() - interval '1 minute'
		FROM generate_series(1, ?) AS g`, day, ep.ID, appID, n)
	if err != nil {
		t.Fatal(err)
	}

	var job struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Retried int    `json:"retried"`
	}
	sent := time.Now()
	if code := h.do(http.MethodPost, "/v1/dead-letters/retry", map[string]any{"app_id": appID}, &job); code != http.StatusAccepted {
		t.Fatalf("bulk retry = %d, want 202", code)
	}
	if took := time.Since(sent); took > 2*time.Second {
		t.Errorf("starting a bulk retry of %d took %s: it must not wait for the retries", n, took)
	}
	// Generous: CI runs this beside the fault suite on two cores; alone
	// it takes about 16 s with the race detector.
	deadline := time.Now().Add(4 * time.Minute)
	for job.Status != "completed" {
		if time.Now().After(deadline) {
			t.Fatalf("bulk retry still %s after 4 minutes, %d retried", job.Status, job.Retried)
		}
		time.Sleep(100 * time.Millisecond)
		h.do(http.MethodGet, "/v1/dead-letters/retries/"+job.ID, nil, &job)
	}
	t.Logf("bulk retry of %d dead letters completed in %s", n, time.Since(sent).Round(time.Millisecond))
	if job.Retried != n {
		t.Errorf("bulk retry retried %d, want %d", job.Retried, n)
	}
	if left := h.count(`SELECT count(*) FROM deliveries WHERE status = 'failed'`); left != 0 {
		t.Errorf("%d dead letters left", left)
	}
}

// TestDLQRetryEnqueuesAsServe runs `hookd dlq retry` with a retry schedule
// and a delivery timeout other than the defaults. The task it enqueues must
// be the one serve would enqueue: in the configured delivery queue, with the
// schedule's retries and the task timeout that outlasts the delivery
// timeout (a shorter one would let asynq run a slow delivery twice at
// once); and the worker serving those queues delivers it.
func TestDLQRetryEnqueuesAsServe(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"HOOKD_RETRY_SCHEDULE":    "10ms,10ms,10ms",
		"HOOKD_DELIVERY_TIMEOUT":  "40s",
		"HOOKD_SHUTDOWN_TIMEOUT":  "40s",
		"HOOKD_CIRCUIT_THRESHOLD": "1000",
	}
	const (
		wantMaxRetry = 3 + 1                           // the schedule's retries, and the deliverer's spare
		wantTimeout  = 40*time.Second + 15*time.Second // the delivery timeout and serve's margin
	)
	h := start(t, env)
	recv, ok := switchable(t)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})
	h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": 1}})
	var id string
	waitFor(t, "the delivery to fail", func() bool {
		err := h.db.NewSelect().Table("deliveries").Column("id").
			Where("app_id = ? AND status = 'failed'", appID).Scan(t.Context(), &id)
		return err == nil
	})
	deliveries := h.queues[1]
	ins := asynq.NewInspectorFromRedisClient(h.rdb)
	waitFor(t, "its task to be archived", func() bool {
		info, err := ins.GetTaskInfo(deliveries, id)
		return err == nil && info.State == asynq.TaskStateArchived
	})
	if n := len(recv.got()); n != wantMaxRetry {
		t.Fatalf("receiver got %d requests before the retry, want %d (the first attempt and 3 retries)", n, wantMaxRetry)
	}
	ok.Store(true)

	// Hold the delivery queue, so that the task is read before a worker
	// takes it.
	if err := ins.PauseQueue(deliveries); err != nil {
		t.Fatal(err)
	}
	env["HOOKD_DATABASE_URL"] = accDatabaseURL(t, h)
	env["HOOKD_REDIS_URL"] = testRedisURL(t)
	var out bytes.Buffer
	queue := tasks.QueueConfig{Events: h.queues[0], Deliveries: deliveries}
	if err := app.DLQ(t.Context(), []string{"retry", id}, func(k string) string { return env[k] }, &out, slog.New(slog.DiscardHandler), queue); err != nil {
		t.Fatalf("dlq retry: %v", err)
	}
	if !strings.Contains(out.String(), "retried 1 of 1") {
		t.Errorf("dlq retry printed %q", out.String())
	}
	info, err := ins.GetTaskInfo(deliveries, id)
	if err != nil {
		t.Fatalf("no task of %s in the delivery queue %s after dlq retry: %v", id, deliveries, err)
	}
	if info.State != asynq.TaskStatePending || info.MaxRetry != wantMaxRetry || info.Timeout != wantTimeout || !info.Deadline.IsZero() {
		t.Errorf("dlq retry enqueued %s, max retry %d, timeout %s, deadline %v; want pending, %d, %s and none",
			info.State, info.MaxRetry, info.Timeout, info.Deadline, wantMaxRetry, wantTimeout)
	}

	if err := ins.UnpauseQueue(deliveries); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delivery to succeed", func() bool { return h.deliveryStatus(id) == "succeeded" })
	got := recv.got()
	if len(got) != wantMaxRetry+1 {
		t.Fatalf("receiver got %d requests, want %d (the retried dead letter last)", len(got), wantMaxRetry+1)
	}
	if first, last := got[0].header.Get("webhook-id"), got[len(got)-1].header.Get("webhook-id"); first == "" || last != first {
		t.Errorf("retried delivery's webhook-id %q, want the first attempt's %q", last, first)
	}
}

// TestDLQRefusesFiltersPostgresCannotCompare: `hookd dlq` checks its
// filters as the API does, before it opens the database.
func TestDLQRefusesFiltersPostgresCannotCompare(t *testing.T) {
	t.Parallel()
	env := map[string]string{"HOOKD_DATABASE_URL": "postgres://hookd@127.0.0.1:1/none?sslmode=disable"}
	for _, args := range [][]string{
		{"dlq", "retry", "--all", "--since", "0000-01-01T00:00:00Z"},
		{"dlq", "list", "--until", "0000-01-01T00:00:00Z"},
		{"dlq", "list", "--endpoint", "ep_\x00"},
		{"dlq", "list", "--event-type", "a\x01b"},
	} {
		var out strings.Builder
		err := app.Main(t.Context(), args, func(k string) string { return env[k] }, &out, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), args[len(args)-2]) || strings.Contains(err.Error(), "connect") {
			t.Errorf("%q: error %v, want one naming %s before any connection", args, err, args[len(args)-2])
		}
	}
}
