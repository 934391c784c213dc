package ledger_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/outbox/outboxtest"
	"github.com/hookd/hookd/tasks/ledger"
)

// TestDeadLetters checks that WithDeadLetters' function hears every
// delivery failed for good, and only those, inside the transaction that
// fails it.
func TestDeadLetters(t *testing.T) {
	t.Parallel()

	type testBundle struct {
		db    *bun.DB
		event ledger.Event
		mu    sync.Mutex
		heard []ledger.DeadLetter
		// fail, when set, is what the function returns.
		fail error
	}

	setup := func(t *testing.T) (*ledger.Store, *testBundle) {
		t.Helper()
		db := outboxtest.DB(t)
		for _, sql := range []string{ledger.Schema(), ledger.EngineSchema(), ledger.ReconcileSchema(), ledger.RetentionSchema(), ledger.FIFOSchema()} {
			if _, err := db.ExecContext(t.Context(), sql); err != nil {
				t.Fatalf("migrate: %v", err)
			}
		}
		id := outboxtest.Seed(t, db, "app_a", "link.clicked", 1)[0]
		b := &testBundle{db: db, event: ledger.Event{ID: id, AppID: "app_a", Type: "link.clicked"}}
		// The function writes an event of each dead letter with tx, as the
		// operational webhooks do: it commits with the dead letter or not
		// at all.
		s := ledger.New(db).WithDeadLetters(func(ctx context.Context, tx bun.Tx, ds []ledger.DeadLetter) error {
			b.mu.Lock()
			b.heard = append(b.heard, ds...)
			fail := b.fail
			b.mu.Unlock()
			for _, d := range ds {
				if err := outbox.Publish(ctx, tx, &outbox.Message{Tenant: "app_ops", Topic: "dead", Payload: []byte(`{"delivery_id":"` + d.ID + `"}`)}); err != nil {
					return err
				}
			}
			return fail
		})
		return s, b
	}

	// told counts the events the function committed for delivery id.
	told := func(t *testing.T, b *testBundle, id string) int {
		t.Helper()
		var n int
		err := b.db.NewRaw(`SELECT count(*) FROM outbox_events WHERE tenant = 'app_ops' AND payload->>'delivery_id' = ?`, id).Scan(t.Context(), &n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	pending := func(t *testing.T, s *ledger.Store, b *testBundle, endpoints ...string) []string {
		t.Helper()
		ds := make([]ledger.NewDelivery, len(endpoints))
		ids := make([]string, len(endpoints))
		for i, ep := range endpoints {
			ids[i] = ledger.NewDeliveryID()
			ds[i] = ledger.NewDelivery{ID: ids[i], EndpointID: ep}
		}
		if _, err := writeOne(t.Context(), s, b.event, ds); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	code := func(c int) *int { return &c }
	attempt := func(id string, status int) *ledger.Attempt {
		return &ledger.Attempt{DeliveryID: id, AttemptedAt: time.Now(), DurationMS: 1, StatusCode: code(status), ErrorClass: "http_5xx"}
	}

	t.Run("RecordTellsTheFailedOnly", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		ids := pending(t, s, b, "ep_dead", "ep_retry", "ep_ok")
		lastErr := "HTTP 502"
		err := s.Record(t.Context(), []ledger.Record{
			{Attempt: attempt(ids[0], 502), Status: ledger.StatusFailed, LastError: &lastErr},
			{Attempt: attempt(ids[1], 503), Status: ledger.StatusPending, LastError: &lastErr},
			{Attempt: attempt(ids[2], 200), Status: ledger.StatusSucceeded},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := ledger.DeadLetter{ID: ids[0], EventID: b.event.ID, EndpointID: "ep_dead", AppID: "app_a", EventType: "link.clicked", Attempts: 1}
		if len(b.heard) != 1 {
			t.Fatalf("heard %+v, want the failed delivery only", b.heard)
		}
		got := b.heard[0]
		if got.LastStatusCode == nil || *got.LastStatusCode != 502 || got.LastError == nil || *got.LastError != lastErr {
			t.Errorf("dead letter's last status %v, error %v; want 502, %q", got.LastStatusCode, got.LastError, lastErr)
		}
		got.LastStatusCode, got.LastError = nil, nil
		if got != want {
			t.Errorf("heard %+v, want %+v", got, want)
		}
		if n := told(t, b, ids[0]); n != 1 {
			t.Errorf("%d events committed with the dead letter, want 1", n)
		}
	})

	t.Run("RecordWithoutDeadLettersTellsNothing", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		ids := pending(t, s, b, "ep_1")
		if err := s.Record(t.Context(), []ledger.Record{{Attempt: attempt(ids[0], 503), Status: ledger.StatusPending}}); err != nil {
			t.Fatal(err)
		}
		if len(b.heard) != 0 {
			t.Errorf("heard %+v of a pending delivery", b.heard)
		}
	})

	t.Run("ErrorRollsTheDeadLetterBack", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		ids := pending(t, s, b, "ep_1", "ep_2")
		b.fail = errors.New("refused")
		err := s.Record(t.Context(), []ledger.Record{{Attempt: attempt(ids[0], 502), Status: ledger.StatusFailed}})
		if !errors.Is(err, b.fail) {
			t.Fatalf("Record = %v, want the function's error", err)
		}
		if err := s.MarkFailed(t.Context(), ids[1], "gone"); !errors.Is(err, b.fail) {
			t.Fatalf("MarkFailed = %v, want the function's error", err)
		}
		for _, id := range ids {
			d, err := s.Get(t.Context(), "", id)
			if err != nil {
				t.Fatal(err)
			}
			as, _ := s.Attempts(t.Context(), id)
			if d.Status != ledger.StatusPending || d.Attempts != 0 || len(as) != 0 {
				t.Errorf("%s after a rolled-back dead letter: %s, %d attempts (%d rows); want pending and none", id, d.Status, d.Attempts, len(as))
			}
			if n := told(t, b, id); n != 0 {
				t.Errorf("%d events of a rolled-back dead letter committed", n)
			}
		}
	})

	t.Run("MarkFailedTellsOnce", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		ids := pending(t, s, b, "ep_1")
		for range 2 {
			if err := s.MarkFailed(t.Context(), ids[0], "endpoint disabled"); err != nil {
				t.Fatal(err)
			}
		}
		if len(b.heard) != 1 || b.heard[0].ID != ids[0] || b.heard[0].LastError == nil || *b.heard[0].LastError != "endpoint disabled" {
			t.Fatalf("heard %+v, want the delivery once, with its reason", b.heard)
		}
		if n := told(t, b, ids[0]); n != 1 {
			t.Errorf("%d events committed, want 1", n)
		}
	})

	t.Run("WriteAllTellsFailedFirstAttemptsItWrote", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		dead, later := ledger.NewDeliveryID(), ledger.NewDeliveryID()
		gone := "HTTP 410"
		first := func(id string, status int, st string) *ledger.Record {
			return &ledger.Record{Attempt: attempt(id, status), Status: st, LastError: &gone}
		}
		_, err := writeOne(t.Context(), s, b.event, []ledger.NewDelivery{
			{ID: dead, EndpointID: "ep_gone", First: first(dead, 410, ledger.StatusFailed)},
			{ID: later, EndpointID: "ep_later", First: first(later, 503, ledger.StatusPending)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(b.heard) != 1 || b.heard[0].ID != dead || b.heard[0].Attempts != 1 || b.heard[0].EventType != "link.clicked" ||
			b.heard[0].LastStatusCode == nil || *b.heard[0].LastStatusCode != 410 {
			t.Fatalf("heard %+v, want the delivery to ep_gone with its attempt", b.heard)
		}
		// A second run's duplicate loses to the first: it is no dead letter.
		dup := ledger.NewDeliveryID()
		if _, err := writeOne(t.Context(), s, b.event, []ledger.NewDelivery{{ID: dup, EndpointID: "ep_gone", First: first(dup, 410, ledger.StatusFailed)}}); err != nil {
			t.Fatal(err)
		}
		if len(b.heard) != 1 {
			t.Errorf("heard %+v, want the duplicate left out", b.heard)
		}
		if n := told(t, b, dead); n != 1 {
			t.Errorf("%d events committed, want 1", n)
		}
	})
}
