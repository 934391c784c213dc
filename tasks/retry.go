package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// DefaultRetrySchedule returns the delay before each retry of a delivery,
// after an immediate first attempt: 5s, 5m, 30m, 2h, 5h, 10h, 10h.
func DefaultRetrySchedule() []time.Duration {
	return []time.Duration{
		5 * time.Second, 5 * time.Minute, 30 * time.Minute,
		2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
	}
}

// DefaultJitter spreads retries by up to ±20%, so that deliveries failing
// together do not come back together.
const DefaultJitter = 0.2

// RetryPolicy says when failed deliveries are tried again.
type RetryPolicy struct {
	// Schedule holds the delay before each retry; its length is the number
	// of retries (default DefaultRetrySchedule()).
	Schedule []time.Duration
	// Jitter spreads each delay by up to ± this fraction (default
	// DefaultJitter); negative means none.
	Jitter float64
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if len(p.Schedule) == 0 {
		p.Schedule = DefaultRetrySchedule()
	}
	if p.Jitter == 0 {
		p.Jitter = DefaultJitter
	}
	return p
}

// MaxRetry returns how many times a delivery is retried.
func (p RetryPolicy) MaxRetry() int { return len(p.withDefaults().Schedule) }

// Delay returns the pause before retry n+1 of a delivery, n being how many
// retries already happened.
func (p RetryPolicy) Delay(n int) time.Duration {
	p = p.withDefaults()
	d := p.Schedule[min(max(n, 0), len(p.Schedule)-1)]
	if p.Jitter > 0 {
		d = time.Duration(float64(d) * (1 + p.Jitter*(2*rand.Float64()-1)))
	}
	return d
}

// RetryDelay is the worker's asynq RetryDelayFunc. A postponed delivery
// (rate limit, open circuit, busy) waits what its Postponed says, spread by up to
// 10%; a failed one follows the policy, and waits at least what the
// receiver's Retry-After asked. Fan-outs and other tasks, which fail only
// with Postgres or Redis, back off exponentially from 1s to 1m.
func (p RetryPolicy) RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	var pp *Postponed
	if errors.As(err, &pp) {
		return pp.Wait + time.Duration(rand.Int64N(int64(pp.Wait)/10+1))
	}
	if t.Type() != TypeDeliver {
		return min(time.Second<<min(n, 6), time.Minute)
	}
	// Attempts made before the task (the fan-out's first) count.
	var made struct {
		Attempts int `json:"attempts"`
	}
	_ = json.Unmarshal(t.Payload(), &made) // a payload that fails to decode is archived by its handler
	delay := p.Delay(n + made.Attempts)
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		// asynq schedules retries to the second, rounding down: without the
		// extra second a retry could come up to a second sooner than asked.
		delay = max(delay, ra.Wait+time.Second)
	}
	return delay
}

// ParseRetrySchedule parses comma-separated Go durations, such as
// "0s,200ms,5s".
func ParseRetrySchedule(s string) ([]time.Duration, error) {
	var out []time.Duration
	for f := range strings.SplitSeq(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("parse retry schedule: %w", err)
		}
		if d < 0 {
			return nil, fmt.Errorf("parse retry schedule: negative delay %s", d)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, errors.New("parse retry schedule: empty")
	}
	return out, nil
}
