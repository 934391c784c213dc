package tasks

import (
	"context"
	"time"
)

// MaxReplayRate bounds the pace a bulk retry or a recovery may be given,
// in deliveries a second.
const MaxReplayRate = 10_000

// paceSteps is how many batches a second a paced replay sends: a rate of
// 10 goes out as 2 every 200 ms, not 10 at once every second.
const paceSteps = 5

// Pacer spaces what a replay sends so that at most rate deliveries a
// second go out, counted from its first batch: a receiver that has just
// come back is not flooded. A zero rate does not pace.
type Pacer struct {
	rate  int
	start time.Time
	sent  int
}

// NewPacer returns the Pacer of a replay job: rate deliveries a second
// (nil: no pace), none for a dry run, which sends nothing.
func NewPacer(rate *int, dryRun bool) *Pacer {
	if rate == nil || dryRun {
		return &Pacer{}
	}
	return &Pacer{rate: *rate}
}

// Batch returns how many deliveries the next batch may hold, at most
// limit: a fraction of a second's worth when pacing.
func (p *Pacer) Batch(limit int) int {
	if p.rate <= 0 {
		return limit
	}
	return min(limit, max(1, p.rate/paceSteps))
}

// Sent records n deliveries sent and waits until the pace allows the
// next one, or ctx is done.
func (p *Pacer) Sent(ctx context.Context, n int) error {
	if p.rate <= 0 {
		return nil
	}
	if p.start.IsZero() {
		p.start = time.Now()
	}
	p.sent += n
	due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
	wait := time.Until(due)
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
