package events

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks/ledger"
)

// IdempotencyWindow is how long an idempotency key returns its event.
const IdempotencyWindow = 24 * time.Hour

// Event is an event an application published.
type Event struct {
	ID        string          `json:"id"`
	AppID     string          `json:"app_id"`
	Type      string          `json:"type"`
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"created_at"`
	// Deliveries counts the event's deliveries by status; only a single
	// event's read carries it.
	Deliveries *DeliverySummary `json:"deliveries,omitempty"`
}

// DeliverySummary counts an event's deliveries by status.
type DeliverySummary struct {
	Pending   int `json:"pending"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
}

// PublishInput is an event to publish.
type PublishInput struct {
	Type    string
	Payload json.RawMessage
	// IdempotencyKey, when set, makes a repeat of the same request within
	// IdempotencyWindow return the original event instead of a new one.
	IdempotencyKey string
}

type idempotencyKey struct {
	bun.BaseModel `bun:"table:event_idempotency"`

	AppID       string    `bun:"app_id,pk"`
	Key         string    `bun:"key,pk"`
	EventID     string    `bun:"event_id,notnull"`
	RequestHash []byte    `bun:"request_hash,notnull"`
	CreatedAt   time.Time `bun:"created_at,nullzero,notnull,default:clock_timestamp()"`
}

// Publish validates in against its event type and publishes it for app
// appID through the outbox. With an idempotency key seen within the window
// it returns the original event and replayed true, or resource.ErrConflict
// when that key came with another type or payload.
func (s *Store) Publish(ctx context.Context, appID string, in PublishInput) (ev Event, replayed bool, err error) {
	if err := validTypeName("type", in.Type); err != nil {
		return Event{}, false, err
	}
	if k := in.IdempotencyKey; k != "" && (len(k) > 255 || strings.ContainsFunc(k, func(r rune) bool { return unicode.IsControl(r) || r > unicode.MaxASCII })) {
		return Event{}, false, resource.Invalid("idempotency_key", "must be at most 255 printable ASCII characters")
	}
	var payload bytes.Buffer
	if err := json.Compact(&payload, in.Payload); err != nil || payload.Len() == 0 || payload.Bytes()[0] != '{' {
		return Event{}, false, resource.Invalid("payload", "must be a JSON object")
	}
	if !utf8.Valid(in.Payload) {
		return Event{}, false, resource.Invalid("payload", "must be valid UTF-8")
	}
	if nestedDeeper(payload.Bytes(), MaxPayloadDepth) {
		return Event{}, false, resource.Invalid("payload", "must not nest objects and arrays more than %d levels deep", MaxPayloadDepth)
	}
	if err := s.checkAppAndType(ctx, appID, in.Type, payload.Bytes()); err != nil {
		return Event{}, false, err
	}

	// The payload is stored as published, less its insignificant
	// whitespace: its escapes (\u0000 among them: the outbox's json column
	// holds it) and characters reach every endpoint unchanged.
	msg := &outbox.Message{ID: outbox.NewID("evt"), Tenant: appID, Topic: in.Type, Payload: payload.Bytes()}
	if in.IdempotencyKey == "" {
		// The event is the whole change: it is committed on its own, with
		// the events published at the same moment (group commit). (An app
		// deleted since the check leaves an event nobody receives.)
		if err := s.batcher.Publish(ctx, msg); err != nil {
			return Event{}, false, fmt.Errorf("publish %s: %w", in.Type, err)
		}
		return Event{ID: msg.ID, AppID: appID, Type: msg.Topic, Payload: msg.Payload, CreatedAt: msg.CreatedAt}, false, nil
	}
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		sum := sha256.Sum256(append([]byte(in.Type+"\x00"), payload.Bytes()...))
		original, err := claimKey(ctx, tx, idempotencyKey{AppID: appID, Key: in.IdempotencyKey, EventID: msg.ID, RequestHash: sum[:]})
		if err != nil {
			return err
		}
		if original != "" {
			ev.ID, replayed = original, true
			return nil
		}
		return outbox.Publish(ctx, tx, msg)
	})
	if err != nil {
		return Event{}, false, fmt.Errorf("publish %s: %w", in.Type, err)
	}
	if replayed {
		ev, err := s.Event(ctx, appID, ev.ID)
		return ev, true, err
	}
	return Event{ID: msg.ID, AppID: appID, Type: msg.Topic, Payload: msg.Payload, CreatedAt: msg.CreatedAt}, false, nil
}

