// Package listen follows a Postgres notification channel for an in-memory
// cache that a change elsewhere must invalidate: it hands each
// notification of the current schema to the cache, and tells it whether it
// may trust itself (the LISTEN connection is up) or must step aside and
// read Postgres (notifications may be lost until the connection is back).
package listen

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"
)

// Cache is what a channel's notifications keep current.
type Cache struct {
	// Name names the cache's contents in log lines ("endpoints", ...).
	Name string
	// SetLive turns the cache on while notifications arrive, and off
	// (emptied) when some may have been lost.
	SetLive func(live bool)
	// Invalidate drops what a notification's payload names; schema is the
	// current schema, which payloads name first (tests share a database).
	Invalidate func(schema, payload string)
	// Tick, when set, runs between notifications every TickEvery (a sweep
	// of expired entries).
	Tick      func()
	TickEvery time.Duration
}

// Waits of Run: between tries of a failed setup or after a lost connection
// (retryPause), and the longest wait for a notification before Run checks
// that the connection is up (receiveTimeout).
const (
	retryPause     = time.Second
	receiveTimeout = 5 * time.Second
)

// Run listens on channel until ctx is done, keeping c current.
func Run(ctx context.Context, db *bun.DB, channel string, c Cache, log *slog.Logger) error {
	var schema string
	for schema == "" {
		if err := db.NewRaw("SELECT current_schema()").Scan(ctx, &schema); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.WarnContext(ctx, "cache: no schema yet", slog.String("cache", c.Name), slog.Any("err", err))
			if !sleep(ctx, retryPause) {
				return nil
			}
		}
	}
	ln := pgdriver.NewListener(db)
	defer ln.Close()
	for ctx.Err() == nil {
		if err := ln.Listen(ctx, channel); err != nil {
			if ctx.Err() == nil {
				log.WarnContext(ctx, "cache: listen failed; reading postgres", slog.String("cache", c.Name), slog.Any("err", err))
				sleep(ctx, retryPause)
			}
			continue
		}
		break
	}
	var ticks <-chan time.Time
	if c.Tick != nil {
		t := time.NewTicker(c.TickEvery)
		defer t.Stop()
		ticks = t.C
	}
	c.SetLive(true)
	for ctx.Err() == nil {
		_, payload, err := ln.ReceiveTimeout(ctx, receiveTimeout)
		var netErr net.Error
		switch {
		case err == nil:
			c.SetLive(true)
			c.Invalidate(schema, payload)
		case errors.As(err, &netErr) && netErr.Timeout():
			c.SetLive(true) // a quiet, working connection
		case ctx.Err() != nil:
		default:
			// Notifications may be lost until the listener reconnects.
			c.SetLive(false)
			log.WarnContext(ctx, "cache: notifications lost; reading postgres until they are back", slog.String("cache", c.Name), slog.Any("err", err))
			sleep(ctx, retryPause)
		}
		select {
		case <-ticks:
			c.Tick()
		default:
		}
	}
	return nil
}

// sleep waits for d or until ctx is done, reporting whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
