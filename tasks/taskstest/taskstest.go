// Package taskstest gives the engine's tests a Redis client on the real
// Redis named by HOOKD_TEST_REDIS_URL (default: the local one), on the
// logical database of the test's package, so that packages run in
// parallel; tests share it and delete the keys they made.
package taskstest

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisURL is used when HOOKD_TEST_REDIS_URL is unset.
const DefaultRedisURL = "redis://127.0.0.1:6379"

// Redis returns a client of logical database db, closed when the test
// ends. Under -short the test is skipped; when Redis is unreachable it
// fails at once, saying so.
func Redis(t testing.TB, db int) *redis.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Redis; skipped with -short")
	}
	u, err := url.Parse(cmp.Or(os.Getenv("HOOKD_TEST_REDIS_URL"), DefaultRedisURL))
	if err != nil {
		t.Fatalf("HOOKD_TEST_REDIS_URL: %v", err)
	}
	u.Path = fmt.Sprintf("/%d", db)
	opt, err := redis.ParseURL(u.String())
	if err != nil {
		t.Fatalf("HOOKD_TEST_REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("redis unreachable at %s (run `go tool task services` or set HOOKD_TEST_REDIS_URL): %v", u.Redacted(), err)
	}
	return rdb
}

// DeleteKeys deletes the keys of rdb matching patterns when the test
// ends, before rdb closes if rdb came from Redis before this call.
func DeleteKeys(t testing.TB, rdb *redis.Client, patterns ...string) {
	t.Helper()
	t.Cleanup(func() {
		ctx := context.Background() // the test's context is done in cleanups
		for _, p := range patterns {
			keys, err := rdb.Keys(ctx, p).Result()
			if err == nil && len(keys) > 0 {
				err = rdb.Del(ctx, keys...).Err()
			}
			if err != nil {
				t.Errorf("delete %s: %v", p, err)
			}
		}
	})
}
