// Package outbox owns the transactional outbox: the outbox_events table,
// Publish, which writes events inside a caller's transaction, and the Relay,
// which hands committed events to a Publisher.
//
// It imports only bun and the Postgres driver: never asynq, Redis or the app.
package outbox

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"
)

//go:embed schema.sql
var schema string

// Schema returns the SQL that creates the outbox table, its indexes and the
// notification trigger in the current schema. Applications run it once, as
// one of their migrations.
func Schema() string { return schema }

// Message is one event in the outbox.
type Message struct {
	bun.BaseModel `bun:"table:outbox_events"`

	// ID identifies the event; Publish assigns "evt_..." when it is empty.
	ID string `bun:"id,pk"`
	// Tenant is the application the event belongs to.
	Tenant string `bun:"tenant,notnull"`
	// Topic is the event type, such as "link.clicked".
	Topic string `bun:"topic,notnull"`
	// Payload is the event's JSON data, stored and read back byte for byte.
	// (No type:json tag: bun would re-encode it on the way in, escaping
	// HTML characters and rewriting \u0000 for jsonb. A RawMessage goes in
	// as a text literal, which Postgres' json type keeps as it is.)
	Payload json.RawMessage `bun:"payload,notnull"`
	// CreatedAt is set by Postgres when the row is inserted.
	CreatedAt time.Time `bun:"created_at,nullzero,notnull,default:clock_timestamp()"`
	// Seq is the outbox's order, set by Postgres; relays read it.
	Seq int64 `bun:"seq,scanonly"`
}

// ErrInvalidMessage is returned by Publish for a message missing a tenant,
// a topic or a valid JSON payload in UTF-8.
var ErrInvalidMessage = errors.New("invalid outbox message")

// Publish writes msgs to the outbox inside tx, so that they become visible to
// relays exactly when, and only if, tx commits. It assigns IDs to messages
// that have none and fills in CreatedAt.
func Publish(ctx context.Context, tx bun.Tx, msgs ...*Message) error {
	return insert(ctx, tx, msgs)
}

func insert(ctx context.Context, db bun.IDB, msgs []*Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := check(msgs); err != nil {
		return err
	}
	if _, err := db.NewInsert().Model(&msgs).Returning("created_at").Exec(ctx); err != nil {
		return fmt.Errorf("publish %d events: %w", len(msgs), err)
	}
	return nil
}

// check refuses messages missing a tenant, a topic or a JSON payload in
// UTF-8 (Postgres would refuse other bytes), and assigns IDs to those that
// have none.
func check(msgs []*Message) error {
	for _, m := range msgs {
		switch {
		case m.Tenant == "":
			return fmt.Errorf("publish: %w: empty tenant", ErrInvalidMessage)
		case m.Topic == "":
			return fmt.Errorf("publish: %w: empty topic", ErrInvalidMessage)
		case !json.Valid(m.Payload):
			return fmt.Errorf("publish %s: %w: payload is not JSON", m.Topic, ErrInvalidMessage)
		case !utf8.Valid(m.Payload):
			return fmt.Errorf("publish %s: %w: payload is not UTF-8", m.Topic, ErrInvalidMessage)
		}
		if m.ID == "" {
			m.ID = NewID("evt")
		}
	}
	return nil
}

// Stats describes the outbox's unpublished rows.
type Stats struct {
	// Pending counts unpublished rows.
	Pending int64
	// Lag is the age of the oldest unpublished row (0 when none).
	Lag time.Duration
}

// ReadStats reads the outbox's unpublished rows through the partial index
// on them: cheap enough to run on every metrics scrape.
func ReadStats(ctx context.Context, db bun.IDB) (Stats, error) {
	var row struct {
		Pending int64   `bun:"pending"`
		LagSecs float64 `bun:"lag"`
	}
	err := db.NewSelect().Model((*Message)(nil)).
		ColumnExpr("count(*) AS pending").
		ColumnExpr("coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS lag").
		Where("published_at IS NULL").
		Scan(ctx, &row)
	if err != nil {
		return Stats{}, fmt.Errorf("read outbox stats: %w", err)
	}
	return Stats{Pending: row.Pending, Lag: time.Duration(row.LagSecs * float64(time.Second))}, nil
}

// Get returns the events among ids that the outbox holds, in no particular
// order: an event deleted by retention is simply missing.
func Get(ctx context.Context, db bun.IDB, ids []string) ([]Message, error) {
	var msgs []Message
	if len(ids) == 0 {
		return msgs, nil
	}
	err := db.NewSelect().Model(&msgs).Column("id", "tenant", "topic", "payload", "created_at").
		Where("id IN (?)", bun.In(ids)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("get %d events: %w", len(ids), err)
	}
	return msgs, nil
}
