package ledger_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox/outboxtest"
	"github.com/hookd/hookd/tasks/ledger"
)

// writeOne writes the deliveries of one event.
func writeOne(ctx context.Context, s *ledger.Store, ev ledger.Event, ds []ledger.NewDelivery) ([]ledger.Written, error) {
	w := &ledger.Writing{Event: ev, Deliveries: ds}
	err := s.WriteAll(ctx, []*ledger.Writing{w})
	return w.Written, err
}

func TestStore(t *testing.T) {
	t.Parallel()

	type testBundle struct {
		db    *bun.DB
		event ledger.Event
	}

	setup := func(t *testing.T) (*ledger.Store, *testBundle) {
		t.Helper()
		db := outboxtest.DB(t)
		for _, sql := range []string{ledger.Schema(), ledger.EngineSchema(), ledger.ReconcileSchema(), ledger.RetentionSchema(), ledger.FIFOSchema(), ledger.ReplaySchema()} {
			if _, err := db.ExecContext(t.Context(), sql); err != nil {
				t.Fatalf("migrate: %v", err)
			}
		}
		id := outboxtest.Seed(t, db, "app_a", "link.clicked", 1)[0]
		if _, err := db.ExecContext(t.Context(), `UPDATE outbox_events SET published_at = clock_timestamp()`); err != nil {
			t.Fatal(err)
		}
		return ledger.New(db), &testBundle{db: db, event: ledger.Event{ID: id, AppID: "app_a", Type: "link.clicked"}}
	}

	// write writes the deliveries of b's event to endpoints, failing the
	// test on an error.
	write := func(t *testing.T, s *ledger.Store, b *testBundle, endpoints ...string) []ledger.Written {
		t.Helper()
		ds := make([]ledger.NewDelivery, len(endpoints))
		for i, ep := range endpoints {
			ds[i] = ledger.NewDelivery{ID: ledger.NewDeliveryID(), EndpointID: ep}
		}
		w, err := writeOne(t.Context(), s, b.event, ds)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}

	t.Run("WriteIsIdempotent", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		first := write(t, s, b, "ep_1", "ep_2")
		if len(first) != 2 || !first[0].Fresh || !first[1].Fresh {
			t.Fatalf("first write = %+v, want 2 fresh deliveries", first)
		}
		again := write(t, s, b, "ep_1", "ep_2", "ep_3")
		var fresh, earlier []string
		for _, w := range again {
			if w.Fresh {
				fresh = append(fresh, w.EndpointID)
			} else {
				earlier = append(earlier, w.ID)
			}
		}
		slices.Sort(earlier)
		want := []string{first[0].ID, first[1].ID}
		slices.Sort(want)
		if !slices.Equal(fresh, []string{"ep_3"}) || !slices.Equal(earlier, want) {
			t.Errorf("second write: fresh %v, earlier %v; want fresh [ep_3], earlier %v", fresh, earlier, want)
		}
		unfanned, err := s.Unfanned(t.Context(), 0, 10)
		if err != nil || len(unfanned) != 0 {
			t.Errorf("Unfanned after Write = %v, %v; want none: Write marks the event", unfanned, err)
		}
	})

	t.Run("WriteWithFirstAttempts", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		code := func(c int) *int { return &c }
		boom := "HTTP 503"
		ok, later, none := ledger.NewDeliveryID(), ledger.NewDeliveryID(), ledger.NewDeliveryID()
		now := time.Now()
		w, err := writeOne(t.Context(), s, b.event, []ledger.NewDelivery{
			{ID: ok, EndpointID: "ep_ok", First: &ledger.Record{
				Attempt: &ledger.Attempt{DeliveryID: ok, AttemptedAt: now, DurationMS: 1.5, StatusCode: code(204), ErrorClass: "success"},
				Status:  ledger.StatusSucceeded,
			}},
			{ID: later, EndpointID: "ep_later", First: &ledger.Record{
				Attempt:   &ledger.Attempt{DeliveryID: later, AttemptedAt: now, DurationMS: 2, StatusCode: code(503), ErrorClass: "http_5xx"},
				Status:    ledger.StatusPending,
				LastError: &boom,
			}},
			{ID: none, EndpointID: "ep_none"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(w) != 3 {
			t.Fatalf("Write = %+v, want 3 fresh deliveries", w)
		}
		for id, want := range map[string]struct {
			status   string
			attempts int
		}{ok: {ledger.StatusSucceeded, 1}, later: {ledger.StatusPending, 1}, none: {ledger.StatusPending, 0}} {
			d, err := s.Get(t.Context(), "", id)
			if err != nil {
				t.Fatal(err)
			}
			as, err := s.Attempts(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != want.status || d.Attempts != want.attempts || len(as) != want.attempts {
				t.Errorf("%s: %s with %d attempts (%d rows), want %s with %d", d.EndpointID, d.Status, d.Attempts, len(as), want.status, want.attempts)
			}
		}
		if d, _ := s.Get(t.Context(), "", ok); d.SucceededAt == nil || d.LastStatusCode == nil || *d.LastStatusCode != 204 {
			t.Errorf("succeeded first attempt: succeeded_at %v, last status %v", d.SucceededAt, d.LastStatusCode)
		}
		if d, _ := s.Get(t.Context(), "", later); d.LastError == nil || *d.LastError != boom {
			t.Errorf("failed first attempt: last error %v, want %q", d.LastError, boom)
		}

		// A second run's delivery to the same endpoint loses to the first,
		// and its attempt is not recorded.
		dup := ledger.NewDeliveryID()
		again, err := writeOne(t.Context(), s, b.event, []ledger.NewDelivery{{ID: dup, EndpointID: "ep_ok", First: &ledger.Record{
			Attempt: &ledger.Attempt{DeliveryID: dup, AttemptedAt: now, StatusCode: code(200), ErrorClass: "success"},
			Status:  ledger.StatusSucceeded,
		}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range again {
			if d.Fresh || d.ID == dup {
				t.Errorf("second run wrote %+v; want only the 3 earlier deliveries", d)
			}
		}
		if as, _ := s.Attempts(t.Context(), ok); len(as) != 1 {
			t.Errorf("first delivery has %d attempts after a second run, want 1", len(as))
		}
	})

	t.Run("WriteAllEventsTogether", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		other := outboxtest.Seed(t, b.db, "app_b", "order.paid", 1)[0]
		fanned, err := s.Fanned(t.Context(), []string{b.event.ID, other})
		if err != nil || len(fanned) != 0 {
			t.Fatalf("Fanned before any write = %v, %v; want none", fanned, err)
		}
		w1 := &ledger.Writing{Event: b.event, Deliveries: []ledger.NewDelivery{{ID: ledger.NewDeliveryID(), EndpointID: "ep_1"}, {ID: ledger.NewDeliveryID(), EndpointID: "ep_2"}}}
		w2 := &ledger.Writing{Event: ledger.Event{ID: other, AppID: "app_b", Type: "order.paid"}, Deliveries: []ledger.NewDelivery{{ID: ledger.NewDeliveryID(), EndpointID: "ep_3"}}}
		if err := s.WriteAll(t.Context(), []*ledger.Writing{w1, w2}); err != nil {
			t.Fatal(err)
		}
		if len(w1.Written) != 2 || len(w2.Written) != 1 || w2.Written[0].EndpointID != "ep_3" {
			t.Errorf("written: %+v and %+v; want 2 and the one to ep_3", w1.Written, w2.Written)
		}
		d, err := s.Get(t.Context(), "app_b", w2.Written[0].ID)
		if err != nil || d.EventType != "order.paid" || d.EventID != other {
			t.Errorf("delivery of the second event: %+v, %v", d, err)
		}
		fanned, err = s.Fanned(t.Context(), []string{b.event.ID, other, "evt_unknown"})
		if err != nil || !fanned[b.event.ID] || !fanned[other] || fanned["evt_unknown"] {
			t.Errorf("Fanned = %v, %v; want both events", fanned, err)
		}
	})

	t.Run("RecordMovesDeliveriesOn", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		w := write(t, s, b, "ep_ok", "ep_bad", "ep_later")
		code := func(c int) *int { return &c }
		now := time.Now()
		byEndpoint := map[string]string{}
		for _, d := range w {
			byEndpoint[d.EndpointID] = d.ID
		}
		boom := "HTTP 500"
		err := s.Record(t.Context(), []ledger.Record{
			{Attempt: &ledger.Attempt{DeliveryID: byEndpoint["ep_ok"], AttemptedAt: now, StatusCode: code(200), ErrorClass: "success"}, Status: ledger.StatusSucceeded},
			{Attempt: &ledger.Attempt{DeliveryID: byEndpoint["ep_bad"], AttemptedAt: now, StatusCode: code(500), ErrorClass: "http_5xx"}, Status: ledger.StatusFailed, LastError: &boom},
			{Attempt: &ledger.Attempt{DeliveryID: byEndpoint["ep_later"], AttemptedAt: now, StatusCode: code(503), ErrorClass: "http_5xx"}, Status: ledger.StatusPending, LastError: &boom},
		})
		if err != nil {
			t.Fatal(err)
		}
		for ep, want := range map[string]string{"ep_ok": ledger.StatusSucceeded, "ep_bad": ledger.StatusFailed, "ep_later": ledger.StatusPending} {
			d, err := s.Get(t.Context(), "app_a", byEndpoint[ep])
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != want || d.Attempts != 1 {
				t.Errorf("%s: status %s after %d attempts, want %s after 1", ep, d.Status, d.Attempts, want)
			}
			if (d.FailedAt != nil) != (want == ledger.StatusFailed) || (d.SucceededAt != nil) != (want == ledger.StatusSucceeded) {
				t.Errorf("%s: succeeded_at %v, failed_at %v for status %s", ep, d.SucceededAt, d.FailedAt, want)
			}
		}
		counts, err := s.Counts(t.Context(), b.event.ID)
		if err != nil || counts[ledger.StatusPending] != 1 || counts[ledger.StatusSucceeded] != 1 || counts[ledger.StatusFailed] != 1 {
			t.Errorf("Counts = %v, %v; want one of each", counts, err)
		}
		attempts, err := s.Attempts(t.Context(), byEndpoint["ep_bad"])
		if err != nil || len(attempts) != 1 || *attempts[0].StatusCode != 500 {
			t.Errorf("Attempts = %+v, %v; want the one 500", attempts, err)
		}
		// MarkFailed leaves finished deliveries alone.
		if err := s.MarkFailed(t.Context(), byEndpoint["ep_ok"], "late"); err != nil {
			t.Fatal(err)
		}
		if st, err := s.Status(t.Context(), byEndpoint["ep_ok"]); err != nil || st != ledger.StatusSucceeded {
			t.Errorf("status after MarkFailed of a succeeded delivery = %s, %v; want succeeded", st, err)
		}
	})

	t.Run("FIFODeliveryMovesOnFromPendingOnly", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		w, err := writeOne(t.Context(), s, b.event, []ledger.NewDelivery{{ID: ledger.NewDeliveryID(), EndpointID: "ep_fifo", FIFO: true}})
		if err != nil || len(w) != 1 || !w[0].FIFO {
			t.Fatalf("write a FIFO delivery = %+v, %v", w, err)
		}
		id := w[0].ID
		record := func(status string, code int) {
			t.Helper()
			a := &ledger.Attempt{DeliveryID: id, AttemptedAt: time.Now(), StatusCode: &code, ErrorClass: "x"}
			if err := s.Record(t.Context(), []ledger.Record{{Attempt: a, Status: status}}); err != nil {
				t.Fatal(err)
			}
		}
		record(ledger.StatusSucceeded, 200)
		record(ledger.StatusPending, 503) // a pump taken over, recording late
		if st, err := s.Status(t.Context(), id); err != nil || st != ledger.StatusSucceeded {
			t.Errorf("a FIFO head after a late pending record = %s, %v; want succeeded", st, err)
		}
		if _, err := s.FIFOHead(t.Context(), "ep_fifo", nil); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("FIFOHead after the late record = %v, want none", err)
		}
	})

	t.Run("ReviveOnlyFailed", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		w := write(t, s, b, "ep_1", "ep_2")
		if err := s.MarkFailed(t.Context(), w[0].ID, "gone"); err != nil {
			t.Fatal(err)
		}
		dead, err := s.DeadLetters(t.Context(), ledger.DeadLetterFilter{AppID: "app_a"}, "", 10)
		if err != nil || len(dead) != 1 || dead[0].ID != w[0].ID {
			t.Fatalf("DeadLetters = %v, %v; want %s", dead, err, w[0].ID)
		}
		var seen []ledger.Stored
		revived, err := s.Revive(t.Context(), []string{w[0].ID, w[1].ID}, func(_ context.Context, ds []ledger.Stored) error {
			seen = ds
			return nil
		})
		if err != nil || len(revived) != 1 || revived[0].ID != w[0].ID || len(seen) != 1 {
			t.Fatalf("Revive = %v, %v (fn saw %v); want only the failed %s", revived, err, seen, w[0].ID)
		}
		if p := revived[0].Payload(); p.DeliveryID != w[0].ID || p.EventID != b.event.ID || p.EndpointID != "ep_1" || p.CreatedAt.IsZero() {
			t.Errorf("payload = %+v", p)
		}
		if st, _ := s.Status(t.Context(), w[0].ID); st != ledger.StatusPending {
			t.Errorf("revived delivery is %s, want pending", st)
		}

		// An error of fn rolls the revival back.
		if err := s.MarkFailed(t.Context(), w[1].ID, "gone"); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("redis down")
		if _, err := s.Revive(t.Context(), []string{w[1].ID}, func(context.Context, []ledger.Stored) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("Revive with a failing fn = %v, want %v", err, boom)
		}
		if st, _ := s.Status(t.Context(), w[1].ID); st != ledger.StatusFailed {
			t.Errorf("delivery after a rolled-back revival is %s, want failed", st)
		}
	})

	t.Run("PendingAndStillPending", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		w := write(t, s, b, "ep_1", "ep_2", "ep_3")
		if err := s.MarkFailed(t.Context(), w[2].ID, "gone"); err != nil {
			t.Fatal(err)
		}
		var got []string
		for cursor := (ledger.Cursor{}); ; {
			page, err := s.Pending(t.Context(), 0, cursor, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page[0].ID)
			cursor = ledger.Cursor{UpdatedAt: page[0].UpdatedAt, ID: page[0].ID}
		}
		if len(got) != 2 {
			t.Errorf("Pending walked %v, want the 2 pending deliveries", got)
		}
		if recent, err := s.Pending(t.Context(), time.Hour, ledger.Cursor{}, 10); err != nil || len(recent) != 0 {
			t.Errorf("Pending older than an hour = %v, %v; want none", recent, err)
		}
		still, err := s.StillPending(t.Context(), []string{w[0].ID, w[2].ID, "dlv_unknown"})
		if err != nil || !slices.Equal(still, []string{w[0].ID}) {
			t.Errorf("StillPending = %v, %v; want [%s]", still, err, w[0].ID)
		}
	})

	t.Run("DeleteEventsKeepsPending", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		w := write(t, s, b, "ep_1")
		future := time.Now().Add(time.Hour)
		if n, err := s.DeleteEvents(t.Context(), future, 10); err != nil || n != 0 {
			t.Fatalf("DeleteEvents with a pending delivery = %d, %v; want 0", n, err)
		}
		if err := s.MarkFailed(t.Context(), w[0].ID, "gone"); err != nil {
			t.Fatal(err)
		}
		if n, err := s.DeleteEvents(t.Context(), time.Now().Add(-time.Hour), 10); err != nil || n != 0 {
			t.Fatalf("DeleteEvents before the event = %d, %v; want 0", n, err)
		}
		if n, err := s.DeleteEvents(t.Context(), future, 10); err != nil || n != 1 {
			t.Fatalf("DeleteEvents = %d, %v; want 1", n, err)
		}
		if _, err := s.Status(t.Context(), w[0].ID); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("delivery of a deleted event: %v, want ErrNotFound", err)
		}
	})

	t.Run("BulkJob", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		w := write(t, s, b, "ep_1", "ep_2", "ep_3")
		for _, d := range w {
			if err := s.MarkFailed(t.Context(), d.ID, "gone"); err != nil {
				t.Fatal(err)
			}
		}
		job, err := s.CreateJob(t.Context(), ledger.DeadLetterFilter{AppID: "app_a"}, ledger.Replay{})
		if err != nil {
			t.Fatal(err)
		}
		var all []string
		for job.Status == ledger.JobRunning {
			ids, err := s.NextDeadLetters(t.Context(), &job, 2)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, ids...)
			cursor := ""
			if len(ids) > 0 {
				cursor = ids[len(ids)-1]
			}
			if err := s.Advance(t.Context(), &job, len(ids), cursor, len(ids) < 2); err != nil {
				t.Fatal(err)
			}
		}
		if len(all) != 3 || job.Retried != 3 || job.FinishedAt == nil {
			t.Errorf("job walked %v, retried %d, finished %v; want all 3, finished", all, job.Retried, job.FinishedAt)
		}
		if _, err := s.Job(t.Context(), "dlr_unknown"); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("Job(unknown) = %v, want ErrNotFound", err)
		}
	})

	// Recovery walks its app's fanned-out events of the types asked, in
	// (commit time, ID) order across batches, ties included, each once,
	// with the endpoint's delivery of each.
	t.Run("Recovery", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		paid := outboxtest.Seed(t, b.db, "app_a", "order.paid", 6)
		outboxtest.Seed(t, b.db, "app_a", "order.refunded", 2)
		outboxtest.Seed(t, b.db, "app_b", "order.paid", 2)
		// Four commit at one instant; the last is not fanned out yet.
		_, err := b.db.ExecContext(t.Context(), `UPDATE outbox_events SET created_at = (SELECT min(created_at) FROM outbox_events WHERE id IN (?)) WHERE id IN (?)`,
			bun.In(paid[:4]), bun.In(paid[:4]))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.db.ExecContext(t.Context(), `UPDATE outbox_events SET fanned_out_at = clock_timestamp() WHERE id <> ?`, paid[5]); err != nil {
			t.Fatal(err)
		}
		for i, status := range map[int]string{1: ledger.StatusSucceeded, 2: ledger.StatusFailed} {
			ev := ledger.Event{ID: paid[i], AppID: "app_a", Type: "order.paid"}
			w, err := writeOne(t.Context(), s, ev, []ledger.NewDelivery{{ID: ledger.NewDeliveryID(), EndpointID: "ep_r"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.db.ExecContext(t.Context(), `UPDATE deliveries SET status = ? WHERE id = ?`, status, w[0].ID); err != nil {
				t.Fatal(err)
			}
		}

		job, err := s.CreateRecovery(t.Context(), "app_a", "ep_r", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), ledger.Replay{DryRun: true, Rate: 5})
		if err != nil {
			t.Fatal(err)
		}
		if job.Until.After(time.Now()) || !job.DryRun || job.Rate == nil || *job.Rate != 5 {
			t.Errorf("recovery = %+v, want until clamped to now, a dry run at 5/s", job)
		}
		var (
			ids      []string
			statuses = map[string]string{}
		)
		for job.Status == ledger.JobRunning {
			ms, err := s.NextMissed(t.Context(), &job, time.Time{}, []string{"order.paid"}, true, 2)
			if err != nil {
				t.Fatal(err)
			}
			var last *ledger.Missed
			for i, m := range ms {
				if len(m.Payload) == 0 || m.Type != "order.paid" {
					t.Errorf("missed %+v: want an order.paid with its payload", m)
				}
				ids = append(ids, m.EventID)
				statuses[m.EventID] = m.Status
				last = &ms[i]
			}
			if err := s.AdvanceRecovery(t.Context(), &job, len(ms), last, len(ms) < 2); err != nil {
				t.Fatal(err)
			}
		}
		// The four tied in ID order, then the fifth.
		want := append(slices.Sorted(slices.Values(paid[:4])), paid[4])
		if !slices.Equal(want, ids) {
			t.Errorf("recovery walked %v, want %v", ids, want)
		}
		if statuses[paid[1]] != ledger.StatusSucceeded || statuses[paid[2]] != ledger.StatusFailed || statuses[paid[0]] != "" {
			t.Errorf("statuses = %v", statuses)
		}
		if job.Recovered != 5 || job.FinishedAt == nil {
			t.Errorf("recovery = %+v, want 5 counted, finished", job)
		}
		// The endpoint's creation bounds the range.
		job, err = s.CreateRecovery(t.Context(), "app_a", "ep_r", time.Now().Add(-time.Hour), time.Time{}, ledger.Replay{})
		if err != nil {
			t.Fatal(err)
		}
		if ms, err := s.NextMissed(t.Context(), &job, time.Now(), nil, false, 10); err != nil || len(ms) != 0 {
			t.Errorf("NextMissed after the endpoint's creation = %v, %v; want none", ms, err)
		}
		if _, err := s.Recovery(t.Context(), "rcv_unknown"); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("Recovery(unknown) = %v, want ErrNotFound", err)
		}
	})
}
