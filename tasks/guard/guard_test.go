package guard_test

import (
	"context"
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hookd/hookd/tasks/guard"
)

func TestGate(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis; skipped with -short")
	}
	t.Parallel()

	type testBundle struct {
		rdb *redis.Client
		app string
	}
	// setup returns a gate on the package's Redis database for an app of
	// its own, whose keys go when the test ends.
	setup := func(t *testing.T, cfg guard.Config) (*guard.Gate, *testBundle) {
		t.Helper()
		b := &testBundle{rdb: limiterRedis(t), app: "app_gatetest_" + rand.Text()}
		t.Cleanup(func() {
			keys, err := b.rdb.Keys(context.Background(), "hookd:{"+b.app+"}:*").Result()
			if err == nil && len(keys) > 0 {
				err = b.rdb.Del(context.Background(), keys...).Err()
			}
			if err != nil {
				t.Errorf("delete gate keys: %v", err)
			}
		})
		return guard.New(b.rdb, cfg), b
	}
	ticket := func(b *testBundle, endpoint, delivery string) guard.Ticket {
		return guard.Ticket{AppID: b.app, EndpointID: endpoint, DeliveryID: delivery, Queue: "deliveries"}
	}
	enter := func(t *testing.T, g *guard.Gate, tk guard.Ticket) guard.Verdict {
		t.Helper()
		v, err := g.Enter(t.Context(), tk)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	leave := func(t *testing.T, g *guard.Gate, tk guard.Ticket, o guard.Outcome) []guard.Waiter {
		t.Helper()
		ws, err := g.Leave(t.Context(), tk, o)
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}
	ids := func(ws []guard.Waiter) []string {
		var ids []string
		for _, w := range ws {
			ids = append(ids, w.DeliveryID)
		}
		return ids
	}

	t.Run("EndpointBusyWaitsAndIsWoken", func(t *testing.T) {
		t.Parallel()
		g, b := setup(t, guard.Config{PerEndpoint: 2, PerApp: 10})
		d1, d2, d3, d4 := ticket(b, "ep_a", "d1"), ticket(b, "ep_a", "d2"), ticket(b, "ep_a", "d3"), ticket(b, "ep_a", "d4")
		for _, tk := range []guard.Ticket{d1, d2} {
			if v := enter(t, g, tk); v.Wait != 0 {
				t.Fatalf("%s postponed (%+v) with a slot free", tk.DeliveryID, v)
			}
		}
		v3 := enter(t, g, d3)
		if v3.Wait <= 0 || v3.Reason != guard.ReasonEndpointBusy || !v3.Parked {
			t.Fatalf("d3 with both slots taken: %+v, want parked as endpoint_busy", v3)
		}
		v4 := enter(t, g, d4)
		if v4.Wait < v3.Wait {
			t.Errorf("d4, behind d3, waits %s, less than d3's %s", v4.Wait, v3.Wait)
		}
		// Asking again keeps a waiter's place.
		enter(t, g, d3)

		ws := leave(t, g, d1, guard.Outcome{Sent: true, OK: true, Finished: true})
		want := guard.Waiter{AppID: b.app, EndpointID: "ep_a", DeliveryID: "d3", Queue: "deliveries"}
		if len(ws) != 1 || ws[0] != want {
			t.Fatalf("leave woke %+v, want %+v (first in the room) alone", ws, want)
		}
		// The woken waiter's slot is held: a newcomer waits, d3 enters.
		if v := enter(t, g, ticket(b, "ep_a", "d5")); v.Wait == 0 {
			t.Error("a newcomer took the slot held for the woken waiter")
		}
		if v := enter(t, g, d3); v.Wait != 0 {
			t.Errorf("woken d3 postponed again: %+v", v)
		}
		if ws := leave(t, g, d2, guard.Outcome{Sent: true, OK: true, Finished: true}); len(ws) != 1 || ws[0].DeliveryID != "d4" {
			t.Errorf("second leave woke %v, want d4", ids(ws))
		}
	})

	t.Run("NoRoomLeavesNoWaiter", func(t *testing.T) {
		t.Parallel()
		g, b := setup(t, guard.Config{PerEndpoint: 1})
		d1 := ticket(b, "ep", "d1")
		enter(t, g, d1)
		first := ticket(b, "ep", "first")
		first.NoRoom = true
		if v := enter(t, g, first); v.Wait == 0 || v.Parked {
			t.Fatalf("a first attempt with the slot taken: %+v, want refused and not parked", v)
		}
		if ws := leave(t, g, d1, guard.Outcome{Sent: true, OK: true}); len(ws) != 0 {
			t.Errorf("leave woke %v: a first attempt left a waiter", ids(ws))
		}
	})

	t.Run("AppBusyWakesAnotherEndpoint", func(t *testing.T) {
		t.Parallel()
		g, b := setup(t, guard.Config{PerEndpoint: 5, PerApp: 2})
		a1, a2 := ticket(b, "ep_slow", "a1"), ticket(b, "ep_slow", "a2")
		enter(t, g, a1)
		enter(t, g, a2)
		v := enter(t, g, ticket(b, "ep_quiet", "q1"))
		if v.Reason != guard.ReasonAppBusy || !v.Parked {
			t.Fatalf("with the app's slots taken: %+v, want parked as app_busy", v)
		}
		// ep_slow's room is empty: its leave wakes the other endpoint's
		// waiter.
		if ws := leave(t, g, a1, guard.Outcome{Sent: true, OK: false}); len(ws) != 1 || ws[0].DeliveryID != "q1" || ws[0].EndpointID != "ep_quiet" {
			t.Fatalf("leave woke %+v, want q1 of ep_quiet", ws)
		}
		if v := enter(t, g, ticket(b, "ep_quiet", "q1")); v.Wait != 0 {
			t.Errorf("woken q1 postponed: %+v", v)
		}
	})

	t.Run("OtherAppsUnaffected", func(t *testing.T) {
		t.Parallel()
		g, noisy := setup(t, guard.Config{PerEndpoint: 10, PerApp: 3})
		quiet := &testBundle{rdb: noisy.rdb, app: noisy.app + "_quiet"}
		t.Cleanup(func() {
			noisy.rdb.Del(context.Background(), "hookd:{"+quiet.app+"}:slots", "hookd:{"+quiet.app+"}:slots:ep")
		})
		for i := range 10 {
			enter(t, g, ticket(noisy, "ep_"+string(rune('a'+i)), "n"+string(rune('a'+i))))
		}
		if v := enter(t, g, ticket(quiet, "ep", "q")); v.Wait != 0 {
			t.Errorf("another app's delivery postponed by a busy app: %+v", v)
		}
	})

	t.Run("ForgoPassesSlotsOn", func(t *testing.T) {
		t.Parallel()
		g, b := setup(t, guard.Config{PerEndpoint: 1, PerApp: 10})
		d1 := ticket(b, "ep", "d1")
		enter(t, g, d1)
		enter(t, g, ticket(b, "ep", "gone"))
		enter(t, g, ticket(b, "ep", "d3"))
		ws := leave(t, g, d1, guard.Outcome{Sent: true, OK: true, Finished: true})
		if len(ws) != 1 || ws[0].DeliveryID != "gone" {
			t.Fatalf("leave woke %v, want the first waiter", ids(ws))
		}
		next, err := g.Forgo(t.Context(), ws[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(next) != 1 || next[0].DeliveryID != "d3" {
			t.Errorf("forgo woke %v, want d3", ids(next))
		}
	})

	t.Run("CircuitOpensAndProbes", func(t *testing.T) {
		t.Parallel()
		g, b := setup(t, guard.Config{Threshold: 2, Cooldown: 300 * time.Millisecond})
		for _, id := range []string{"f1", "f2"} {
			tk := ticket(b, "ep", id)
			enter(t, g, tk)
			leave(t, g, tk, guard.Outcome{Sent: true})
		}
		v := enter(t, g, ticket(b, "ep", "d"))
		if v.Reason != guard.ReasonCircuitOpen || v.Wait <= 0 || v.Wait > 300*time.Millisecond {
			t.Fatalf("after 2 failures: %+v, want circuit_open for at most the cooldown", v)
		}
		time.Sleep(v.Wait + 20*time.Millisecond)
		probe := enter(t, g, ticket(b, "ep", "p"))
		if probe.Wait != 0 || !probe.Probe {
			t.Fatalf("after the cooldown: %+v, want the probe admitted", probe)
		}
		if v := enter(t, g, ticket(b, "ep", "other")); v.Reason != guard.ReasonCircuitOpen {
			t.Errorf("a second delivery while the probe is out: %+v, want circuit_open", v)
		}
		leave(t, g, ticket(b, "ep", "p"), guard.Outcome{Sent: true, OK: true, Finished: true})
		if v := enter(t, g, ticket(b, "ep", "after")); v.Wait != 0 {
			t.Errorf("after a good probe: %+v, want admitted", v)
		}
	})

	// A process is a gate on a Redis connection of its own: closing the
	// connection kills it as far as Redis can tell (no more renewals).
	process := func(t *testing.T, cfg guard.Config) (*guard.Gate, *redis.Client) {
		t.Helper()
		rdb := limiterRedis(t)
		return guard.New(rdb, cfg), rdb
	}
	// leased: slots lapse a second after their last renewal, long before
	// the 20 s a live delivery may hold them; one slot per endpoint and
	// per app.
	const lease = time.Second
	leased := guard.Config{PerEndpoint: 1, PerApp: 1, SlotLease: lease, SlotTTL: 20 * time.Second}
	held := func(t *testing.T, b *testBundle, holder string) bool {
		t.Helper()
		for _, k := range []string{"hookd:{" + b.app + "}:slots:ep_a", "hookd:{" + b.app + "}:slots"} {
			if err := b.rdb.ZScore(t.Context(), k, holder).Err(); err == nil {
				return true
			}
		}
		return false
	}

	t.Run("DeadHoldersSlotsLapseWithinALease", func(t *testing.T) {
		t.Parallel()
		other, b := setup(t, leased)
		dead, conn := process(t, leased)
		if v := enter(t, dead, ticket(b, "ep_a", "d1")); v.Wait != 0 {
			t.Fatalf("d1 postponed with every slot free: %+v", v)
		}
		// Its process dies mid-delivery: nothing renews d1's slots, and
		// nothing gives them back.
		died := time.Now()
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		d2 := ticket(b, "ep_a", "d2")
		d2.NoRoom = true
		if v := enter(t, other, d2); v.Wait == 0 {
			t.Fatal("d2 admitted at once: d1's slots were free while its process lived")
		}
		for enter(t, other, d2).Wait != 0 {
			if time.Since(died) > 3*lease {
				t.Fatalf("the dead holder's slots still taken %s after it died (lease %s)", time.Since(died).Round(time.Millisecond), lease)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("the dead holder's slots came back %s after it died", time.Since(died).Round(time.Millisecond))
		if held(t, b, "d1") {
			t.Error("d1 still holds a slot once d2 was admitted")
		}
	})

	t.Run("LiveHoldersSlotsLastPastTheLease", func(t *testing.T) {
		t.Parallel()
		other, b := setup(t, leased)
		live, _ := process(t, leased)
		d1 := ticket(b, "ep_a", "d1")
		if v := enter(t, live, d1); v.Wait != 0 {
			t.Fatalf("d1 postponed with every slot free: %+v", v)
		}
		// d1's POST hangs for 3 leases: another process must find its
		// endpoint and its app busy all along.
		d2, d3 := ticket(b, "ep_a", "d2"), ticket(b, "ep_b", "d3")
		d2.NoRoom, d3.NoRoom = true, true
		for start := time.Now(); time.Since(start) < 3*lease; time.Sleep(20 * time.Millisecond) {
			if v := enter(t, other, d2); v.Wait == 0 || v.Reason != guard.ReasonEndpointBusy {
				t.Fatalf("d2 %s after d1 was admitted: %+v, want endpoint_busy while d1 runs", time.Since(start).Round(time.Millisecond), v)
			}
			if v := enter(t, other, d3); v.Wait == 0 || v.Reason != guard.ReasonAppBusy {
				t.Fatalf("d3 %s after d1 was admitted: %+v, want app_busy while d1 runs", time.Since(start).Round(time.Millisecond), v)
			}
		}
		leave(t, live, d1, guard.Outcome{Sent: true, OK: true, Finished: true})
		// No renewal under way may bring d1's slots back.
		time.Sleep(lease / 2)
		if held(t, b, "d1") {
			t.Fatal("d1 holds a slot after its leave")
		}
		if v := enter(t, other, d2); v.Wait != 0 {
			t.Errorf("d2 after d1 left: %+v, want admitted", v)
		}
	})

	t.Run("LeaveWakesForLapsedSlots", func(t *testing.T) {
		t.Parallel()
		cfg := guard.Config{PerEndpoint: 5, PerApp: 3, SlotLease: lease, SlotTTL: 20 * time.Second}
		live, b := setup(t, cfg)
		dead, conn := process(t, cfg)
		for _, id := range []string{"x1", "x2"} {
			if v := enter(t, dead, ticket(b, "ep_a", id)); v.Wait != 0 {
				t.Fatalf("%s postponed with slots free: %+v", id, v)
			}
		}
		d := ticket(b, "ep_b", "d")
		if v := enter(t, live, d); v.Wait != 0 {
			t.Fatalf("d postponed with a slot free: %+v", v)
		}
		for _, id := range []string{"w1", "w2", "w3", "w4"} {
			if v := enter(t, live, ticket(b, "ep_a", id)); v.Reason != guard.ReasonAppBusy || !v.Parked {
				t.Fatalf("%s with the app's slots taken: %+v, want parked as app_busy", id, v)
			}
		}
		// x1 and x2's process dies: their slots lapse, and wake nobody.
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(lease + lease/2)
		// d's leave wakes a waiter in its stead, and one for each lapsed
		// slot, first come first.
		if ws := leave(t, live, d, guard.Outcome{Sent: true, OK: true, Finished: true}); !slices.Equal(ids(ws), []string{"w1", "w2", "w3"}) {
			t.Fatalf("leave woke %v, want w1, w2 and w3: the app's 3 free slots", ids(ws))
		}
		if v := enter(t, live, ticket(b, "ep_c", "late")); v.Wait == 0 {
			t.Error("a newcomer took a slot held for a woken waiter")
		}
	})

	t.Run("RouteOverflowsFloods", func(t *testing.T) {
		t.Parallel()
		g, b := setup(t, guard.Config{PerEndpoint: 2, Backlog: 10})
		over, err := g.Route(t.Context(), map[string]map[string]int{b.app: {"ep_flood": 8, "ep_quiet": 1, "ep_busy": 3}})
		if err != nil {
			t.Fatal(err)
		}
		// The app has 12 > 10: its endpoints with more than 2 overflow.
		want := map[string]bool{"ep_flood": true, "ep_busy": true}
		if len(over) != len(want) || !over["ep_flood"] || !over["ep_busy"] {
			t.Errorf("overflowing %v, want %v", over, want)
		}
		if err := g.Finished(t.Context(), b.app, "ep_flood"); err != nil {
			t.Fatal(err)
		}
		n, _ := b.rdb.Get(t.Context(), "hookd:{"+b.app+"}:backlog").Int()
		if n != 11 {
			t.Errorf("app backlog %d after one finished, want 11", n)
		}
	})
}
