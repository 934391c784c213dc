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

// reply is how one of the receiver's endpoints answers.
type reply int

const (
	// replyOK answers 204 at once.
	replyOK reply = iota
	// replyFail answers 500 at once.
	replyFail
	// replyHang holds the request open past hookd's delivery timeout, then
	// closes the connection without an answer.
	replyHang
	// replySlow answers 204 after slowReplyDefault.
	replySlow
)

// slowReplyDefault is how long a slow endpoint takes to answer.
const slowReplyDefault = 10 * time.Millisecond

// hangMarginDefault is how much longer than hookd's delivery timeout a
// hanging endpoint holds a request, so that hookd always gives up first.
const hangMarginDefault = 2 * time.Second

// receiver is the webhook endpoint of every scenario: it answers at once
// (or fails, or hangs, as the scenario's endpoint is meant to), and records
// each delivery's commit-to-receipt latency from the event's timestamp in
// the body (the outbox row's created_at).
type receiver struct {
	srv  *http.Server
	base string
	// hold bounds how long a hanging endpoint holds a request.
	hold time.Duration
	// closing releases every hanging request when the receiver closes.
	closing   chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	round *round
}

// round is what the receiver records for one scenario, or one phase of
// it: its endpoints (named by path) and what reached them.
type round struct {
	endpoints map[string]reply
	// release ends the hold of the round's hanging requests (shared by the
	// rounds a scenario continues with).
	release     chan struct{}
	releaseOnce *sync.Once
	seen        map[string]struct{}
	latencies   []time.Duration
	first       time.Time
	last        time.Time
	dups        int
	failed      int // requests answered 500 by failing endpoints
	hung        int // requests held by hanging endpoints
	changed     chan struct{}
}

// startReceiver listens on loopback; hanging endpoints hold a request for
// at most hold.
func startReceiver(hold time.Duration) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	r := &receiver{base: "http://" + ln.Addr().String(), hold: hold, closing: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ep/{name}", r.handle)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

// Close stops the receiver and lets go of every hanging request.
func (r *receiver) Close() {
	r.closeOnce.Do(func() { close(r.closing) })
	_ = r.srv.Close()
}

// url returns the URL of endpoint name.
func (r *receiver) url(name string) string { return r.base + "/ep/" + name }

// begin starts a round for the given endpoints.
func (r *receiver) begin(endpoints map[string]reply, expected int) *round {
	return r.start(&round{endpoints: endpoints, release: make(chan struct{}), releaseOnce: &sync.Once{}}, expected)
}

// next starts a round that continues rd: the same endpoints, whose
// requests still hanging from rd stay held until rd's release.
func (r *receiver) next(rd *round, expected int) *round {
	return r.start(&round{endpoints: rd.endpoints, release: rd.release, releaseOnce: rd.releaseOnce}, expected)
}

func (r *receiver) start(rd *round, expected int) *round {
	rd.seen = make(map[string]struct{}, expected)
	rd.latencies = make([]time.Duration, 0, expected)
	rd.changed = make(chan struct{}, 1)
	r.mu.Lock()
	r.round = rd
	r.mu.Unlock()
	return rd
}

// release lets go of the hanging requests of rd (and of the rounds it
// continues or that continue it): they, and any later request to its
// hanging endpoints, are closed at once.
func (r *receiver) release(rd *round) {
	rd.releaseOnce.Do(func() { close(rd.release) })
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
	kind, ok := replyFail, false
	if rd != nil {
		kind, ok = rd.endpoints[name]
	}
	switch {
	case ok && kind == replyHang:
		rd.hung++
		r.mu.Unlock()
		r.hang(w, req, rd.release)
		return
	case !ok || kind == replyFail:
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
	if kind == replySlow {
		time.Sleep(slowReplyDefault)
	}
	w.WriteHeader(http.StatusNoContent)
}

// hang holds a request until hookd gives up on it, the hold elapses, the
// round is released or the receiver closes, then closes the connection
// without answering.
func (r *receiver) hang(w http.ResponseWriter, req *http.Request, release <-chan struct{}) {
	t := time.NewTimer(r.hold)
	defer t.Stop()
	select {
	case <-req.Context().Done():
	case <-t.C:
	case <-release:
	case <-r.closing:
	}
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
	}
}

// received returns how many distinct deliveries the round has had.
func (r *receiver) received(rd *round) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(rd.seen)
}

// hung returns how many requests the round's hanging endpoints held.
func (r *receiver) hung(rd *round) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return rd.hung
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
