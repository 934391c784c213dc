package main_test

import (
	"testing"
	"time"

	"github.com/hookd/hookd/outbox/outboxtest"
)

// TestWarnsWhenRedisMayEvict: asynq can leave a task stuck active, for good,
// when Redis evicts some of its keys, and no reconciler can take such a task
// back through asynq. hookd therefore warns at start when Redis' eviction
// policy is not noeviction, and says nothing when it is.
func TestWarnsWhenRedisMayEvict(t *testing.T) {
	t.Parallel()
	bin := build(t)
	const warning = "redis may evict hookd's keys: set maxmemory-policy to noeviction"
	for _, policy := range []string{"allkeys-lru", "noeviction"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			r := startPrivateRedis(t)
			if got := r.cli("CONFIG", "SET", "maxmemory-policy", policy); got != "OK" {
				t.Fatalf("CONFIG SET maxmemory-policy %s: %q", policy, got)
			}
			p := startHookd(t, bin, "hookd",
				"HOOKD_DATABASE_URL="+outboxtest.SchemaURL(t),
				"HOOKD_REDIS_URL="+r.url(),
				"HOOKD_ROLES=relay",
				"HOOKD_METRICS_ADDR=off",
				"HOOKD_DATABASE_MAX_CONNS=3")
			select {
			case <-p.running:
			case <-time.After(30 * time.Second):
				t.Fatal("hookd did not start within 30s")
			}
			p.stop(t)
			if warned := p.warned(warning); warned != (policy != "noeviction") {
				t.Errorf("with maxmemory-policy %s, warned = %v", policy, warned)
			}
		})
	}
}
