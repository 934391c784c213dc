package tasks

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// breakerAllow reads an endpoint's circuit: 0 when closed, -1 when this
// caller may send the single probe of a half-open circuit, or the
// milliseconds to wait while it is open (or another probe is out).
const breakerAllow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until == 0 then return 0 end
if now < open_until then return open_until - now end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return -1 end
return tonumber(ARGV[2])
`

// breakerRecord counts an attempt's outcome: a success closes the circuit;
// the threshold-th consecutive failure, or a failed probe, opens it for
// the cooldown. It returns 1 when the circuit is (now) open.
const breakerRecord = `
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 0
end
local fails = redis.call('HINCRBY', KEYS[1], 'fails', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local probing = redis.call('DEL', KEYS[2]) == 1
if fails >= tonumber(ARGV[2]) or probing then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'open_until', now + tonumber(ARGV[3]))
  return 1
end
return 0
`

// BreakerConfig tunes a Breaker. Zero values take the defaults.
type BreakerConfig struct {
	// Threshold is how many consecutive failures open a circuit
	// (default 10).
	Threshold int
	// Cooldown is how long a circuit stays open before a probe (default
	// 30s); a failed probe opens it again for as long.
	Cooldown time.Duration
	// ProbeTimeout bounds how long a probe holds the half-open circuit
	// (default 1m); it must exceed a delivery attempt.
	ProbeTimeout time.Duration
}

// Breaker is a circuit breaker per endpoint, shared by every worker through
// Redis: after a run of consecutive failures deliveries to the endpoint wait
// instead of failing, and one probe delivery at a time tests whether it
// came back.
type Breaker struct {
	rdb           redis.Cmdable
	allow, record *redis.Script
	cfg           BreakerConfig
}

// NewBreaker returns a Breaker on rdb.
func NewBreaker(rdb redis.Cmdable, cfg BreakerConfig) *Breaker {
	cfg.Threshold = cmp.Or(cfg.Threshold, 10)
	cfg.Cooldown = cmp.Or(cfg.Cooldown, 30*time.Second)
	cfg.ProbeTimeout = cmp.Or(cfg.ProbeTimeout, time.Minute)
	return &Breaker{rdb: rdb, allow: redis.NewScript(breakerAllow), record: redis.NewScript(breakerRecord), cfg: cfg}
}

func breakerKeys(id string) []string {
	return []string{"hookd:circuit:" + id, "hookd:circuit:" + id + ":probe"}
}

// allowCall asks whether a delivery to endpoint id may be sent now (read
// with allowed).
func (b *Breaker) allowCall(id string) *scriptCall {
	return call(b.allow, breakerKeys(id), b.cfg.ProbeTimeout.Milliseconds(), b.cfg.Cooldown.Milliseconds())
}

// allowed reads the result of an allowCall: whether the delivery is the
// probe of a half-open circuit, or else how long it must wait (0: none).
func (b *Breaker) allowed(c *scriptCall) (wait time.Duration, probe bool, err error) {
	n, err := c.cmd.Int64()
	if err != nil {
		return 0, false, fmt.Errorf("read circuit of endpoint %s: %w", c.keys[0], err)
	}
	if n < 0 {
		return 0, true, nil
	}
	return time.Duration(n) * time.Millisecond, false, nil
}

// abandonProbe gives up the probe allowCall granted, unsent, so that another
// delivery can probe at once.
func (b *Breaker) abandonProbe(ctx context.Context, id string) error {
	if err := b.rdb.Del(ctx, breakerKeys(id)[1]).Err(); err != nil {
		return fmt.Errorf("give up probe of endpoint %s: %w", id, err)
	}
	return nil
}

// recordCall counts the outcome of an attempt to endpoint id.
func (b *Breaker) recordCall(id string, ok bool) *scriptCall {
	okArg := "0"
	if ok {
		okArg = "1"
	}
	return call(b.record, breakerKeys(id), okArg, b.cfg.Threshold,
		b.cfg.Cooldown.Milliseconds(), (24 * time.Hour).Milliseconds())
}
