package tasks

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// acquireSlot takes one of an endpoint's in-flight slots for holder
// ARGV[3] if fewer than ARGV[1] are held. Slots are the members of a sorted
// set scored by when they lapse (now + ARGV[2] ms), so the slots of a worker
// that died holding them lapse one by one; a plain counter with a TTL
// would keep them as long as other deliveries keep refreshing it.
const acquireSlot = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`

// releaseSlot gives holder ARGV[1]'s slot back.
const releaseSlot = `
redis.call('ZREM', KEYS[1], ARGV[1])
return 0
`

// decrement takes one off a counter, never below zero.
const decrement = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 0
`

// FairnessConfig tunes Fairness. Zero values take the defaults.
type FairnessConfig struct {
	// BacklogThreshold is how many unfinished deliveries an endpoint may
	// have before its new ones go to the overflow queue (default 1000).
	BacklogThreshold int
	// PerEndpoint caps the deliveries to one endpoint in flight at once
	// across all workers (default 10).
	PerEndpoint int
	// SlotTTL bounds how long a dead worker's slots stay taken: each lapses
	// this long after it was taken (default 2m). It must exceed a delivery
	// attempt.
	SlotTTL time.Duration
}

// Fairness keeps one endpoint from delaying the others, with two Redis
// counters per endpoint. Its backlog (deliveries enqueued and not yet
// finished) decides the queue: past the threshold, new deliveries go to the
// overflow queue, which workers serve with a low weight, so deliveries to
// quiet endpoints never wait behind a flood. Its in-flight count caps how
// many workers one endpoint can hold: a slow or hanging endpoint takes at
// most PerEndpoint of them, and its other deliveries are postponed.
type Fairness struct {
	rdb                         redis.Cmdable
	acquire, release, decrement *redis.Script
	cfg                         FairnessConfig
}

// NewFairness returns a Fairness on rdb.
func NewFairness(rdb redis.Cmdable, cfg FairnessConfig) *Fairness {
	cfg.BacklogThreshold = cmp.Or(cfg.BacklogThreshold, 1000)
	cfg.PerEndpoint = cmp.Or(cfg.PerEndpoint, 10)
	cfg.SlotTTL = cmp.Or(cfg.SlotTTL, 2*time.Minute)
	return &Fairness{
		rdb: rdb, cfg: cfg,
		acquire: redis.NewScript(acquireSlot), release: redis.NewScript(releaseSlot), decrement: redis.NewScript(decrement),
	}
}

func backlogKey(endpointID string) string  { return "hookd:backlog:" + endpointID }
func inflightKey(endpointID string) string { return "hookd:slots:" + endpointID }

// backlogTTL lets a backlog counter that lost track (a crash between
// enqueue and finish) reset itself once the endpoint goes quiet.
const backlogTTL = time.Hour

// Overflowing adds counts (deliveries about to be enqueued, by endpoint) to
// the endpoints' backlogs and returns those now past the threshold.
func (f *Fairness) Overflowing(ctx context.Context, counts map[string]int) (map[string]bool, error) {
	pipe := f.rdb.Pipeline()
	incrs := make(map[string]*redis.IntCmd, len(counts))
	for ep, n := range counts {
		incrs[ep] = pipe.IncrBy(ctx, backlogKey(ep), int64(n))
		pipe.Expire(ctx, backlogKey(ep), backlogTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("count backlogs: %w", err)
	}
	over := map[string]bool{}
	for ep, c := range incrs {
		if c.Val() > int64(f.cfg.BacklogThreshold) {
			over[ep] = true
		}
	}
	return over, nil
}

// Finished takes a delivery to endpointID off its backlog.
func (f *Fairness) Finished(ctx context.Context, endpointID string) error {
	if err := runScripts(ctx, f.rdb, f.finishedCall(endpointID)); err != nil {
		return fmt.Errorf("count backlog of %s: %w", endpointID, err)
	}
	return nil
}

func (f *Fairness) finishedCall(endpointID string) *scriptCall {
	return call(f.decrement, []string{backlogKey(endpointID)})
}

// acquireCall takes an in-flight slot of endpointID for holder (a
// delivery) if one is free (read with acquired).
func (f *Fairness) acquireCall(endpointID, holder string) *scriptCall {
	return call(f.acquire, []string{inflightKey(endpointID)}, f.cfg.PerEndpoint, f.cfg.SlotTTL.Milliseconds(), holder)
}

// acquired reads the result of an acquireCall: whether a slot was taken.
func (f *Fairness) acquired(c *scriptCall) (bool, error) {
	n, err := c.cmd.Int()
	if err != nil {
		return false, fmt.Errorf("take a slot of %s: %w", c.keys[0], err)
	}
	return n == 1, nil
}

// Release gives back holder's in-flight slot of endpointID.
func (f *Fairness) Release(ctx context.Context, endpointID, holder string) error {
	if err := runScripts(ctx, f.rdb, f.releaseCall(endpointID, holder)); err != nil {
		return fmt.Errorf("give back a slot of %s: %w", endpointID, err)
	}
	return nil
}

func (f *Fairness) releaseCall(endpointID, holder string) *scriptCall {
	return call(f.release, []string{inflightKey(endpointID)}, holder)
}
