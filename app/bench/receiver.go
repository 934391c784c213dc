package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// receiver is the webhook endpoint of every scenario: it answers at once,
// and records each delivery's commit-to-receipt latency from the event's
// timestamp in the body (the outbox row's created_at).
type receiver struct {
	srv  *http.Server
	base string

	mu    sync.Mutex
	round *round
}

// round is what the receiver records for one scenario: its endpoints
// (named by path) and what reached them.
type round struct {
	endpoints map[string]bool // name -> failing
	seen      map[string]struct{}
	latencies []time.Duration
	first     time.Time
	last      time.Time
	dups      int
	failed    int // requests answered 500 by failing endpoints
	changed   chan struct{}
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	r := &receiver{base: "http://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ep/{name}", r.handle)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *receiver) Close() { _ = r.srv.Close() }

// url returns the URL of endpoint name.
func (r *receiver) url(name string) string { return r.base + "/ep/" + name }

// begin starts a round for the given endpoints.
func (r *receiver) begin(endpoints map[string]bool, expected int) *round {
	rd := &round{
		endpoints: endpoints,
		seen:      make(map[string]struct{}, expected),
		latencies: make([]time.Duration, 0, expected),
		changed:   make(chan struct{}, 1),
	}
	r.mu.Lock()
	r.round = rd
	r.mu.Unlock()
	return rd
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	now := time.Now()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	name := req.PathValue("name")
	r.mu.Lock()
	rd := r.round
	failing, ok := false, false
	if rd != nil {
		failing, ok = rd.endpoints[name]
	}
	if !ok || failing {
		// A failing endpoint, or a late retry for an earlier round.
		if ok {
			rd.failed++
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	key := name + " " + req.Header.Get("webhook-id")
	if _, dup := rd.seen[key]; dup {
		rd.dups++
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rd.seen[key] = struct{}{}
	r.mu.Unlock()

	var wh struct {
		Timestamp time.Time `json:"timestamp"`
	}
	lat := time.Duration(-1)
	if json.Unmarshal(body, &wh) == nil && !wh.Timestamp.IsZero() {
		lat = now.Sub(wh.Timestamp)
	}
	r.mu.Lock()
	if lat >= 0 {
		rd.latencies = append(rd.latencies, lat)
	}
	if rd.first.IsZero() {
		rd.first = now
	}
	rd.last = now
	r.mu.Unlock()
	select {
	case rd.changed <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

// received returns how many distinct deliveries the round has had.
func (r *receiver) received(rd *round) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(rd.seen)
}

// wait waits until the round has had want distinct deliveries, or until
// nothing new arrived for idle.
func (r *receiver) wait(rd *round, want int, idle time.Duration) bool {
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		if r.received(rd) >= want {
			return true
		}
		select {
		case <-rd.changed:
			t.Reset(idle)
		case <-t.C:
			return r.received(rd) >= want
		}
	}
}

// Latency summarises commit-to-receipt latencies, in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// summary returns the round's counts and latency percentiles.
func (r *receiver) summary(rd *round) (delivered, dups, failed int, first, last time.Time, lat Latency) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ls := slices.Clone(rd.latencies)
	slices.Sort(ls)
	at := func(q float64) float64 {
		if len(ls) == 0 {
			return 0
		}
		i := min(int(q*float64(len(ls))), len(ls)-1)
		return float64(ls[i].Microseconds()) / 1000
	}
	lat = Latency{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: at(1)}
	return len(rd.seen), rd.dups, rd.failed, rd.first, rd.last, lat
}
