package tasks_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hookd/hookd/tasks"
)

// TestCountNow: a dry run that counts within the wait is answered as it
// ended; one that takes longer is handed on, once, and is no error; one
// that fails is handed on and its error returned.
func TestCountNow(t *testing.T) {
	t.Parallel()
	quick := func(context.Context) error { return nil }
	slow := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	broken := errors.New("broken")
	failing := func(context.Context) error { return broken }
	for _, tc := range []struct {
		name      string
		run       func(context.Context) error
		wantErr   error
		wantConts int
	}{
		{"Quick", quick, nil, 0},
		{"Slow", slow, nil, 1},
		{"Failing", failing, broken, 1},
	} {
		conts := 0
		cont := func(ctx context.Context) error {
			if ctx.Err() != nil {
				t.Errorf("%s: handed on with a done context", tc.name)
			}
			conts++
			return nil
		}
		err := tasks.CountNow(t.Context(), 20*time.Millisecond, tc.run, cont)
		if !errors.Is(err, tc.wantErr) || conts != tc.wantConts {
			t.Errorf("%s: CountNow = %v with %d hand-overs, want %v with %d", tc.name, err, conts, tc.wantErr, tc.wantConts)
		}
	}
	// A request gone leaves its job to a worker.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	conts := 0
	err := tasks.CountNow(ctx, time.Second, slow, func(ctx context.Context) error {
		if ctx.Err() == nil {
			conts++
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || conts != 1 {
		t.Errorf("CountNow of a cancelled request = %v with %d live hand-overs, want canceled and 1", err, conts)
	}
}
