package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hookd/hookd/app/listen"
	"github.com/hookd/hookd/tasks/delivery"
	"github.com/hookd/hookd/tasks/fanout"
)

// notifyChannel is the channel the endpoint triggers notify (migration
// 0008), with "schema endpoint_id app_id" as payload.
const notifyChannel = "hookd_endpoints"

// Cache serves the delivery path's reads of the registry (Subscribers and
// DeliveryEndpoint) from memory, so that a delivery costs no endpoint
// query. Postgres notifies every change those reads see; the cache drops
// what changed. It is used only while its LISTEN connection is up: before
// Run has established it, and from a lost connection until it is back,
// every read goes to Postgres and the cache is emptied, so an entry is
// never staler than a notification's delay. Entries also expire after a
// TTL, a bound should Postgres ever drop a notification.
type Cache struct {
	r   *Registry
	log *slog.Logger
	ttl time.Duration

	mu        sync.Mutex
	live      bool
	gen       uint64 // counts invalidations; a read that saw one is not kept
	endpoints map[string]cachedEndpoint
	subs      map[string]map[string]cachedSubs // app -> event type
}

type cachedEndpoint struct {
	e       deliveryEndpoint
	expires time.Time
}

type cachedSubs struct {
	subs    []subscription
	expires time.Time
}

// NewCache returns a Cache of r's delivery reads; entries live at most ttl
// (default 1m). Run must run for the cache to be used.
func (r *Registry) NewCache(log *slog.Logger, ttl time.Duration) *Cache {
	return &Cache{
		r: r, log: log, ttl: cmp.Or(ttl, time.Minute),
		endpoints: map[string]cachedEndpoint{},
		subs:      map[string]map[string]cachedSubs{},
	}
}

// Subscribers is Registry.Subscribers from memory; a fanout.SubscribersFunc.
func (c *Cache) Subscribers(ctx context.Context, appID, eventType string, payload json.RawMessage) ([]fanout.Subscriber, error) {
	now := time.Now()
	c.mu.Lock()
	s, ok := c.subs[appID][eventType]
	live, gen := c.live, c.gen
	c.mu.Unlock()
	if live && ok && now.Before(s.expires) {
		return c.r.matching(ctx, appID, eventType, s.subs, payload), nil
	}
	subs, err := c.r.subscriptions(ctx, appID, eventType)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.live && c.gen == gen {
		if c.subs[appID] == nil {
			c.subs[appID] = map[string]cachedSubs{}
		}
		c.subs[appID][eventType] = cachedSubs{subs: subs, expires: now.Add(c.ttl)}
	}
	c.mu.Unlock()
	return c.r.matching(ctx, appID, eventType, subs, payload), nil
}

// DeliveryEndpoint is Registry.DeliveryEndpoint from memory; a
// delivery.EndpointFunc.
func (c *Cache) DeliveryEndpoint(ctx context.Context, id string) (delivery.Endpoint, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.endpoints[id]
	live, gen := c.live, c.gen
	c.mu.Unlock()
	if live && ok && now.Before(e.expires) {
		return e.e.at(now), nil
	}
	de, err := c.r.deliveryEndpoint(ctx, id)
	if err != nil {
		return delivery.Endpoint{}, err
	}
	c.mu.Lock()
	if c.live && c.gen == gen {
		c.endpoints[id] = cachedEndpoint{e: de, expires: now.Add(c.ttl)}
	}
	c.mu.Unlock()
	return de.at(now), nil
}

// Run listens for endpoint changes until ctx is done, keeping the cache
// in use while the LISTEN connection is up.
func (c *Cache) Run(ctx context.Context) error {
	return listen.Run(ctx, c.r.db, notifyChannel, listen.Cache{
		Name:       "endpoints",
		SetLive:    c.setLive,
		Invalidate: c.invalidate,
		Tick:       func() { c.sweep(time.Now()) },
		TickEvery:  c.ttl,
	}, c.log)
}

// setLive turns the cache on or off; off empties it.
func (c *Cache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !live && c.live {
		c.gen++
		clear(c.endpoints)
		clear(c.subs)
	}
	c.live = live
}

// invalidate drops what a notification names: the endpoint and, when it
// names an app, the app's subscriptions.
func (c *Cache) invalidate(schema, payload string) {
	f := strings.SplitN(payload, " ", 3)
	if len(f) != 3 || f[0] != schema {
		return // another schema's endpoints (tests share a database)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.endpoints, f[1])
	if f[2] != "" {
		delete(c.subs, f[2])
	}
}

// sweep drops expired entries, so that the cache holds only what is used.
func (c *Cache) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.endpoints {
		if !now.Before(e.expires) {
			delete(c.endpoints, id)
		}
	}
	for app, byType := range c.subs {
		for t, s := range byType {
			if !now.Before(s.expires) {
				delete(byType, t)
			}
		}
		if len(byType) == 0 {
			delete(c.subs, app)
		}
	}
}