// claimKey records k unless a live record of its key exists; it returns the
// event ID of that record, or "" when k was recorded. Concurrent claims of
// one key queue on its row: the second sees the first's event once the
// first commits.
func claimKey(ctx context.Context, tx bun.Tx, k idempotencyKey) (string, error) {
	res, err := tx.NewInsert().Model(&k).
		On("CONFLICT (app_id, key) DO UPDATE").
		Set("event_id = EXCLUDED.event_id, request_hash = EXCLUDED.request_hash, created_at = EXCLUDED.created_at").
		Where("?TableAlias.created_at < clock_timestamp() - ?::interval", fmt.Sprintf("%d seconds", int(IdempotencyWindow.Seconds()))).
		Exec(ctx)
	if resource.SQLState(err) == resource.CodeForeignKeyViolation {
		// The app was deleted since it was checked (or, with the publish
		// cache, just before: within a notification's delay).
		return "", fmt.Errorf("app %s: %w", k.AppID, resource.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("claim idempotency key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return "", nil
	}
	var prior idempotencyKey
	if err := tx.NewSelect().Model(&prior).Where("app_id = ? AND key = ?", k.AppID, k.Key).Scan(ctx); err != nil {
		return "", fmt.Errorf("read idempotency key: %w", err)
	}
	if !bytes.Equal(prior.RequestHash, k.RequestHash) {
		return "", fmt.Errorf("idempotency key %q was used with another type or payload: %w", k.Key, resource.ErrConflict)
	}
	return prior.EventID, nil
}

// checkAppAndType finds app appID, refuses events of archived types and
// validates payloads of types with a schema (types that are not
// registered are accepted). Both come from the publish cache when it is in
// use, or from one query.
func (s *Store) checkAppAndType(ctx context.Context, appID, name string, payload json.RawMessage) error {
	var (
		exists bool
		tc     typeCheck
		err    error
	)
	if s.cache != nil {
		exists, tc, err = s.cache.check(ctx, appID, name)
	} else {
		exists, tc, err = s.readCheck(ctx, appID, name)
	}
	switch {
	case err != nil:
		return err
	case !exists:
		return fmt.Errorf("app %s: %w", appID, resource.ErrNotFound)
	case tc.refuse != nil:
		return tc.refuse
	case tc.schema == nil:
		return nil
	}
	return s.validatePayload(name, tc.schema, payload)
}

// typeCheck is what applies to the events of a type: a refusal (archived,
// or a schema that cannot be validated within bounds), or the schema to
// validate them against (nil for none, or a type that is not registered).
type typeCheck struct {
	refuse error
	schema *compiledSchema
}

// readCheck reads whether app appID exists and, when it does, event type
// name, in one query.
func (s *Store) readCheck(ctx context.Context, appID, name string) (bool, typeCheck, error) {
	var row struct {
		App bool `bun:"app"`
		EventType
	}
	err := s.db.NewRaw(`SELECT EXISTS (SELECT 1 FROM applications WHERE id = ?) AS app, et.*
		FROM (SELECT 1) AS one LEFT JOIN event_types AS et ON et.name = ?`, appID, name).Scan(ctx, &row)
	switch {
	case err != nil:
		return false, typeCheck{}, fmt.Errorf("find app %s and event type %s: %w", appID, name, err)
	case !row.App:
		return false, typeCheck{}, nil
	case row.Name == "":
		return true, typeCheck{}, nil
	case row.Archived:
		return true, typeCheck{refuse: resource.Invalid("type", "event type %s is archived", name)}, nil
	case row.Schema == nil:
		return true, typeCheck{}, nil
	}
	sch, err := s.schemaFor(row.EventType)
	var invalid *resource.InvalidError
	if errors.As(err, &invalid) {
		return true, typeCheck{refuse: err}, nil
	}
	if err != nil {
		return false, typeCheck{}, err
	}
	return true, typeCheck{schema: sch}, nil
}

// Event returns event id of app appID with its delivery summary.
func (s *Store) Event(ctx context.Context, appID, id string) (Event, error) {
	var m outbox.Message
	if err := s.db.NewSelect().Model(&m).Where("tenant = ? AND id = ?", appID, id).Scan(ctx); err != nil {
		return Event{}, fmt.Errorf("get event %s: %w", id, resource.NotFound(err))
	}
	counts, err := s.ledger.Counts(ctx, id)
	if err != nil {
		return Event{}, err
	}
	sum := DeliverySummary{
		Pending:   counts[ledger.StatusPending],
		Succeeded: counts[ledger.StatusSucceeded],
		Failed:    counts[ledger.StatusFailed],
	}
	ev := eventOf(m)
	ev.Deliveries = &sum
	return ev, nil
}

// EventFilter narrows a list of events.
type EventFilter struct {
	Type         string
	Since, Until time.Time
}

// check refuses a filter Postgres cannot compare, naming its field.
func (f EventFilter) check() error {
	return cmp.Or(
		resource.FilterText("type", f.Type),
		resource.FilterTime("since", f.Since),
		resource.FilterTime("until", f.Until),
	)
}

// Events lists the events of app appID, newest first.
func (s *Store) Events(ctx context.Context, appID string, f EventFilter, q resource.PageQuery) (resource.Page[Event], error) {
	after, err := q.Key()
	if err != nil {
		return resource.Page[Event]{}, err
	}
	if err := f.check(); err != nil {
		return resource.Page[Event]{}, err
	}
	if err := s.appExists(ctx, appID); err != nil {
		return resource.Page[Event]{}, err
	}
	var ms []outbox.Message
	sel := s.db.NewSelect().Model(&ms).Where("tenant = ?", appID).OrderExpr("id DESC").Limit(q.Fetch())
	if after != "" {
		sel.Where("id < ?", after)
	}
	if f.Type != "" {
		sel.Where("topic = ?", f.Type)
	}
	if !f.Since.IsZero() {
		sel.Where("created_at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		sel.Where("created_at < ?", f.Until)
	}
	if err := sel.Scan(ctx); err != nil {
		return resource.Page[Event]{}, fmt.Errorf("list events: %w", err)
	}
	evs := make([]Event, len(ms))
	for i, m := range ms {
		evs[i] = eventOf(m)
	}
	return resource.NewPage(q, evs, func(e Event) string { return e.ID }), nil
}

func eventOf(m outbox.Message) Event {
	return Event{ID: m.ID, AppID: m.Tenant, Type: m.Topic, Payload: m.Payload, CreatedAt: m.CreatedAt}
}

func (s *Store) appExists(ctx context.Context, appID string) error {
	ok, err := s.db.NewSelect().Table("applications").Where("id = ?", appID).Exists(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("find app %s: %w", appID, err)
	case !ok:
		return fmt.Errorf("app %s: %w", appID, resource.ErrNotFound)
	}
	return nil
}

// DeleteExpiredKeys deletes idempotency keys past IdempotencyWindow, at
// most batch per statement, skipping rows a publish holds, and returns how
// many it deleted. An expired key no longer answers (claimKey overwrites
// it), so deleting it changes nothing but the table's size.
func (s *Store) DeleteExpiredKeys(ctx context.Context, batch int) (int, error) {
	total := 0
	for {
		res, err := s.db.NewRaw(`DELETE FROM event_idempotency WHERE (app_id, key) IN (
				SELECT app_id, key FROM event_idempotency
				WHERE created_at < clock_timestamp() - ?::interval
				LIMIT ? FOR UPDATE SKIP LOCKED)`,
			fmt.Sprintf("%d seconds", int(IdempotencyWindow.Seconds())), batch).Exec(ctx)
		if err != nil {
			return total, fmt.Errorf("delete expired idempotency keys: %w", err)
		}
		n, _ := res.RowsAffected()
		total += int(n)
		if int(n) < batch {
			return total, nil
		}
	}
}
