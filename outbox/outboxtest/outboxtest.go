// Package outboxtest gives tests an isolated Postgres schema on the real
// database named by HOOKD_TEST_DATABASE_URL (default: the local hookd
// database), so that tests can run in parallel and in any order.
package outboxtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/hookd/hookd/outbox"
)

// DefaultDatabaseURL is used when HOOKD_TEST_DATABASE_URL is unset.
const DefaultDatabaseURL = "postgres://hookd:hookd@127.0.0.1:5432/hookd?sslmode=disable"

// DatabaseURL returns the database tests run against.
func DatabaseURL() string {
	return cmp.Or(os.Getenv("HOOKD_TEST_DATABASE_URL"), DefaultDatabaseURL)
}

// Schema creates an empty schema with a random name and returns a DB whose
// connections all use it as their search_path, together with the schema's
// name. The schema is dropped when the test ends. Under -short the test is
// skipped; when Postgres is unreachable it fails at once, saying so.
func Schema(t testing.TB) (*bun.DB, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Postgres; skipped with -short")
	}
	dsn := DatabaseURL()
	admin := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		t.Fatalf("postgres unreachable at %s (run `go tool task services` or set HOOKD_TEST_DATABASE_URL): %v", dsn, err)
	}
	name := "test_" + rand.Text()[:16]
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA "`+name+`"`); err != nil {
		_ = admin.Close()
		t.Fatalf("create schema %s: %v", name, err)
	}
	sqldb := sql.OpenDB(pgdriver.NewConnector(
		pgdriver.WithDSN(dsn),
		pgdriver.WithConnParams(map[string]any{"search_path": name}),
	))
	db := bun.NewDB(sqldb, pgdialect.New())
	t.Cleanup(func() {
		_ = db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA "`+name+`" CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
		_ = admin.Close()
	})
	return db, name
}

// SchemaURL creates an empty schema as Schema does and returns a database
// URL whose connections use it, for code that opens its own connections
// (an app under test, a subprocess).
func SchemaURL(t testing.TB) string {
	t.Helper()
	_, name := Schema(t)
	u, err := url.Parse(DatabaseURL())
	if err != nil {
		t.Fatalf("parse HOOKD_TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", name)
	// Named after the schema: a test finds its own sessions in
	// pg_stat_activity, and leaves other tests' alone.
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// DB returns a DB on a fresh schema holding the outbox table.
func DB(t testing.TB) *bun.DB {
	t.Helper()
	db, _ := Schema(t)
	if _, err := db.ExecContext(context.Background(), outbox.Schema()); err != nil {
		t.Fatalf("create outbox schema: %v", err)
	}
	return db
}

// Seed commits n events for tenant with the given topic in one transaction
// and returns their IDs in insertion order.
func Seed(t testing.TB, db *bun.DB, tenant, topic string, n int) []string {
	t.Helper()
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		msgs[i] = &outbox.Message{Tenant: tenant, Topic: topic, Payload: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	err := db.RunInTx(context.Background(), nil, func(ctx context.Context, tx bun.Tx) error {
		return outbox.Publish(ctx, tx, msgs...)
	})
	if err != nil {
		t.Fatalf("seed %d events: %v", n, err)
	}
	ids := make([]string, n)
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}
