package tasks

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcra is the generic cell rate algorithm over one Redis key holding
// the theoretical arrival time (TAT, in microseconds of Redis' clock). It
// admits one request per interval with no burst, and returns 0 when the
// request is admitted or how many microseconds to wait otherwise. Redis'
// clock is the only clock, so every worker process shares one limit.
const gcra = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now >= interval then
  return math.floor(tat - now - interval + 1)
end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000) + 1000)
return 0
`

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

// Allow admits one delivery to endpoint id limited to perSecond, or returns
// how long to wait before asking again.
func (l *RateLimiter) Allow(ctx context.Context, id string, perSecond int) (time.Duration, error) {
	if perSecond <= 0 {
		return 0, nil
	}
	interval := 1e6 / float64(perSecond)
	wait, err := l.script.Run(ctx, l.rdb, []string{"hookd:ratelimit:" + id}, interval).Int64()
	if err != nil {
		return 0, fmt.Errorf("rate limit endpoint %s: %w", id, err)
	}
	return time.Duration(wait) * time.Microsecond, nil
}
