package tasks

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRetryPolicyDelay(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{Schedule: []time.Duration{time.Second, time.Minute}, Jitter: -1}
	for n, want := range map[int]time.Duration{0: time.Second, 1: time.Minute, 5: time.Minute, -1: time.Second} {
		if got := p.Delay(n); got != want {
			t.Errorf("Delay(%d) = %s, want %s", n, got, want)
		}
	}
	if got := p.MaxRetry(); got != 2 {
		t.Errorf("MaxRetry = %d, want 2", got)
	}

	jittered := RetryPolicy{Schedule: []time.Duration{10 * time.Second}}
	for range 1000 {
		if d := jittered.Delay(0); d < 8*time.Second || d > 12*time.Second {
			t.Fatalf("Delay with default jitter = %s, want within ±20%% of 10s", d)
		}
	}
	if got := (RetryPolicy{}).MaxRetry(); got != 7 {
		t.Errorf("default MaxRetry = %d, want 7", got)
	}
}

func TestParseRetrySchedule(t *testing.T) {
	t.Parallel()
	got, err := ParseRetrySchedule("0s, 200ms,5m")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]time.Duration{0, 200 * time.Millisecond, 5 * time.Minute}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "5", "1s,,2s", "-1s", "soon"} {
		if _, err := ParseRetrySchedule(bad); err == nil {
			t.Errorf("ParseRetrySchedule(%q) succeeded", bad)
		}
	}
}
