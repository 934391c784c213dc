// Package events owns what apps publish and what became of it: the event
// type catalog with its JSON Schemas, events published through the API
// (idempotently, into the outbox), the cache of what a publish checks, and
// the read side of deliveries and their attempts. It must not import the
// api package.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks/ledger"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/hookd/hookd/app/resource"
)

// EventType documents a kind of event and, with Schema, constrains its
// payload.
type EventType struct {
	bun.BaseModel `bun:"table:event_types"`

	Name        string `bun:"name,pk" json:"name"`
	Description string `bun:"description,notnull" json:"description"`
	// Schema is a JSON Schema (draft 2020-12) for the payload, or null.
	Schema    json.RawMessage `bun:"schema,type:jsonb,nullzero" json:"schema"`
	Archived  bool            `bun:"archived,notnull" json:"archived"`
	CreatedAt time.Time       `bun:"created_at,nullzero,notnull,default:clock_timestamp()" json:"created_at"`
	UpdatedAt time.Time       `bun:"updated_at,nullzero,notnull,default:clock_timestamp()" json:"updated_at"`
}

// EventTypeInput is what a caller sets on a new event type.
type EventTypeInput struct {
	Name        string
	Description string
	Schema      json.RawMessage
}

// EventTypePatch changes the fields that are not nil; a Schema of `null`
// removes the schema.
type EventTypePatch struct {
	Description *string
	Schema      json.RawMessage
	Archived    *bool
}

// Store stores event types and events and reads deliveries.
type Store struct {
	db      *bun.DB
	ledger  *ledger.Store   // deliveries, attempts, dead letters
	batcher *outbox.Batcher // publishes events without idempotency key

	printer *message.Printer // of schema validation errors

	mu      sync.Mutex
	schemas map[string]*compiledSchema // by event type name

	cache *PublishCache // of Publish's checks, or nil
}

// NewStore returns a Store on db.
func NewStore(db *bun.DB) *Store {
	return &Store{
		db: db, ledger: ledger.New(db), batcher: outbox.NewBatcher(db, 0),
		printer: message.NewPrinter(language.English), schemas: map[string]*compiledSchema{},
	}
}

var typeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$`)

func validTypeName(field, name string) error {
	if !typeName.MatchString(name) {
		return resource.Invalid(field, "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	return nil
}

func validDescription(d string) error {
	if len(d) > 1000 || strings.ContainsRune(d, 0) {
		return resource.Invalid("description", "must be at most 1000 characters, without NUL")
	}
	return nil
}

// CreateEventType registers an event type.
func (s *Store) CreateEventType(ctx context.Context, in EventTypeInput) (EventType, error) {
	if err := validTypeName("name", in.Name); err != nil {
		return EventType{}, err
	}
	if err := validDescription(in.Description); err != nil {
		return EventType{}, err
	}
	schema, err := normalizeSchema(in.Schema)
	if err != nil {
		return EventType{}, err
	}
	et := EventType{Name: in.Name, Description: in.Description, Schema: schema}
	if _, err := s.db.NewInsert().Model(&et).Returning("created_at, updated_at").Exec(ctx); err != nil {
		if resource.SQLState(err) == resource.CodeUniqueViolation {
			return EventType{}, fmt.Errorf("event type %s already exists: %w", in.Name, resource.ErrConflict)
		}
		return EventType{}, fmt.Errorf("create event type: %w", err)
	}
	s.forgetEventType(in.Name)
	return et, nil
}

// EventType returns an event type by name.
func (s *Store) EventType(ctx context.Context, name string) (EventType, error) {
	var et EventType
	if err := s.db.NewSelect().Model(&et).Where("name = ?", name).Scan(ctx); err != nil {
		return EventType{}, fmt.Errorf("get event type %s: %w", name, resource.NotFound(err))
	}
	return et, nil
}

// EventTypes lists event types by name, archived ones only when asked.
func (s *Store) EventTypes(ctx context.Context, withArchived bool, q resource.PageQuery) (resource.Page[EventType], error) {
	after, err := q.Key()
	if err != nil {
		return resource.Page[EventType]{}, err
	}
	var ets []EventType
	sel := s.db.NewSelect().Model(&ets).OrderExpr("name").Limit(q.Fetch())
	if !withArchived {
		sel.Where("NOT archived")
	}
	if after != "" {
		sel.Where("name > ?", after)
	}
	if err := sel.Scan(ctx); err != nil {
		return resource.Page[EventType]{}, fmt.Errorf("list event types: %w", err)
	}
	return resource.NewPage(q, ets, func(et EventType) string { return et.Name }), nil
}

// UpdateEventType applies p to event type name.
func (s *Store) UpdateEventType(ctx context.Context, name string, p EventTypePatch) (EventType, error) {
	upd := s.db.NewUpdate().Model((*EventType)(nil)).Where("name = ?", name).Set("updated_at = clock_timestamp()")
	if p.Description != nil {
		if err := validDescription(*p.Description); err != nil {
			return EventType{}, err
		}
		upd.Set("description = ?", *p.Description)
	}
	if p.Schema != nil {
		schema, err := normalizeSchema(p.Schema)
		if err != nil {
			return EventType{}, err
		}
		if schema == nil {
			upd.Set("schema = NULL")
		} else {
			upd.Set("schema = ?::jsonb", string(schema))
		}
	}
	if p.Archived != nil {
		upd.Set("archived = ?", *p.Archived)
	}
	var et EventType
	if err := upd.Returning("*").Scan(ctx, &et); err != nil {
		return EventType{}, fmt.Errorf("update event type %s: %w", name, resource.NotFound(err))
	}
	s.forgetEventType(name)
	return et, nil
}

// ArchiveEventType archives event type name: it stays listed (with
// archived) and events already published keep it, but new events of the
// type are refused.
func (s *Store) ArchiveEventType(ctx context.Context, name string) (EventType, error) {
	archived := true
	return s.UpdateEventType(ctx, name, EventTypePatch{Archived: &archived})
}

// forgetEventType drops event type name from the publish cache, if any:
// a change this process made applies to its next publish at once, before
// the notification every process gets.
func (s *Store) forgetEventType(name string) {
	if s.cache != nil {
		s.cache.forgetEventType(name)
	}
}

// ForgetApp drops app appID from the publish cache, if any: its deletion,
// committed by this process, applies to the next publish at once, before
// the notification every process gets.
func (s *Store) ForgetApp(appID string) {
	if s.cache != nil {
		s.cache.forgetApp(appID)
	}
}

// EnsureEventTypes registers each of ins, or brings its description and
// schema up to date when it is registered already: what hookd registers
// of its own at start. It changes nothing, and notifies no process, when
// each is as given; processes starting together may all run it. An
// archived type stays archived.
func (s *Store) EnsureEventTypes(ctx context.Context, ins []EventTypeInput) error {
	for _, in := range ins {
		if err := validTypeName("name", in.Name); err != nil {
			return err
		}
		if err := validDescription(in.Description); err != nil {
			return err
		}
		schema, err := normalizeSchema(in.Schema)
		if err != nil {
			return fmt.Errorf("event type %s: %w", in.Name, err)
		}
		et := EventType{Name: in.Name, Description: in.Description, Schema: schema}
		res, err := s.db.NewInsert().Model(&et).
			On("CONFLICT (name) DO UPDATE").
			Set("description = EXCLUDED.description, schema = EXCLUDED.schema, updated_at = clock_timestamp()").
			Where("?TableAlias.description IS DISTINCT FROM EXCLUDED.description OR ?TableAlias.schema IS DISTINCT FROM EXCLUDED.schema").
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("register event type %s: %w", in.Name, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			s.forgetEventType(in.Name)
		}
	}
	return nil
}
