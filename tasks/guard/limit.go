package guard

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcra is the generic cell rate algorithm, with reservations, over Redis'
// clock (microseconds), so that every worker process shares one limit.
// KEYS[1] holds the endpoint's theoretical arrival time (TAT): the next free
// slot, one interval after the last one given out. KEYS[2] holds the slot
// reserved for one ticket (a delivery) that had to wait.
//
// A ticket with a reservation is admitted once its slot has come, and
// otherwise told how long is left. A new ticket is admitted when the next
// slot is now; otherwise it reserves that slot, so that waiting deliveries
// queue for distinct slots and none of the limit is lost to the time it
// takes them to come back. There is no burst. It returns 0 to admit, or the
// microseconds to wait.
const gcra = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local reserved = redis.call('GET', KEYS[2])
if reserved then
  reserved = tonumber(reserved)
  if reserved <= now then
    redis.call('DEL', KEYS[2])
    return 0
  end
  return math.ceil(reserved - now)
end
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000) + 1000)
if tat <= now then return 0 end
redis.call('SET', KEYS[2], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 60000)
return math.ceil(tat - now)
`

// rateKey holds endpoint id's theoretical arrival time; its tickets' keys
// extend it, and share its hash tag, so that a Redis Cluster keeps them in
// one slot.
func rateKey(id string) string { return "hookd:ratelimit:{" + id + "}" }

// RateLimiter spaces the deliveries to each endpoint across every worker,
// with a GCRA in Redis.
type RateLimiter struct {
	rdb    redis.Scripter
	script *redis.Script
}

// NewRateLimiter returns a RateLimiter on rdb.
func NewRateLimiter(rdb redis.Scripter) *RateLimiter {
	return &RateLimiter{rdb: rdb, script: redis.NewScript(gcra)}
}

// Allow admits ticket (a delivery) to endpoint id limited to perSecond, or
// reserves it a slot and returns how long to wait for it. Asking again with
// the same ticket after the wait admits it without taking another slot.
func (l *RateLimiter) Allow(ctx context.Context, id, ticket string, perSecond int) (time.Duration, error) {
	if perSecond <= 0 {
		return 0, nil
	}
	interval := 1e6 / float64(perSecond)
	keys := []string{rateKey(id), rateKey(id) + ":" + ticket}
	wait, err := l.script.Run(ctx, l.rdb, keys, interval).Int64()
	if err != nil {
		return 0, fmt.Errorf("rate limit endpoint %s: %w", id, err)
	}
	return time.Duration(wait) * time.Microsecond, nil
}
