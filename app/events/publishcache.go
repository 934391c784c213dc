package events

import (
	"cmp"
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hookd/hookd/app/listen"
	"github.com/hookd/hookd/tasks/lru"
)

// publishChecksChannel is the channel the triggers on applications and
// event_types notify (migration 0011), with "schema app app_id" or
// "schema event_type name" as payload.
const publishChecksChannel = "hookd_publish_checks"

// Defaults of PublishCacheConfig.
const (
	DefaultPublishCacheTTL        = time.Minute
	DefaultPublishCacheApps       = 10_000
	DefaultPublishCacheEventTypes = 10_000
)

// missingAppTTL bounds how long an app found missing is remembered (at
// most the TTL): a producer that keeps publishing to a deleted app costs a
// read every few seconds, not one per request.
const missingAppTTL = 5 * time.Second

// PublishCacheConfig bounds a PublishCache; zero fields take the defaults.
type PublishCacheConfig struct {
	// TTL is how long an entry lives, a bound should Postgres ever drop a
	// notification.
	TTL time.Duration
	// MaxApps and MaxEventTypes cap the entries of each kind; the least
	// recently used goes first. Event type names are the publisher's
	// choice (unregistered types are accepted), so they need the cap as
	// much as app IDs do.
	MaxApps       int
	MaxEventTypes int
}

// PublishCache serves what Publish checks before it writes, whether the
// app exists and the event type with its compiled schema (or that the type
// is not registered), from memory, so that a publish costs no read.
// Postgres notifies every change of an application's existence or of an
// event type; the cache drops what changed. It is used only while its
// LISTEN connection is up: before Run has established it, and from a lost
// connection until it is back, every publish reads Postgres and the cache
// is emptied, so an entry is never staler than a notification's delay.
// Entries also expire after a TTL (an app found missing after at most 5s).
type PublishCache struct {
	s   *Store
	log *slog.Logger
	cfg PublishCacheConfig

	mu    sync.Mutex
	live  bool
	gen   uint64 // counts invalidations; a read that saw one is not kept
	apps  *lru.Cache[cachedApp]
	types *lru.Cache[cachedType]
}

type cachedApp struct {
	exists  bool
	expires time.Time
}

type cachedType struct {
	check   typeCheck
	expires time.Time
}

// NewPublishCache returns a cache of what s.Publish checks and makes
// Publish use it. Run must run for the cache to be used.
func (s *Store) NewPublishCache(log *slog.Logger, cfg PublishCacheConfig) *PublishCache {
	cfg.TTL = cmp.Or(cfg.TTL, DefaultPublishCacheTTL)
	cfg.MaxApps = cmp.Or(cfg.MaxApps, DefaultPublishCacheApps)
	cfg.MaxEventTypes = cmp.Or(cfg.MaxEventTypes, DefaultPublishCacheEventTypes)
	c := &PublishCache{
		s: s, log: log, cfg: cfg,
		apps:  lru.New[cachedApp](cfg.MaxApps),
		types: lru.New[cachedType](cfg.MaxEventTypes),
	}
	s.cache = c
	return c
}

// check returns whether app appID exists and, when it does, what applies
// to events of type name, from memory when both are cached.
func (c *PublishCache) check(ctx context.Context, appID, name string) (bool, typeCheck, error) {
	now := time.Now()
	c.mu.Lock()
	a, aok := c.apps.Get(appID)
	t, tok := c.types.Get(name)
	live, gen := c.live, c.gen
	c.mu.Unlock()
	if live && aok && now.Before(a.expires) && (!a.exists || tok && now.Before(t.expires)) {
		return a.exists, t.check, nil
	}
	exists, tc, err := c.s.readCheck(ctx, appID, name)
	if err != nil {
		return false, typeCheck{}, err
	}
	c.mu.Lock()
	if c.live && c.gen == gen {
		if exists {
			c.apps.Put(appID, cachedApp{exists: true, expires: now.Add(c.cfg.TTL)})
			c.types.Put(name, cachedType{check: tc, expires: now.Add(c.cfg.TTL)})
		} else {
			c.apps.Put(appID, cachedApp{expires: now.Add(min(c.cfg.TTL, missingAppTTL))})
		}
	}
	c.mu.Unlock()
	return exists, tc, nil
}

// Run listens for changes of apps and event types until ctx is done,
// keeping the cache in use while the LISTEN connection is up.
func (c *PublishCache) Run(ctx context.Context) error {
	return listen.Run(ctx, c.s.db, publishChecksChannel, listen.Cache{
		Name:       "publish checks",
		SetLive:    c.setLive,
		Invalidate: c.invalidate,
	}, c.log)
}

// setLive turns the cache on or off; off empties it.
func (c *PublishCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !live && c.live {
		c.gen++
		c.apps.Clear()
		c.types.Clear()
	}
	c.live = live
}

// invalidate drops what a notification names: an app or an event type.
func (c *PublishCache) invalidate(schema, payload string) {
	f := strings.SplitN(payload, " ", 3)
	if len(f) != 3 || f[0] != schema {
		return // another schema's apps (tests share a database)
	}
	switch f[1] {
	case "app":
		c.forgetApp(f[2])
	case "event_type":
		c.forgetEventType(f[2])
	}
}

// forgetApp and forgetEventType drop an entry at once: a change committed
// by this process applies to its next publish without waiting for the
// notification.
func (c *PublishCache) forgetApp(appID string)      { c.forget(c.apps.Remove, appID) }
func (c *PublishCache) forgetEventType(name string) { c.forget(c.types.Remove, name) }

func (c *PublishCache) forget(remove func(string), key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	remove(key)
}
