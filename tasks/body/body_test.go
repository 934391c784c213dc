package body_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/outbox/outboxtest"
	"github.com/hookd/hookd/tasks/body"
)

func TestCache(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres; skipped with -short")
	}
	t.Parallel()

	type testBundle struct {
		db *bun.DB
	}
	setup := func(t *testing.T, maxBytes int) (*body.Cache, *testBundle) {
		t.Helper()
		b := &testBundle{db: outboxtest.DB(t)}
		return body.NewCache(b.db, maxBytes), b
	}
	stored := func(t *testing.T, db *bun.DB, id string) []byte {
		t.Helper()
		msgs, err := outbox.Get(t.Context(), db, []string{id})
		if err != nil || len(msgs) != 1 {
			t.Fatalf("get event %s: %v, %d rows", id, err, len(msgs))
		}
		want, err := body.Encode(msgs[0].Topic, msgs[0].CreatedAt, msgs[0].Payload)
		if err != nil {
			t.Fatal(err)
		}
		return want
	}

	t.Run("LoadsFromTheOutbox", func(t *testing.T) {
		t.Parallel()
		c, b := setup(t, 0)
		ids := outboxtest.Seed(t, b.db, "app_1", "order.paid", 64)
		// Concurrent misses load together and each gets its own event.
		var wg sync.WaitGroup
		got := make([][]byte, len(ids))
		errs := make([]error, len(ids))
		for i, id := range ids {
			wg.Go(func() { got[i], errs[i] = c.Get(t.Context(), id) })
		}
		wg.Wait()
		for i, id := range ids {
			if errs[i] != nil {
				t.Fatalf("get %s: %v", id, errs[i])
			}
			if want := stored(t, b.db, id); string(got[i]) != string(want) {
				t.Errorf("body of %s = %s, want %s", id, got[i], want)
			}
		}
	})

	t.Run("GoneEvent", func(t *testing.T) {
		t.Parallel()
		c, _ := setup(t, 0)
		if _, err := c.Get(t.Context(), "evt_missing"); !errors.Is(err, body.ErrEventGone) {
			t.Errorf("get of an event the outbox lacks: %v, want ErrEventGone", err)
		}
	})

	t.Run("HeldBodiesServeWithoutPostgres", func(t *testing.T) {
		t.Parallel()
		c, b := setup(t, 0)
		c.Put("evt_put", []byte(`{"held":true}`))
		_ = b.db.Close() // a query would fail now
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if got, err := c.Get(ctx, "evt_put"); err != nil || string(got) != `{"held":true}` {
			t.Errorf("get of a held body = %s, %v", got, err)
		}
	})

	t.Run("LeastRecentlyUsedGoFirst", func(t *testing.T) {
		t.Parallel()
		c, b := setup(t, 300)
		_ = b.db.Close() // every Get below must be answered from memory, or fail
		for i := range 3 {
			c.Put(fmt.Sprint("evt_", i), make([]byte, 100))
		}
		if _, err := c.Get(t.Context(), "evt_0"); err != nil { // evt_0 is now the most recent
			t.Fatal(err)
		}
		c.Put("evt_3", make([]byte, 100)) // over 300 bytes: evt_1 goes
		for id, held := range map[string]bool{"evt_0": true, "evt_1": false, "evt_2": true, "evt_3": true} {
			_, err := c.Get(t.Context(), id)
			if (err == nil) != held {
				t.Errorf("get %s: %v, want held %v", id, err, held)
			}
		}
	})
}

// TestEncodeKeepsPayloadCharacters: a webhook body carries the payload's
// characters as published: HTML characters, line separators and escapes
// (a NUL among them) are neither escaped nor unescaped, and the body read
// from the outbox is the body encoded from the event at hand.
func TestEncodeKeepsPayloadCharacters(t *testing.T) {
	t.Parallel()
	data := "{\"html\":\"<a href=\\\"x\\\">&amp;</a>\",\"ls\":\"\u2028\u2029\",\"nul\":\"a\\u0000b\",\"esc\":\"\\u003c\\/\"}"
	at := time.Date(2026, 12, 1, 10, 0, 0, 123_000_000, time.UTC)
	want := `{"type":"order.paid","timestamp":"2026-12-01T10:00:00.123Z","data":` + data + `}`
	got, err := body.Encode("order.paid", at, []byte(data))
	if err != nil || string(got) != want {
		t.Errorf("Encode = %s, %v\nwant %s", got, err, want)
	}
	// Insignificant whitespace goes; nothing else changes.
	if got, err := body.Encode("order.paid", at, []byte("{ \"a\" : \"<\" }")); err != nil || string(got) != `{"type":"order.paid","timestamp":"2026-12-01T10:00:00.123Z","data":{"a":"<"}}` {
		t.Errorf("Encode of a spaced payload = %s, %v", got, err)
	}

	if testing.Short() {
		return
	}
	db := outboxtest.DB(t)
	ids := make([]string, 0, 1)
	err = db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		m := &outbox.Message{Tenant: "app_1", Topic: "order.paid", Payload: []byte(data)}
		if err := outbox.Publish(ctx, tx, m); err != nil {
			return err
		}
		ids = append(ids, m.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := outbox.Get(t.Context(), db, ids)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("get: %v, %d rows", err, len(msgs))
	}
	loaded, err := body.NewCache(db, 0).Get(t.Context(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	want = `{"type":"order.paid","timestamp":"` + msgs[0].CreatedAt.UTC().Format(time.RFC3339Nano) + `","data":` + data + `}`
	if string(loaded) != want {
		t.Errorf("body loaded from the outbox = %s\nwant %s", loaded, want)
	}
}
