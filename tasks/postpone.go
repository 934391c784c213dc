package tasks

import (
	"errors"
	"fmt"
	"time"
)

// Postponed is returned by a delivery handler that postpones its delivery
// without counting a failure (rate limit, open circuit, no free in-flight
// slot): asynq reschedules it after Wait and keeps its retry count (see
// IsFailure and RetryPolicy.RetryDelay).
type Postponed struct {
	// Outcome names why, as hookd_delivery_attempts_total counts it.
	Outcome string
	Wait    time.Duration
}

func (e *Postponed) Error() string {
	return fmt.Sprintf("postponed (%s) for %s", e.Outcome, e.Wait.Round(time.Millisecond))
}

// IsFailure is the worker's asynq IsFailure: postponements are not
// failures.
func IsFailure(err error) bool {
	var p *Postponed
	return !errors.As(err, &p)
}

// RetryAfterError is a failed attempt whose receiver asked, with
// Retry-After, not to be called again before Wait.
type RetryAfterError struct {
	Wait time.Duration
	Err  error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.Wait)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }
