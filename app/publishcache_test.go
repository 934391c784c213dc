package app_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/app/events"
	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/outbox/outboxtest"
)

// pcCheckReads counts the queries that read applications or event_types: a
// publish's check, when it is not served from memory.
type pcCheckReads struct{ n atomic.Int64 }

func (c *pcCheckReads) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	return ctx
}

func (c *pcCheckReads) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	if strings.Contains(e.Query, "applications") || strings.Contains(e.Query, "event_types") {
		c.n.Add(1)
	}
}

// TestPublishCache: a publish checks its app and event type from memory;
// a change another process commits (here another connection pool) applies
// to the next publish; while the LISTEN connection is down the cache is
// emptied and bypassed.
func TestPublishCache(t *testing.T) {
	t.Parallel()

	type testBundle struct {
		reads *pcCheckReads
		// other writes as another hookd process would.
		other *bun.DB
		logs  *logBuffer
	}

	// setup returns a Store on a migrated schema of its own whose publish
	// cache runs (unless run is false) and is in use.
	setup := func(t *testing.T, cfg events.PublishCacheConfig, run bool) (*events.Store, *testBundle) {
		t.Helper()
		// Sessions named after the schema: the bypass test finds its own
		// listener.
		url := outboxtest.SchemaURL(t)
		open := func() *bun.DB {
			db := bun.NewDB(sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(url))), pgdialect.New())
			t.Cleanup(func() { _ = db.Close() })
			return db
		}
		b := &testBundle{reads: &pcCheckReads{}, other: open(), logs: &logBuffer{}}
		log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), b.logs), &slog.HandlerOptions{Level: slog.LevelWarn}))
		db := open()
		if err := app.Migrate(t.Context(), db, log); err != nil {
			t.Fatal(err)
		}
		db.AddQueryHook(b.reads)
		store := events.NewStore(db)
		cache := store.NewPublishCache(log, cfg)
		if !run {
			return store, b
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- cache.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		// In use once a publish (of a missing app) makes no read.
		waitFor(t, "the cache in use", func() bool {
			_ = pcPublish(t, store, "app_00000000000000000000000000", "order.paid", `{}`)
			n := b.reads.n.Load()
			_ = pcPublish(t, store, "app_00000000000000000000000000", "order.paid", `{}`)
			return b.reads.n.Load() == n
		})
		return store, b
	}

	newApp := func(t *testing.T, b *testBundle) string {
		t.Helper()
		id := outbox.NewID("app")
		if _, err := b.other.ExecContext(t.Context(), `INSERT INTO applications (id, name) VALUES (?, 'acme')`, id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	exec := func(t *testing.T, db *bun.DB, query string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(t.Context(), query, args...); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	const amountSchema = `{"type":"object","required":["amount"],"properties":{"amount":{"type":"number"}}}`

	// cached waits until publishing typ to appID reads nothing.
	cached := func(t *testing.T, store *events.Store, b *testBundle, appID, typ, payload string) {
		t.Helper()
		waitFor(t, "the app and type cached", func() bool {
			n := b.reads.n.Load()
			pcMustPublish(t, store, appID, typ, payload)
			return b.reads.n.Load() == n
		})
	}
	// applies waits until publishing typ to appID fails as want says:
	// once this process has the notification of a change made elsewhere.
	// The TTL is a minute: the notification, not expiry, drops the entry.
	applies := func(t *testing.T, store *events.Store, what, appID, typ, payload string, want func(error) bool) {
		t.Helper()
		waitFor(t, what, func() bool { return want(pcPublish(t, store, appID, typ, payload)) })
		if err := pcPublish(t, store, appID, typ, payload); !want(err) {
			t.Fatalf("%s, then not: %v", what, err)
		}
	}
	notFound := func(err error) bool { return errors.Is(err, resource.ErrNotFound) }
	invalid := func(field string) func(error) bool {
		return func(err error) bool {
			var inv *resource.InvalidError
			return errors.As(err, &inv) && inv.Field == field
		}
	}
	ok := func(err error) bool { return err == nil }

	t.Run("CachedPublishReadsNothing", func(t *testing.T) {
		t.Parallel()
		store, b := setup(t, events.PublishCacheConfig{}, true)
		appID := newApp(t, b)
		exec(t, b.other, `INSERT INTO event_types (name, schema) VALUES ('invoice.paid', ?)`, amountSchema)
		cached(t, store, b, appID, "invoice.paid", `{"amount":1}`)
		cached(t, store, b, appID, "not.registered", `{"n":1}`)

		before := b.reads.n.Load()
		for range 5 {
			pcMustPublish(t, store, appID, "invoice.paid", `{"amount":1}`)
			pcMustPublish(t, store, appID, "not.registered", `{"n":1}`)
		}
		// The schema still applies, from memory.
		pcCheckInvalid(t, pcPublish(t, store, appID, "invoice.paid", `{"amount":"one"}`), "payload/amount")
		if n := b.reads.n.Load() - before; n != 0 {
			t.Errorf("11 cached publishes read apps and event types %d times, want 0", n)
		}
	})

	t.Run("NotUsedUntilRun", func(t *testing.T) {
		t.Parallel()
		store, b := setup(t, events.PublishCacheConfig{}, false)
		appID := newApp(t, b)
		before := b.reads.n.Load()
		for range 3 {
			pcMustPublish(t, store, appID, "order.paid", `{}`)
		}
		if n := b.reads.n.Load() - before; n != 3 {
			t.Errorf("3 publishes without a listener read %d times, want 3", n)
		}
	})

	t.Run("AppDeletedElsewhereIsNotFound", func(t *testing.T) {
		t.Parallel()
		store, b := setup(t, events.PublishCacheConfig{}, true)
		appID := newApp(t, b)
		cached(t, store, b, appID, "order.paid", `{}`)

		exec(t, b.other, `DELETE FROM applications WHERE id = ?`, appID)
		applies(t, store, "the deletion", appID, "order.paid", `{}`, notFound)
		// The missing app is remembered, and forgotten when it appears.
		exec(t, b.other, `INSERT INTO applications (id, name) VALUES (?, 'again')`, appID)
		applies(t, store, "the app again", appID, "order.paid", `{}`, ok)
	})

	t.Run("EventTypeChangedElsewhereApplies", func(t *testing.T) {
		t.Parallel()
		store, b := setup(t, events.PublishCacheConfig{}, true)
		appID := newApp(t, b)
		const old, paid = `{"amount":1}`, `{"amount":1,"currency":"EUR"}`

		// Not registered, then registered with a schema.
		cached(t, store, b, appID, "invoice.paid", `{}`)
		exec(t, b.other, `INSERT INTO event_types (name, schema) VALUES ('invoice.paid', ?)`, amountSchema)
		applies(t, store, "the new type", appID, "invoice.paid", `{}`, invalid("payload"))
		pcMustPublish(t, store, appID, "invoice.paid", old)

		// A new schema.
		cached(t, store, b, appID, "invoice.paid", old)
		exec(t, b.other, `UPDATE event_types SET schema = ?, updated_at = clock_timestamp() WHERE name = 'invoice.paid'`,
			`{"type":"object","required":["amount","currency"]}`)
		applies(t, store, "the new schema", appID, "invoice.paid", old, invalid("payload"))
		pcMustPublish(t, store, appID, "invoice.paid", paid)

		// Archived, restored, removed.
		exec(t, b.other, `UPDATE event_types SET archived = true WHERE name = 'invoice.paid'`)
		applies(t, store, "the archive", appID, "invoice.paid", paid, invalid("type"))
		exec(t, b.other, `UPDATE event_types SET archived = false WHERE name = 'invoice.paid'`)
		applies(t, store, "the restore", appID, "invoice.paid", paid, ok)
		exec(t, b.other, `DELETE FROM event_types WHERE name = 'invoice.paid'`)
		applies(t, store, "the removal", appID, "invoice.paid", `{}`, ok)
	})

	t.Run("ChangedHereAppliesToTheNextPublish", func(t *testing.T) {
		t.Parallel()
		store, b := setup(t, events.PublishCacheConfig{}, true)
		appID := newApp(t, b)
		cached(t, store, b, appID, "invoice.paid", `{}`)
		// No notifications: this process's own changes apply without.
		exec(t, b.other, `ALTER TABLE event_types DISABLE TRIGGER event_types_notify`)
		exec(t, b.other, `ALTER TABLE applications DISABLE TRIGGER applications_notify`)

		if _, err := store.CreateEventType(t.Context(), events.EventTypeInput{Name: "invoice.paid", Schema: json.RawMessage(amountSchema)}); err != nil {
			t.Fatal(err)
		}
		pcCheckInvalid(t, pcPublish(t, store, appID, "invoice.paid", `{}`), "payload")
		if _, err := store.UpdateEventType(t.Context(), "invoice.paid", events.EventTypePatch{Schema: json.RawMessage(`null`)}); err != nil {
			t.Fatal(err)
		}
		pcMustPublish(t, store, appID, "invoice.paid", `{}`)
		if _, err := store.ArchiveEventType(t.Context(), "invoice.paid"); err != nil {
			t.Fatal(err)
		}
		pcCheckInvalid(t, pcPublish(t, store, appID, "invoice.paid", `{}`), "type")

		// The registry deletes apps and tells the store (app.go).
		exec(t, b.other, `DELETE FROM applications WHERE id = ?`, appID)
		store.ForgetApp(appID)
		if err := pcPublish(t, store, appID, "invoice.paid", `{}`); !errors.Is(err, resource.ErrNotFound) {
			t.Errorf("publish to the app deleted here: %v, want not found", err)
		}
	})

	t.Run("AppDeletedWithinANotificationsDelay", func(t *testing.T) {
		t.Parallel()
		store, b := setup(t, events.PublishCacheConfig{}, true)
		appID := newApp(t, b)
		pcMustPublish(t, store, appID, "order.paid", `{}`)
		// The notification has not come yet: the cache still says the app
		// exists. A publish with an idempotency key finds out when it
		// writes the key.
		exec(t, b.other, `ALTER TABLE applications DISABLE TRIGGER applications_notify`)
		exec(t, b.other, `DELETE FROM applications WHERE id = ?`, appID)
		_, _, err := store.Publish(t.Context(), appID, events.PublishInput{Type: "order.paid", Payload: json.RawMessage(`{}`), IdempotencyKey: "k1"})
		if !errors.Is(err, resource.ErrNotFound) {
			t.Errorf("idempotent publish to an app deleted unnoticed: %v, want not found", err)
		}
	})

	t.Run("BoundedEntries", func(t *testing.T) {
		t.Parallel()
		store, b := setup(t, events.PublishCacheConfig{MaxApps: 2, MaxEventTypes: 2}, true)
		apps := []string{newApp(t, b), newApp(t, b), newApp(t, b)}
		reads := func(appID, typ string) int64 {
			t.Helper()
			before := b.reads.n.Load()
			pcMustPublish(t, store, appID, typ, `{}`)
			return b.reads.n.Load() - before
		}
		for _, id := range apps {
			reads(id, "a")
		}
		if n := reads(apps[2], "a"); n != 0 {
			t.Errorf("the most recent app read %d times, want 0", n)
		}
		if n := reads(apps[0], "a"); n != 1 {
			t.Errorf("the app the cap dropped read %d times, want 1", n)
		}
		for _, typ := range []string{"b", "c", "c"} {
			reads(apps[0], typ)
		}
		if n := reads(apps[0], "a"); n != 1 {
			t.Errorf("the type the cap dropped read %d times, want 1", n)
		}
	})

	t.Run("EmptiedAndBypassedWhileListenIsDown", func(t *testing.T) {
		t.Parallel()
		store, b := setup(t, events.PublishCacheConfig{}, true)
		appID := newApp(t, b)
		cached(t, store, b, appID, "order.paid", `{}`)

		// A deletion whose notification is lost (as while the listener
		// is down) leaves the entry...
		exec(t, b.other, `ALTER TABLE applications DISABLE TRIGGER applications_notify`)
		exec(t, b.other, `DELETE FROM applications WHERE id = ?`, appID)
		pcMustPublish(t, store, appID, "order.paid", `{}`)

		// ... until the cache sees its listener gone: cut it (its session
		// carries the schema's name).
		var listeners []struct {
			PID int  `bun:"pid"`
			Cut bool `bun:"cut"`
		}
		// In the select list, pg_terminate_backend runs for the selected
		// rows only (in WHERE, the planner may run it on any).
		err := b.other.NewRaw(`SELECT pid, pg_terminate_backend(pid) AS cut FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = current_setting('application_name')
				AND query = 'LISTEN "hookd_publish_checks"'`).Scan(t.Context(), &listeners)
		if err != nil || len(listeners) != 1 || !listeners[0].Cut {
			t.Fatalf("terminated listeners %v: %v", listeners, err)
		}
		waitFor(t, "the cache to see its listener gone", func() bool {
			return b.logs.contains("cache: notifications lost")
		})
		if err := pcPublish(t, store, appID, "order.paid", `{}`); !errors.Is(err, resource.ErrNotFound) {
			t.Errorf("publish once the listener was lost: %v, want not found", err)
		}

		// The listener comes back, and the cache with it.
		exec(t, b.other, `ALTER TABLE applications ENABLE TRIGGER applications_notify`)
		other := newApp(t, b)
		cached(t, store, b, other, "order.paid", `{}`)
	})
}

// pcPublish publishes an event of type typ with payload to appID.
func pcPublish(t *testing.T, store *events.Store, appID, typ, payload string) error {
	t.Helper()
	_, _, err := store.Publish(t.Context(), appID, events.PublishInput{Type: typ, Payload: json.RawMessage(payload)})
	return err
}

func pcMustPublish(t *testing.T, store *events.Store, appID, typ, payload string) {
	t.Helper()
	if err := pcPublish(t, store, appID, typ, payload); err != nil {
		t.Fatalf("publish %s %s to %s: %v", typ, payload, appID, err)
	}
}

// pcCheckInvalid reports unless err is a validation error of field.
func pcCheckInvalid(t *testing.T, err error, field string) {
	t.Helper()
	var inv *resource.InvalidError
	if !errors.As(err, &inv) || inv.Field != field {
		t.Errorf("publish: %v, want a validation error of %s", err, field)
	}
}
