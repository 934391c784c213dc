// Package body makes and holds webhook bodies. A body is encoded once per
// event and held once per worker process, whatever the event's fan-out:
// delivery tasks carry only the event's ID, and a Cache serves the body to
// every delivery of the event, loading the events it lacks from the outbox
// in batches.
//
// It imports the outbox (whose table it reads through outbox.Get), bun and
// nothing of asynq or HTTP.
package body

import (
	"bytes"
	"cmp"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/outbox/groupcommit"
)

// Webhook is the body POSTed to endpoints.
type Webhook struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// Encode returns the body every delivery of an event carries. Every worker
// encodes it from the same stored event, so it comes out byte for byte the
// same wherever and whenever a delivery is made. data goes in as published,
// less its insignificant whitespace: its characters are not escaped (no
// \u003c for <, as json.Marshal would write) and its escapes are kept.
func Encode(eventType string, createdAt time.Time, data json.RawMessage) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(Webhook{Type: eventType, Timestamp: createdAt.UTC(), Data: data}); err != nil {
		return nil, fmt.Errorf("encode webhook: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ErrEventGone is returned for an event the outbox no longer holds.
var ErrEventGone = errors.New("event gone")

// DefaultMaxBytes is how many bytes of bodies a Cache holds.
const DefaultMaxBytes = 64 << 20

// loadBatch is the most events one outbox query loads.
const loadBatch = 256

// loadTimeout bounds one batched load.
const loadTimeout = 10 * time.Second

// Cache holds the bodies of recent events, least recently used out first
// once MaxBytes is reached. Concurrent misses load together, in one query.
type Cache struct {
	db    bun.IDB
	loads *groupcommit.Batcher[*load]
	max   int

	mu    sync.Mutex
	size  int
	order *list.List // of *entry, most recently used first
	byID  map[string]*list.Element
}

type entry struct {
	id   string
	body []byte
}

// load is one event a Get lacks; the batch fills in body or err.
type load struct {
	id   string
	body []byte
	err  error
}

// NewCache returns a Cache holding up to maxBytes of bodies (0: the
// default) and loading events from db.
func NewCache(db bun.IDB, maxBytes int) *Cache {
	c := &Cache{db: db, max: cmp.Or(maxBytes, DefaultMaxBytes), order: list.New(), byID: map[string]*list.Element{}}
	c.loads = groupcommit.New(loadBatch, loadTimeout, c.loadAll)
	return c
}

// Get returns the body of event id: from memory, or from the outbox. The
// slice is shared: callers must not change it.
func (c *Cache) Get(ctx context.Context, id string) ([]byte, error) {
	if b, ok := c.lookup(id); ok {
		return b, nil
	}
	l := &load{id: id}
	if err := c.loads.Do(ctx, l); err != nil {
		return nil, fmt.Errorf("load event %s: %w", id, err)
	}
	if l.err != nil {
		return nil, l.err
	}
	c.Put(id, l.body)
	return l.body, nil
}

// Put holds body as event id's, for the deliveries about to ask for it.
func (c *Cache) Put(id string, body []byte) {
	if len(body) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.byID[id] = c.order.PushFront(&entry{id, body})
	c.size += len(body)
	for c.size > c.max {
		last := c.order.Back()
		e := last.Value.(*entry)
		c.order.Remove(last)
		delete(c.byID, e.id)
		c.size -= len(e.body)
	}
}

func (c *Cache) lookup(id string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*entry).body, true
}

// loadAll loads the events of a batch in one query. An event the outbox
// lacks fails its own loads only.
func (c *Cache) loadAll(ctx context.Context, ls []*load) error {
	ids := make([]string, 0, len(ls))
	seen := make(map[string]bool, len(ls))
	for _, l := range ls {
		if !seen[l.id] {
			seen[l.id] = true
			ids = append(ids, l.id)
		}
	}
	msgs, err := outbox.Get(ctx, c.db, ids)
	if err != nil {
		return err
	}
	bodies := make(map[string][]byte, len(msgs))
	for _, m := range msgs {
		b, err := Encode(m.Topic, m.CreatedAt, m.Payload)
		if err != nil {
			return fmt.Errorf("event %s: %w", m.ID, err)
		}
		bodies[m.ID] = b
	}
	for _, l := range ls {
		var ok bool
		if l.body, ok = bodies[l.id]; !ok {
			l.err = fmt.Errorf("event %s: %w", l.id, ErrEventGone)
		}
	}
	return nil
}
