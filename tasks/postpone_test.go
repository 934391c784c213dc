package tasks

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{Schedule: []time.Duration{10 * time.Millisecond, time.Minute}, Jitter: -1}
	deliver := asynq.NewTask(TypeDeliver, nil)

	t.Run("Postponed", func(t *testing.T) {
		t.Parallel()
		for _, wait := range []time.Duration{time.Nanosecond, 250 * time.Millisecond, 30 * time.Second} {
			for _, err := range []error{
				&Postponed{Outcome: "circuit_open", Wait: wait},
				fmt.Errorf("postponed: %w", &Postponed{Outcome: "rate_limited", Wait: wait}),
			} {
				for range 200 {
					// The retry count does not matter: a deferral is not a failure.
					if d := p.RetryDelay(5, err, deliver); d < wait || d > wait+wait/10 {
						t.Fatalf("retryDelay(%v) = %s, want %s plus at most 10%%", err, d, wait)
					}
				}
			}
		}
	})

	t.Run("RetryAfterLongerThanSchedule", func(t *testing.T) {
		t.Parallel()
		err := &RetryAfterError{Wait: 2 * time.Second, Err: errors.New("HTTP 429")}
		for _, e := range []error{err, fmt.Errorf("deliver: %w", err)} {
			// Never before the receiver asked; asynq schedules retries
			// to the second, so the delay may be rounded up by as much.
			if d := p.RetryDelay(0, e, deliver); d < 2*time.Second || d > 3*time.Second {
				t.Errorf("retryDelay(%v) = %s, want from 2s to 3s", e, d)
			}
		}
	})

	t.Run("RetryAfterShorterThanSchedule", func(t *testing.T) {
		t.Parallel()
		err := &RetryAfterError{Wait: 2 * time.Second, Err: errors.New("HTTP 503")}
		if d := p.RetryDelay(1, err, deliver); d != time.Minute {
			t.Errorf("retryDelay(%v) = %s, want the schedule's 1m", err, d)
		}
	})

	t.Run("Failure", func(t *testing.T) {
		t.Parallel()
		for n, want := range map[int]time.Duration{0: 10 * time.Millisecond, 1: time.Minute, 7: time.Minute} {
			if d := p.RetryDelay(n, errors.New("HTTP 500"), deliver); d != want {
				t.Errorf("retryDelay(%d, HTTP 500) = %s, want %s", n, d, want)
			}
		}
	})

	t.Run("Fanout", func(t *testing.T) {
		t.Parallel()
		fanout := asynq.NewTask(TypeFanout, nil)
		for n, want := range map[int]time.Duration{
			0: time.Second, 1: 2 * time.Second, 3: 8 * time.Second, 5: 32 * time.Second,
			6: time.Minute, 7: time.Minute, 1000: time.Minute,
		} {
			if d := p.RetryDelay(n, errors.New("postgres down"), fanout); d != want {
				t.Errorf("fan-out retryDelay(%d) = %s, want %s", n, d, want)
			}
		}
		// A Retry-After means nothing to a fan-out.
		ra := &RetryAfterError{Wait: time.Hour, Err: errors.New("x")}
		if d := p.RetryDelay(0, ra, fanout); d != time.Second {
			t.Errorf("fan-out retryDelay with a Retry-After = %s, want 1s", d)
		}
	})
}

func TestIsFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"Postponed", &Postponed{Outcome: "circuit_open", Wait: time.Second}, false},
		{"WrappedPostponed", fmt.Errorf("deliver: %w", &Postponed{Outcome: "rate_limited", Wait: time.Millisecond}), false},
		{"Plain", errors.New("HTTP 500"), true},
		{"RetryAfter", &RetryAfterError{Wait: time.Second, Err: errors.New("HTTP 429")}, true},
		{"SkipRetry", fmt.Errorf("endpoint gone: %w", asynq.SkipRetry), true},
	} {
		if got := IsFailure(tc.err); got != tc.want {
			t.Errorf("%s: IsFailure(%v) = %t, want %t", tc.name, tc.err, got, tc.want)
		}
	}
}
