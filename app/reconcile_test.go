package app_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
)

// reconcileFast makes the reconciler look every 100ms at work older than
// 1s: long enough that a fan-out between writing its deliveries and
// enqueuing their tasks is not mistaken for a loss on a loaded machine.
var reconcileFast = map[string]string{"HOOKD_RECONCILE_INTERVAL": "100ms", "HOOKD_RECONCILE_AFTER": "1s"}

func with(base map[string]string, kv ...string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestReconcilerRequeuesLostFanout: a fan-out task Redis lost (no worker
// runs here, so it waits in the queue until it is deleted) is enqueued
// again, once; a fan-out still queued is left alone.
func TestReconcilerRequeuesLostFanout(t *testing.T) {
	t.Parallel()
	h := start(t, with(reconcileFast, "HOOKD_ROLES", "api,relay,reconciler"))
	ins := asynq.NewInspectorFromRedisClient(h.rdb)
	pending := func() int {
		info, err := ins.GetQueueInfo(h.queues[0])
		if err != nil {
			return 0
		}
		return info.Pending
	}
	appID := dlvApp(h)
	dlvAddEndpoint(h, appID, "http://127.0.0.1:1/")
	dlvPublish(h, appID, "order.paid")
	waitFor(t, "the fan-out task", func() bool { return pending() == 1 })

	// Passes go by while the task is queued: nothing to repair.
	time.Sleep(600 * time.Millisecond)
	if n := h.metricValue("hookd_reconciler_repaired_total", map[string]string{"kind": "fanout"}); n != 0 {
		t.Fatalf("repaired %v fan-outs that Redis still held", n)
	}
	if _, err := ins.DeleteAllPendingTasks(h.queues[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fan-out enqueued again", func() bool { return pending() == 1 })
	time.Sleep(600 * time.Millisecond)
	if n := h.metricValue("hookd_reconciler_repaired_total", map[string]string{"kind": "fanout"}); n != 1 {
		t.Errorf("repaired %v fan-outs, want 1", n)
	}
	if n := pending(); n != 1 {
		t.Errorf("%d fan-out tasks queued, want 1", n)
	}
}

// TestReconcilerRequeuesLostDelivery: a delivery waiting for its retry
// whose task Redis lost is enqueued again and delivered, with the same
// webhook-id.
func TestReconcilerRequeuesLostDelivery(t *testing.T) {
	t.Parallel()
	h := start(t, with(reconcileFast, "HOOKD_RETRY_SCHEDULE", "1h"))
	recv := newReceiver(t, func(n int) int {
		if n == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	ins := asynq.NewInspectorFromRedisClient(h.rdb)
	appID := dlvApp(h)
	epID := dlvAddEndpoint(h, appID, recv.URL)
	evID := dlvPublish(h, appID, "order.paid")
	dlvID := dlvDeliveryID(h, evID, epID)
	// The fan-out made the first attempt: its retry is a task scheduled
	// an hour away.
	waitFor(t, "the retry an hour away", func() bool {
		info, err := ins.GetQueueInfo(h.queues[1])
		return err == nil && info.Scheduled == 1
	})
	if _, err := ins.DeleteAllScheduledTasks(h.queues[1]); err != nil {
		t.Fatal(err)
	}
	d := dlvWaitStatus(h, appID, dlvID, "succeeded")
	if d.AttemptCount != 2 {
		t.Errorf("%d attempts, want 2", d.AttemptCount)
	}
	got := recv.got()
	if len(got) != 2 || got[0].header.Get("webhook-id") != got[1].header.Get("webhook-id") {
		t.Errorf("requests %d, webhook-ids differ or missing", len(got))
	}
	if n := h.metricValue("hookd_reconciler_repaired_total", map[string]string{"kind": "delivery"}); n != 1 {
		t.Errorf("repaired %v deliveries, want 1", n)
	}
}

// TestFanoutRunAgain: a fan-out run again for an event enqueues only what
// Redis lost: a
// delivery that succeeded is not sent again, one waiting for its retry
// keeps its task, one whose task is gone is sent.
func TestFanoutRunAgain(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "1h"}) // no reconciler: the fan-out repairs
	ok := newReceiver(t, nil)
	failFirst := func(n int) int {
		if n == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	}
	waiting, lost := newReceiver(t, failFirst), newReceiver(t, failFirst)
	ins := asynq.NewInspectorFromRedisClient(h.rdb)
	appID := dlvApp(h)
	okEp, waitingEp, lostEp := dlvAddEndpoint(h, appID, ok.URL), dlvAddEndpoint(h, appID, waiting.URL), dlvAddEndpoint(h, appID, lost.URL)
	evID := dlvPublish(h, appID, "order.paid")
	dlvWaitStatus(h, appID, dlvDeliveryID(h, evID, okEp), "succeeded")
	lostID := dlvDeliveryID(h, evID, lostEp)
	waitFor(t, "two retries an hour away", func() bool {
		info, err := ins.GetQueueInfo(h.queues[1])
		return err == nil && info.Scheduled == 2
	})
	if err := ins.DeleteTask(h.queues[1], lostID); err != nil {
		t.Fatal(err)
	}
	// The fan-out runs again: its task is deleted (as when a worker dies
	// and asynq hands it to another) and the relay publishes the event
	// again.
	if err := ins.DeleteTask(h.queues[0], evID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.ExecContext(t.Context(), `UPDATE outbox_events SET published_at = NULL WHERE id = ?`, evID); err != nil {
		t.Fatal(err)
	}
	dlvWaitStatus(h, appID, lostID, "succeeded")
	time.Sleep(300 * time.Millisecond)
	if n := len(ok.got()); n != 1 {
		t.Errorf("the succeeded delivery was sent %d times, want 1", n)
	}
	if n := len(waiting.got()); n != 1 {
		t.Errorf("the delivery waiting for its retry was sent %d times, want 1", n)
	}
	if info, err := ins.GetTaskInfo(h.queues[1], dlvDeliveryID(h, evID, waitingEp)); err != nil || info.State != asynq.TaskStateScheduled {
		t.Errorf("the waiting delivery's task: %v, %v; want it still waiting for its retry", info, err)
	}
}

// TestReconcilerMarksUnmirroredDeadLetter: a delivery asynq archived whose
// row stayed pending (Postgres was out of reach when its last try failed)
// is marked failed, not sent again.
func TestReconcilerMarksUnmirroredDeadLetter(t *testing.T) {
	t.Parallel()
	h := start(t, reconcileFast) // two retries, 10ms apart
	recv := newReceiver(t, func(int) int { return http.StatusBadGateway })
	ins := asynq.NewInspectorFromRedisClient(h.rdb)
	appID := dlvApp(h)
	epID := dlvAddEndpoint(h, appID, recv.URL)
	dlvID := dlvDeliveryID(h, dlvPublish(h, appID, "order.paid"), epID)
	dlvWaitStatus(h, appID, dlvID, "failed")
	waitFor(t, "the archived task", func() bool {
		info, err := ins.GetTaskInfo(h.queues[1], dlvID)
		return err == nil && info.State == asynq.TaskStateArchived
	})
	// As if marking it failed had not reached Postgres.
	if _, err := h.db.ExecContext(t.Context(), `UPDATE deliveries SET status = 'pending', failed_at = NULL, updated_at = clock_timestamp() WHERE id = ?`, dlvID); err != nil {
		t.Fatal(err)
	}
	d := dlvWaitStatus(h, appID, dlvID, "failed")
	if d.AttemptCount != 3 {
		t.Errorf("%d attempts, want 3: the dead letter was sent again", d.AttemptCount)
	}
	if n := h.metricValue("hookd_reconciler_repaired_total", map[string]string{"kind": "dead_letter"}); n != 1 {
		t.Errorf("repaired %v dead letters, want 1", n)
	}
	if n := h.metricValue("hookd_reconciler_repaired_total", map[string]string{"kind": "delivery"}); n != 0 {
		t.Errorf("enqueued %v deliveries again, want 0", n)
	}
	if n := len(recv.got()); n != 3 {
		t.Errorf("receiver got %d requests, want 3", n)
	}
}

// TestRetentionDeletesOldFinishedEvents: past HOOKD_EVENT_RETENTION an
// event goes with its deliveries and attempts, dead letters included,
// unless a delivery is still pending; younger events stay. The events are
// written with their IDs' time in the past, so nothing depends on how fast
// the test runs.
func TestRetentionDeletesOldFinishedEvents(t *testing.T) {
	t.Parallel()
	// The reconciler runs retention every 100ms and, told to wait an hour,
	// leaves the seeded pending delivery alone.
	h := start(t, map[string]string{"HOOKD_RECONCILE_INTERVAL": "100ms", "HOOKD_RECONCILE_AFTER": "1h", "HOOKD_EVENT_RETENTION": "1h"})
	appID := dlvApp(h)
	// outbox.IDAt gives the first ID of its millisecond: one each.
	old, young := time.Now().Add(-2*time.Hour), time.Now().Add(-time.Minute)
	events := map[string]struct {
		at       time.Time
		statuses []string // of its deliveries
		kept     bool
		unfanned bool // published, never fanned out
	}{
		"done":    {old, []string{"succeeded", "succeeded"}, false, false},
		"dead":    {old.Add(time.Millisecond), []string{"succeeded", "failed"}, false, false},
		"pending": {old.Add(2 * time.Millisecond), []string{"succeeded", "pending"}, true, false},
		"young":   {young, []string{"succeeded"}, true, false},
		// Owed to its subscribers still: the reconciler will fan it out.
		"unfanned": {old.Add(3 * time.Millisecond), nil, true, true},
	}
	// One transaction: retention must not see an event before its
	// deliveries.
	ids := map[string]string{}
	err := h.db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		for name, e := range events {
			id := outbox.IDAt("evt", e.at)
			ids[name] = id
			if _, err := tx.ExecContext(ctx, `INSERT INTO outbox_events (id, tenant, topic, payload, published_at, fanned_out_at)
				VALUES (?, ?, 'order.paid', '{}', clock_timestamp(), CASE WHEN ? THEN NULL ELSE clock_timestamp() END)`, id, appID, e.unfanned); err != nil {
				return err
			}
			for i, status := range e.statuses {
				dlv := fmt.Sprintf("dlv_%s_%d", name, i)
				if _, err := tx.ExecContext(ctx, `INSERT INTO deliveries (id, event_id, endpoint_id, app_id, event_type, status, attempts)
					VALUES (?, ?, ?, ?, 'order.paid', ?, 1)`, dlv, id, fmt.Sprintf("ep_%d", i), appID, status); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code)
					VALUES (?, clock_timestamp(), 1, 200)`, dlv); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	waitFor(t, "the old finished events to go", func() bool {
		return h.count(`SELECT count(*) FROM outbox_events WHERE id IN (?, ?)`, ids["done"], ids["dead"]) == 0
	})
	for name, e := range events {
		wantEvent, want := 0, 0
		if e.kept {
			wantEvent, want = 1, len(e.statuses)
		}
		if n := h.count(`SELECT count(*) FROM outbox_events WHERE id = ?`, ids[name]); n != wantEvent {
			t.Errorf("event %q: %d rows, want %d", name, n, wantEvent)
		}
		if n := h.count(`SELECT count(*) FROM deliveries WHERE event_id = ?`, ids[name]); n != want {
			t.Errorf("event %q: %d deliveries, want %d", name, n, want)
		}
		if n := h.count(`SELECT count(*) FROM delivery_attempts AS a JOIN deliveries AS d ON d.id = a.delivery_id WHERE d.event_id = ?`, ids[name]); n != want {
			t.Errorf("event %q: %d attempts, want %d", name, n, want)
		}
	}
}

// TestRetentionExpiresIdempotencyKeys: idempotency keys past their 24-hour
// window are deleted; live ones stay.
func TestRetentionExpiresIdempotencyKeys(t *testing.T) {
	t.Parallel()
	h := start(t, reconcileFast)
	appID := dlvApp(h)
	for key, age := range map[string]string{"old": "25 hours", "live": "23 hours"} {
		if _, err := h.db.ExecContext(t.Context(), `INSERT INTO event_idempotency (app_id, key, event_id, request_hash, created_at)
			VALUES (?, ?, 'evt_x', '\x00', clock_timestamp() - ?::interval)`, appID, key, age); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the expired key to go", func() bool {
		return h.count(`SELECT count(*) FROM event_idempotency WHERE key = 'old'`) == 0
	})
	if n := h.count(`SELECT count(*) FROM event_idempotency WHERE key = 'live'`); n != 1 {
		t.Errorf("%d live keys left, want 1", n)
	}
}

// TestRetentionExpiresAttemptsAndRetryJobs: with an attempt retention
// shorter than the event retention, old attempts go while their event and
// delivery stay; finished bulk-retry jobs go after the event retention.
func TestRetentionExpiresAttemptsAndRetryJobs(t *testing.T) {
	t.Parallel()
	h := start(t, with(reconcileFast, "HOOKD_ATTEMPT_RETENTION", "1h"))
	ok := newReceiver(t, nil)
	appID := dlvApp(h)
	ep := dlvAddEndpoint(h, appID, ok.URL, "order.paid")
	evt := dlvPublish(h, appID, "order.paid")
	dlv := dlvDeliveryID(h, evt, ep)
	dlvWaitStatus(h, appID, dlv, "succeeded")
	// Two attempts of the same delivery from long ago, as if it had been
	// retried.
	if _, err := h.db.ExecContext(t.Context(), `INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code)
		SELECT ?, clock_timestamp() - interval '2 hours', 1, 500 FROM generate_series(1, 2)`, dlv); err != nil {
		t.Fatal(err)
	}
	for id, age := range map[string]string{"dlr_old": "31 days", "dlr_recent": "1 day"} {
		if _, err := h.db.ExecContext(t.Context(), `INSERT INTO dead_letter_retries (id, filter, status, cutoff, finished_at)
			VALUES (?, '{}', 'completed', clock_timestamp(), clock_timestamp() - ?::interval)`, id, age); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.db.ExecContext(t.Context(), `INSERT INTO dead_letter_retries (id, filter, cutoff, created_at)
		VALUES ('dlr_running', '{}', clock_timestamp(), clock_timestamp() - interval '40 days')`); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "the old attempts and the old job to go", func() bool {
		return h.count(`SELECT count(*) FROM delivery_attempts WHERE delivery_id = ?`, dlv) == 1 &&
			h.count(`SELECT count(*) FROM dead_letter_retries WHERE id = 'dlr_old'`) == 0
	})
	if n := h.count(`SELECT count(*) FROM delivery_attempts WHERE delivery_id = ? AND attempted_at > clock_timestamp() - interval '1 hour'`, dlv); n != 1 {
		t.Errorf("the delivery's recent attempt is gone")
	}
	if n := h.count(`SELECT count(*) FROM deliveries WHERE id = ?`, dlv); n != 1 {
		t.Errorf("the delivery went with its attempts")
	}
	if n := h.count(`SELECT count(*) FROM outbox_events WHERE id = ?`, evt); n != 1 {
		t.Errorf("the event went with its attempts")
	}
	if n := h.count(`SELECT count(*) FROM dead_letter_retries WHERE id IN ('dlr_recent', 'dlr_running')`); n != 2 {
		t.Errorf("%d of the recent and the running retry job left, want 2", n)
	}
}
