package guard_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hookd/hookd/tasks/guard"
	"github.com/hookd/hookd/tasks/taskstest"
)

// limiterRedisDB is the logical Redis database of this package's tests.
const limiterRedisDB = 5

// limiterRedis returns a client on the package's Redis database, or fails
// the test at once when Redis is unreachable.
func limiterRedis(t *testing.T) *redis.Client {
	t.Helper()
	return taskstest.Redis(t, limiterRedisDB)
}

// limiterKey returns a fresh endpoint ID and deletes its limiter key when
// the test ends: the database is shared, so nothing else is flushed.
func limiterKey(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	id := "ep_limittest_" + rand.Text()
	t.Cleanup(func() {
		// t.Context is already done here.
		if err := rdb.Del(context.Background(), "hookd:ratelimit:{"+id+"}").Err(); err != nil {
			t.Errorf("delete limiter key: %v", err)
		}
	})
	return id
}

// admission is what a caller looping on Allow saw.
type admission struct {
	admitted []time.Time // when each admitted call returned
	// refusedAfterWait counts the calls refused although they came after
	// the wait asked for.
	refusedAfterWait int
	calls            int
	callTime         time.Duration // spent in Allow
	overslept        time.Duration // slept beyond the waits asked for
}

// admitFor calls Allow in a loop for d, sleeping whatever it asks.
func admitFor(t *testing.T, l *guard.RateLimiter, id, caller string, perSecond int, d time.Duration) admission {
	t.Helper()
	var a admission
	waited := false
	ticket := 0
	for start := time.Now(); time.Since(start) < d; {
		called := time.Now()
		wait, err := l.Allow(t.Context(), id, caller+"-"+fmt.Sprint(ticket), perSecond)
		a.calls++
		a.callTime += time.Since(called)
		if err != nil {
			t.Error(err)
			return a
		}
		if wait == 0 {
			a.admitted = append(a.admitted, time.Now())
			waited = false
			ticket++
			continue
		}
		if waited {
			a.refusedAfterWait++
		}
		slept := time.Now()
		time.Sleep(wait)
		a.overslept += time.Since(slept) - wait
		waited = true
	}
	return a
}

func TestLimiter(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis; skipped with -short")
	}
	t.Parallel()

	t.Run("BurstAdmitsOne", func(t *testing.T) {
		t.Parallel()
		rdb := limiterRedis(t)
		l, id := guard.NewRateLimiter(rdb), limiterKey(t, rdb)

		const callers = 20
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			waits = make([]time.Duration, callers)
			errs  = make([]error, callers)
		)
		// Open a connection per caller first, so that the calls come
		// together, well within one interval: at 1/s the slots are a
		// second apart, and a loaded machine may spread the calls over
		// up to half of one.
		for range callers {
			wg.Go(func() { _ = rdb.Ping(t.Context()).Err() })
		}
		wg.Wait()
		for i := range callers {
			wg.Go(func() {
				<-start
				waits[i], errs[i] = l.Allow(t.Context(), id, fmt.Sprint(i), 1)
			})
		}
		close(start)
		wg.Wait()

		admitted := 0
		slots := map[time.Duration]bool{}
		for i, wait := range waits {
			switch {
			case errs[i] != nil:
				t.Errorf("Allow: %v", errs[i])
			case wait == 0:
				admitted++
			case wait < 0 || wait > callers*time.Second:
				t.Errorf("wait = %s, want within (0, %s]", wait, callers*time.Second)
			default:
				// Refused calls queue for distinct slots, one interval apart.
				slots[(wait+500*time.Millisecond)/time.Second] = true
			}
		}
		if len(slots) != callers-1 {
			t.Errorf("the %d refused calls reserved %d distinct slots, want one each (waits %v)", callers-1, len(slots), waits)
		}
		if admitted != 1 {
			t.Errorf("%d of %d concurrent calls admitted at 1/s, want 1 (waits %v)", admitted, callers, waits)
		}
	})

	for _, perSecond := range []int{10, 100} {
		t.Run(fmt.Sprintf("Rate%d", perSecond), func(t *testing.T) {
			t.Parallel()
			rdb := limiterRedis(t)
			l, id := guard.NewRateLimiter(rdb), limiterKey(t, rdb)

			// Several callers, so that the limiter and not one caller's
			// round trips sets the pace on a loaded machine.
			const d, callers = 1500 * time.Millisecond, 4
			var (
				wg sync.WaitGroup
				as [callers]admission
			)
			for i := range callers {
				wg.Go(func() { as[i] = admitFor(t, l, id, fmt.Sprint(i), perSecond, d) })
			}
			wg.Wait()
			got, refused := 0, 0
			for _, a := range as {
				got += len(a.admitted)
				refused += a.refusedAfterWait
			}
			// A caller that waits as told is let through at once.
			if refused > 0 {
				t.Errorf("%d calls refused after waiting as told", refused)
			}
			// Never above the limit. Below it only by what late callers
			// lose at the end of the window: a loaded machine oversleeps.
			want := perSecond * int(d/time.Millisecond) / 1000
			slack := max(1, want/10)
			if got > want+slack {
				t.Errorf("admitted %d in %s at %d/s, over the limit (%d+%d)", got, d, perSecond, want, slack)
			}
			if got < want*7/10 {
				t.Errorf("admitted %d in %s at %d/s, far below the limit (%d)", got, d, perSecond, want)
			}
			t.Logf("%d callers admitted %d in %s at %d/s", callers, got, d, perSecond)
		})
	}

	t.Run("SharedAcrossClients", func(t *testing.T) {
		t.Parallel()
		// Two clients stand for two worker processes.
		rdb1, rdb2 := limiterRedis(t), limiterRedis(t)
		l1, l2 := guard.NewRateLimiter(rdb1), guard.NewRateLimiter(rdb2)
		id := limiterKey(t, rdb1)

		const d = 1500 * time.Millisecond
		var a1, a2 admission
		var wg sync.WaitGroup
		wg.Go(func() { a1 = admitFor(t, l1, id, "1", 10, d) })
		wg.Go(func() { a2 = admitFor(t, l2, id, "2", 10, d) })
		wg.Wait()
		n1, n2 := len(a1.admitted), len(a2.admitted)
		// 15 shared, 30 if each kept its own count: the lower bound
		// leaves room for callers a loaded machine makes oversleep.
		if total := n1 + n2; total < 11 || total > 16 {
			t.Errorf("two limiters admitted %d+%d in %s at 10/s, want 15 (at most 16) together", n1, n2, d)
		}
		t.Logf("two limiters admitted %d+%d in %s at 10/s", n1, n2, d)
	})

	t.Run("Unlimited", func(t *testing.T) {
		t.Parallel()
		rdb := limiterRedis(t)
		l, id := guard.NewRateLimiter(rdb), limiterKey(t, rdb)
		for _, perSecond := range []int{0, -1} {
			for range 100 {
				wait, err := l.Allow(t.Context(), id, "t", perSecond)
				if err != nil || wait != 0 {
					t.Fatalf("Allow(%d) = %s, %v; want 0, nil", perSecond, wait, err)
				}
			}
		}
		if n, err := rdb.Exists(t.Context(), "hookd:ratelimit:{"+id+"}").Result(); err != nil || n != 0 {
			t.Errorf("an unlimited endpoint left a limiter key (exists %d, %v)", n, err)
		}
	})
}
