package main_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fifoReceiver is a FIFO endpoint's receiver: it fails a share of the
// requests, records the order of each event's first successful receipt,
// and counts requests that overlapped (a FIFO endpoint gets one at a
// time).
type fifoReceiver struct {
	*httptest.Server
	failShare float64

	mu       sync.Mutex
	inFlight int
	overlaps int
	requests int
	order    []string        // webhook-ids, by first successful receipt
	seen     map[string]bool // webhook-ids received successfully
	last     time.Time       // the last request
	gaps     []string        // pauses of over 5s between requests
}

func newFIFOReceiver(t *testing.T, failShare float64) *fifoReceiver {
	r := &fifoReceiver{failShare: failShare, seen: map[string]bool{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.inFlight++
		r.requests++
		if now := time.Now(); !r.last.IsZero() && now.Sub(r.last) > 5*time.Second {
			r.gaps = append(r.gaps, fmt.Sprintf("%.1fs after request %d", now.Sub(r.last).Seconds(), r.requests-1))
		}
		r.last = time.Now()
		if r.inFlight > 1 {
			r.overlaps++
		}
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			r.inFlight--
			r.mu.Unlock()
		}()
		time.Sleep(time.Millisecond) // a request under way, for an overlap to show
		if rand.Float64() < r.failShare {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		id := req.Header.Get("webhook-id")
		r.mu.Lock()
		if !r.seen[id] {
			r.seen[id] = true
			r.order = append(r.order, id)
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

// published is an event the api acknowledged, and when its request went
// out and its answer came back: an event answered before another's
// request went out was committed before that one was written.
type published struct {
	id         string
	sent, done time.Time
}

// TestFIFOEndpoint sends 1,000 events to a FIFO endpoint whose receiver
// fails 20% of requests, while both workers are killed by SIGKILL twice
// (after a third and two thirds of the events) and come back. The
// receiver must get every event, one request at a time, each event's
// first successful receipt in commit order: an event whose publication
// was answered before another's was sent must arrive first. Events are
// published concurrently, so overlapping publications (whose commit
// order no one can know) are allowed in either order.
func TestFIFOEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hookd processes against Postgres and a private Redis")
	}
	bin := build(t)
	recv := newFIFOReceiver(t, 0.2)
	// Retries come quickly: a FIFO endpoint's queue waits out each of its
	// head's pauses, and the test is about order, not patience.
	retries := "HOOKD_RETRY_SCHEDULE=10ms,20ms,50ms" + strings.Repeat(",100ms", 10)
	c := startChaos(t, bin, newChaosReceiver(t, 0, 0), chaosOpts{env: []string{retries}, endpoints: func(c *chaosRun) {
		var ep struct{ ID, Ordering string }
		body := fmt.Sprintf(`{"url":"%s/fifo","event_types":["order.paid"],"ordering":"fifo"}`, recv.URL)
		if err := c.post("/v1/apps/"+c.appID+"/endpoints", body, &ep); err != nil {
			c.t.Fatal(err)
		}
		if ep.Ordering != "fifo" {
			c.t.Fatalf("endpoint ordering %q, want fifo", ep.Ordering)
		}
	}})

	const events, rate = 1000, 100
	var (
		mu  sync.Mutex
		pub []published
		wg  sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / rate)
	for i := range events {
		<-tick.C
		if i == events/3 || i == 2*events/3 {
			c.kill("worker1")
			c.kill("worker2")
			c.start("worker1")
			c.start("worker2")
		}
		wg.Go(func() {
			var ev struct{ ID string }
			sent := time.Now()
			err := c.post("/v1/apps/"+c.appID+"/events", fmt.Sprintf(`{"type":"order.paid","payload":{"n":%d}}`, i), &ev)
			done := time.Now()
			if err != nil {
				t.Errorf("event %d not committed: %v", i, err)
				return
			}
			mu.Lock()
			pub = append(pub, published{ev.ID, sent, done})
			mu.Unlock()
		})
	}
	tick.Stop()
	wg.Wait()

	// asynq hands a dead worker's pump to another once its lease has
	// expired (30s) and its recoverer has passed (every minute).
	start := time.Now()
	deadline := start.Add(4 * time.Minute)
	for {
		recv.mu.Lock()
		n := len(recv.order)
		recv.mu.Unlock()
		if n >= len(pub) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	recv.mu.Lock()
	order, overlaps, requests := append([]string(nil), recv.order...), recv.overlaps, recv.requests
	t.Logf("pauses: %v", recv.gaps)
	recv.mu.Unlock()
	t.Logf("%d events published, %d received (%d requests, %d failed on purpose or cut by a kill), settled %.1fs after the last event",
		len(pub), len(order), requests, requests-len(order), time.Since(start).Seconds())

	pos := make(map[string]int, len(order))
	for i, id := range order {
		pos[id] = i
	}
	missing := 0
	for _, p := range pub {
		if _, ok := pos[p.id]; !ok {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d events never received; %s", missing, c.diagnose())
	}
	if len(order) > len(pub) {
		t.Errorf("%d events received that were never published", len(order)-len(pub))
	}
	if overlaps > 0 {
		t.Errorf("%d requests overlapped another: a FIFO endpoint gets one at a time", overlaps)
	}
	inversions, pairs := 0, 0
	for _, a := range pub {
		for _, b := range pub {
			if !a.done.Before(b.sent) {
				continue
			}
			pa, okA := pos[a.id]
			pb, okB := pos[b.id]
			if !okA || !okB {
				continue
			}
			pairs++
			if pa > pb {
				inversions++
				if inversions <= 5 {
					t.Errorf("event %s (answered %s) arrived after %s (sent %s)", a.id, a.done.Format(time.StampMicro), b.id, b.sent.Format(time.StampMicro))
				}
			}
		}
	}
	t.Logf("%d ordered pairs checked, %d inversions", pairs, inversions)
	if inversions > 0 {
		t.Errorf("%d pairs of events arrived out of commit order", inversions)
	}
	c.finish()

}
