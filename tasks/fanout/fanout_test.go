package fanout_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox/outboxtest"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/body"
	"github.com/hookd/hookd/tasks/delivery"
	"github.com/hookd/hookd/tasks/fanout"
	"github.com/hookd/hookd/tasks/guard"
	"github.com/hookd/hookd/tasks/ledger"
	"github.com/hookd/hookd/tasks/taskstest"
)

// fanoutRedisDB is the package's Redis database; tests use queues and apps
// of their own in it, and delete their keys.
const fanoutRedisDB = 8

func TestFanout(t *testing.T) {
	t.Parallel()

	type testBundle struct {
		db      *bun.DB
		ledger  *ledger.Store
		queue   *tasks.Queue
		app     string
		event   tasks.FanoutPayload
		sent    atomic.Int64 // requests the receiver got
		status  atomic.Int64 // what the receiver answers
		limited bool         // the endpoint has a rate limit
	}

	setup := func(t *testing.T) (*fanout.Fanout, *testBundle) {
		t.Helper()
		db := outboxtest.DB(t)
		for _, sql := range []string{ledger.Schema(), ledger.EngineSchema(), ledger.ReconcileSchema(), ledger.RetentionSchema(), ledger.FIFOSchema(), ledger.ReplaySchema()} {
			if _, err := db.ExecContext(t.Context(), sql); err != nil {
				t.Fatalf("migrate: %v", err)
			}
		}
		b := &testBundle{db: db, ledger: ledger.New(db), app: "app_fanouttest_" + rand.Text()}
		b.status.Store(http.StatusNoContent)
		id := outboxtest.Seed(t, db, b.app, "order.paid", 1)[0]
		b.event = tasks.FanoutPayload{EventID: id, AppID: b.app, Type: "order.paid", Data: json.RawMessage(`{"n":0}`), CreatedAt: time.Now()}

		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			b.sent.Add(1)
			w.WriteHeader(int(b.status.Load()))
		}))
		t.Cleanup(srv.Close)

		rdb := taskstest.Redis(t, fanoutRedisDB)
		q := "fanouttest_" + rand.Text()
		taskstest.DeleteKeys(t, rdb, "asynq:{"+q+"*", "hookd:{"+b.app+"}:*")
		t.Cleanup(func() {
			_ = rdb.SRem(context.Background(), "asynq:queues", q+"_events", q+"_deliveries", q+"_deliveries_overflow").Err()
		})
		gate := guard.New(rdb, guard.Config{})
		b.queue = tasks.NewQueue(rdb, gate, tasks.QueueConfig{Events: q + "_events", Deliveries: q + "_deliveries", Retry: tasks.RetryPolicy{Schedule: []time.Duration{time.Hour}}})
		bodies := body.NewCache(db, 0)
		log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
		deliverer := delivery.New(delivery.Deps{
			Ledger: b.ledger,
			Endpoint: func(_ context.Context, id string) (delivery.Endpoint, error) {
				ep := delivery.Endpoint{ID: id, AppID: b.app, URL: srv.URL, Keys: [][]byte{[]byte("0123456789abcdef0123456789abcdef")}}
				if b.limited {
					ep.RateLimit = 100
				}
				return ep, nil
			},
			Health:  health{},
			Limiter: guard.NewRateLimiter(rdb),
			Gate:    gate,
			Queue:   b.queue,
			Bodies:  bodies,
			Retry:   tasks.RetryPolicy{Schedule: []time.Duration{time.Hour}},
			Metrics: delivery.NewMetrics(prometheus.NewPedanticRegistry()),
		}, log, delivery.Config{AllowPrivateTargets: true})
		f := fanout.New(fanout.Deps{
			Ledger: b.ledger,
			Queue:  b.queue,
			Subscribers: func(context.Context, string, string, json.RawMessage) ([]fanout.Subscriber, error) {
				return []fanout.Subscriber{{EndpointID: "ep_" + b.app}}, nil
			},
			Bodies:    bodies,
			Deliverer: deliverer,
			Metrics:   fanout.NewMetrics(prometheus.NewPedanticRegistry()),
		}, log)
		return f, b
	}

	// run runs the fan-out of b's event and returns its delivery.
	run := func(t *testing.T, f *fanout.Fanout, b *testBundle) ledger.Delivery {
		t.Helper()
		payload, err := json.Marshal(b.event)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.ProcessTask(t.Context(), asynq.NewTask(tasks.TypeFanout, payload)); err != nil {
			t.Fatal(err)
		}
		ds, err := b.ledger.List(t.Context(), ledger.Query{AppID: b.app, Limit: 10})
		if err != nil || len(ds) != 1 {
			t.Fatalf("deliveries after the fan-out: %v, %v; want one", ds, err)
		}
		return ds[0]
	}
	// task returns the delivery's task in Redis, nil when none.
	task := func(t *testing.T, b *testBundle, id, endpointID string) *asynq.TaskInfo {
		t.Helper()
		infos, err := b.queue.DeliveryTasks(t.Context(), []tasks.TaskRef{{DeliveryID: id, EndpointID: endpointID}})
		if err != nil {
			t.Fatal(err)
		}
		return infos[0]
	}

	t.Run("SucceededFirstAttemptIsWrittenOnce", func(t *testing.T) {
		t.Parallel()
		f, b := setup(t)
		d := run(t, f, b)
		if d.Status != ledger.StatusSucceeded || d.Attempts != 1 || b.sent.Load() != 1 {
			t.Errorf("delivery %s after %d attempts, %d requests; want succeeded after 1", d.Status, d.Attempts, b.sent.Load())
		}
		if d.UpdatedAt.Sub(d.CreatedAt) < 0 {
			t.Errorf("created %s, updated %s", d.CreatedAt, d.UpdatedAt)
		}
		if info := task(t, b, d.ID, d.EndpointID); info != nil {
			t.Errorf("a succeeded first attempt left a task: %+v", info)
		}
		// One transaction wrote the row and its attempt, and nothing
		// updated the row since (an update makes a row version of its own).
		var once bool
		err := b.db.NewRaw(`SELECT d.xmin::text = a.xmin::text FROM deliveries AS d JOIN delivery_attempts AS a ON a.delivery_id = d.id WHERE d.id = ?`, d.ID).Scan(t.Context(), &once)
		if err != nil || !once {
			t.Errorf("the delivery and its first attempt were written by one transaction: %t, %v; want true", once, err)
		}
		as, err := b.ledger.Attempts(t.Context(), d.ID)
		if err != nil || len(as) != 1 || as[0].AttemptedAt.Before(d.CreatedAt) {
			t.Errorf("attempts %+v, %v; want one, made after the delivery's creation %s", as, err, d.CreatedAt)
		}
	})

	t.Run("FailedFirstAttemptWaitsForItsRetry", func(t *testing.T) {
		t.Parallel()
		f, b := setup(t)
		b.status.Store(http.StatusServiceUnavailable)
		d := run(t, f, b)
		if d.Status != ledger.StatusPending || d.Attempts != 1 {
			t.Errorf("delivery %s after %d attempts; want pending after 1", d.Status, d.Attempts)
		}
		info := task(t, b, d.ID, d.EndpointID)
		if info == nil || info.State != asynq.TaskStateScheduled || time.Until(info.NextProcessAt) < 30*time.Minute {
			t.Fatalf("task %+v; want one scheduled for the retry an hour away", info)
		}
		var p tasks.DeliverPayload
		if err := json.Unmarshal(info.Payload, &p); err != nil || p.Attempts != 1 {
			t.Errorf("task payload %s, %v; want the first attempt counted", info.Payload, err)
		}
	})

	t.Run("NotAdmittedBecomesATask", func(t *testing.T) {
		t.Parallel()
		f, b := setup(t)
		b.limited = true // rate-limited endpoints get no first attempt
		d := run(t, f, b)
		if d.Status != ledger.StatusPending || d.Attempts != 0 || b.sent.Load() != 0 {
			t.Errorf("delivery %s after %d attempts, %d requests; want pending, not attempted", d.Status, d.Attempts, b.sent.Load())
		}
		if info := task(t, b, d.ID, d.EndpointID); info == nil || info.State != asynq.TaskStatePending {
			t.Errorf("task %+v; want one pending", info)
		}
	})

	t.Run("RunAgainSendsNothingTwice", func(t *testing.T) {
		t.Parallel()
		f, b := setup(t)
		first := run(t, f, b)
		again := run(t, f, b)
		if again.ID != first.ID || again.Status != ledger.StatusSucceeded || b.sent.Load() != 1 {
			t.Errorf("after a second run: %+v, %d requests; want the first delivery, succeeded, sent once", again, b.sent.Load())
		}
	})

	t.Run("RunAgainEnqueuesALostTask", func(t *testing.T) {
		t.Parallel()
		f, b := setup(t)
		b.status.Store(http.StatusInternalServerError)
		d := run(t, f, b)
		info := task(t, b, d.ID, d.EndpointID)
		if info == nil {
			t.Fatal("no retry task after a failed first attempt")
		}
		if err := asynq.NewInspectorFromRedisClient(taskstest.Redis(t, fanoutRedisDB)).DeleteTask(info.Queue, info.ID); err != nil {
			t.Fatal(err)
		}
		run(t, f, b)
		if info := task(t, b, d.ID, d.EndpointID); info == nil || info.State != asynq.TaskStatePending {
			t.Errorf("task after the run again: %+v; want the lost one enqueued again", info)
		}
		if n := b.sent.Load(); n != 1 {
			t.Errorf("%d requests; want 1: the run again sends nothing itself", n)
		}
	})
}

// health is an EndpointHealth that changes nothing.
type health struct{}

func (health) Succeeded(context.Context, string) error                    { return nil }
func (health) Failed(context.Context, string, bool, string) (bool, error) { return false, nil }
