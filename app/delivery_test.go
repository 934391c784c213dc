package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// The delivery tests drive the delivery engine through a running hookd:
// endpoints that answer 410, ask to be called later, trickle or flood their
// responses, resolve to loopback or keep failing. Their helpers carry a dlv
// prefix so that they cannot clash with other tests of the package.

type dlvAttempt struct {
	AttemptedAt  time.Time `json:"attempted_at"`
	DurationMS   float64   `json:"duration_ms"`
	StatusCode   *int      `json:"status_code"`
	ResponseBody *string   `json:"response_body"`
	Error        *string   `json:"error"`
	ErrorClass   string    `json:"error_class"`
}

type dlvDelivery struct {
	ID             string       `json:"id"`
	EndpointID     string       `json:"endpoint_id"`
	Status         string       `json:"status"`
	AttemptCount   int          `json:"attempt_count"`
	LastStatusCode *int         `json:"last_status_code"`
	LastError      *string      `json:"last_error"`
	CreatedAt      time.Time    `json:"created_at"`
	SucceededAt    *time.Time   `json:"succeeded_at"`
	FailedAt       *time.Time   `json:"failed_at"`
	Attempts       []dlvAttempt `json:"attempts"`
}

type dlvEndpoint struct {
	ID             string     `json:"id"`
	URL            string     `json:"url"`
	Disabled       bool       `json:"disabled"`
	DisabledReason *string    `json:"disabled_reason"`
	DisabledAt     *time.Time `json:"disabled_at"`
	FailingSince   *time.Time `json:"failing_since"`
}

// dlvDo sends body (raw JSON; "" for none) with the admin key and returns
// the status and the raw response body.
func dlvDo(h *harness, method, path, body string) (int, []byte) {
	h.t.Helper()
	code, b, _ := resDo(h, method, path, body)
	return code, b
}

// dlvMust sends body and fails unless hookd answers want; it decodes the
// response into out when out is not nil.
func dlvMust(h *harness, method, path, body string, want int, out any) {
	h.t.Helper()
	code, b := dlvDo(h, method, path, body)
	if code != want {
		h.t.Fatalf("%s %s = %d %s, want %d", method, path, code, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// dlvApp creates an application and returns its ID.
func dlvApp(h *harness) string {
	h.t.Helper()
	return h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
}

// dlvAddEndpoint creates an endpoint of appID for url, subscribed to types
// (all types when none), and returns its ID.
func dlvAddEndpoint(h *harness, appID, url string, types ...string) string {
	h.t.Helper()
	body := map[string]any{"url": url}
	if len(types) > 0 {
		body["event_types"] = types
	}
	return h.mustCreate("/v1/apps/"+appID+"/endpoints", body).ID
}

// dlvPublish publishes an event of type typ to appID and returns its ID.
func dlvPublish(h *harness, appID, typ string) string {
	h.t.Helper()
	var ev struct {
		ID string `json:"id"`
	}
	dlvMust(h, http.MethodPost, "/v1/apps/"+appID+"/events", `{"type":"`+typ+`","payload":{"n":1}}`, http.StatusCreated, &ev)
	return ev.ID
}

// dlvDeliveryID waits for the fan-out to create the delivery of eventID to
// endpointID and returns its ID.
func dlvDeliveryID(h *harness, eventID, endpointID string) string {
	h.t.Helper()
	var id string
	waitFor(h.t, "the delivery of "+eventID+" to "+endpointID, func() bool {
		var ids []string
		err := h.db.NewRaw(`SELECT id FROM deliveries WHERE event_id = ? AND endpoint_id = ?`, eventID, endpointID).
			Scan(h.t.Context(), &ids)
		if err != nil {
			h.t.Fatal(err)
		}
		if len(ids) == 1 {
			id = ids[0]
		}
		return id != ""
	})
	return id
}

// dlvGet reads delivery id of appID, with its attempts.
func dlvGet(h *harness, appID, id string) dlvDelivery {
	h.t.Helper()
	var d dlvDelivery
	dlvMust(h, http.MethodGet, "/v1/apps/"+appID+"/deliveries/"+id, "", http.StatusOK, &d)
	return d
}

// dlvWaitStatus waits until delivery id of appID has status and returns it.
func dlvWaitStatus(h *harness, appID, id, status string) dlvDelivery {
	h.t.Helper()
	var d dlvDelivery
	waitFor(h.t, "delivery "+id+" to be "+status, func() bool {
		d = dlvGet(h, appID, id)
		return d.Status == status
	})
	return d
}

// dlvGetEndpoint reads endpoint id of appID.
func dlvGetEndpoint(h *harness, appID, id string) dlvEndpoint {
	h.t.Helper()
	var ep dlvEndpoint
	dlvMust(h, http.MethodGet, "/v1/apps/"+appID+"/endpoints/"+id, "", http.StatusOK, &ep)
	return ep
}

// dlvServer is a webhook receiver that records each request: when it
// arrived, when its handler returned and how many requests were in flight
// when it arrived, itself included.
type dlvServer struct {
	*httptest.Server
	stop chan struct{}

	mu       sync.Mutex
	reqs     []dlvRequest
	inflight int
}

type dlvRequest struct {
	at, end    time.Time
	concurrent int
}

// dlvServe starts a receiver; handle answers the n-th request (from 0),
// whose body has been read. The request's context ends when hookd hangs up
// or the test is over, and handle must then return.
func dlvServe(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) *dlvServer {
	t.Helper()
	s := &dlvServer{stop: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body to its end also lets the server notice the
		// client hanging up, which cancels r.Context().
		_, _ = io.Copy(io.Discard, r.Body)
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		s.mu.Lock()
		n := len(s.reqs)
		s.inflight++
		s.reqs = append(s.reqs, dlvRequest{at: time.Now(), concurrent: s.inflight})
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inflight--
			s.reqs[n].end = time.Now()
			s.mu.Unlock()
		}()
		handle(n, w, r.WithContext(ctx))
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.stop) }) // runs first: releases the handlers
	return s
}

// dlvStatus returns a handler answering code to every request.
func dlvStatus(code int) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// requests returns the requests so far.
func (s *dlvServer) requests() []dlvRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// count returns how many requests arrived so far.
func (s *dlvServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// dlvPause waits for d, or less if the request's context ends first.
func dlvPause(r *http.Request, d time.Duration) {
	select {
	case <-time.After(d):
	case <-r.Context().Done():
	}
}

// TestGoneDisablesEndpoint: a 410 Gone ends the delivery at its first
// attempt and disables the endpoint, which then gets no new deliveries.
func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	gone := dlvServe(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusGone)
		_, _ = io.WriteString(w, "this hook was removed")
	})
	healthy := dlvServe(t, dlvStatus(http.StatusNoContent))
	appID := dlvApp(h)
	epGone := dlvAddEndpoint(h, appID, gone.URL)
	dlvAddEndpoint(h, appID, healthy.URL)

	ev1 := dlvPublish(h, appID, "order.created")
	d := dlvWaitStatus(h, appID, dlvDeliveryID(h, ev1, epGone), "failed")
	if d.AttemptCount != 1 || len(d.Attempts) != 1 || d.FailedAt == nil || d.LastStatusCode == nil || *d.LastStatusCode != http.StatusGone {
		t.Errorf("delivery to the gone endpoint = %+v, want failed after one 410", d)
	}
	if len(d.Attempts) > 0 {
		if a := d.Attempts[0]; a.StatusCode == nil || *a.StatusCode != http.StatusGone || a.ErrorClass != "http_4xx" ||
			a.ResponseBody == nil || *a.ResponseBody != "this hook was removed" {
			t.Errorf("attempt = %+v, want a 410 with its body, classified http_4xx", a)
		}
	}
	ep := dlvGetEndpoint(h, appID, epGone)
	if !ep.Disabled || ep.DisabledReason == nil || !strings.Contains(*ep.DisabledReason, "410") || ep.DisabledAt == nil {
		t.Errorf("gone endpoint = %+v, want disabled with a reason naming the 410", ep)
	}

	// A later event reaches the other endpoint only.
	ev2 := dlvPublish(h, appID, "order.created")
	waitFor(t, "the healthy endpoint to receive the second event", func() bool { return healthy.count() == 2 })
	if n := h.count(`SELECT count(*) FROM deliveries WHERE event_id = ? AND endpoint_id = ?`, ev2, epGone); n != 0 {
		t.Errorf("the disabled endpoint got %d deliveries of a later event", n)
	}
	if n := gone.count(); n != 1 {
		t.Errorf("the gone endpoint got %d requests, want 1 (no retry)", n)
	}
}

// TestRetryAfterHonoured: a 429 or 503 with Retry-After is retried no
// sooner than asked, even though the schedule says 10ms, and no later than
// HOOKD_MAX_RETRY_AFTER.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		env        map[string]string
		status     int
		retryAfter func() string
		// The gap between the two attempts' starts. The upper bound only
		// tells a Retry-After honoured from one ignored (3600) and leaves
		// a loaded machine room.
		minGap, maxGap time.Duration
	}{
		{"Seconds", nil, http.StatusTooManyRequests, func() string { return "1" }, time.Second, 6 * time.Second},
		{"HTTPDate", nil, http.StatusServiceUnavailable, func() string {
			// One-second resolution: the date is 1 to 2 seconds ahead.
			return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)
		}, time.Second, 6 * time.Second},
		{"Capped", map[string]string{"HOOKD_MAX_RETRY_AFTER": "1s"}, http.StatusTooManyRequests,
			func() string { return "3600" }, time.Second, 6 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, tc.env)
			recv := dlvServe(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 0 {
					w.Header().Set("Retry-After", tc.retryAfter())
					w.WriteHeader(tc.status)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			appID := dlvApp(h)
			epID := dlvAddEndpoint(h, appID, recv.URL)
			ev := dlvPublish(h, appID, "order.created")
			d := dlvWaitStatus(h, appID, dlvDeliveryID(h, ev, epID), "succeeded")
			if d.AttemptCount != 2 || len(d.Attempts) != 2 {
				t.Fatalf("delivery = %+v, want succeeded at the second attempt", d)
			}
			first, second := d.Attempts[0], d.Attempts[1]
			if first.StatusCode == nil || *first.StatusCode != tc.status || first.ErrorClass == "success" {
				t.Errorf("first attempt = %+v, want a failed %d", first, tc.status)
			}
			if gap := second.AttemptedAt.Sub(first.AttemptedAt); gap < tc.minGap || gap > tc.maxGap {
				t.Errorf("retried %s after the first attempt, want between %s and %s", gap, tc.minGap, tc.maxGap)
			}
		})
	}
}

// TestSlowLorisCutAtTimeout: an attempt ends at HOOKD_DELIVERY_TIMEOUT
// whether the receiver trickles its body or never answers, and other
// deliveries go on meanwhile.
func TestSlowLorisCutAtTimeout(t *testing.T) {
	t.Parallel()
	// 3s leaves the fast delivery time to go out during the trickle on a
	// loaded CI machine.
	h := start(t, map[string]string{"HOOKD_DELIVERY_TIMEOUT": "3s"})
	var trickling atomic.Int32
	slow := dlvServe(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		trickling.Add(1)
		defer trickling.Add(-1)
		w.WriteHeader(http.StatusOK)
		for r.Context().Err() == nil {
			if _, err := io.WriteString(w, "x"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			dlvPause(r, 100*time.Millisecond)
		}
	})
	mute := dlvServe(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			<-r.Context().Done() // not even a header
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	var duringTrickle atomic.Bool
	fast := dlvServe(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		duringTrickle.Store(trickling.Load() > 0)
		w.WriteHeader(http.StatusNoContent)
	})
	appID := dlvApp(h)
	epSlow := dlvAddEndpoint(h, appID, slow.URL, "slow.loris")
	epMute := dlvAddEndpoint(h, appID, mute.URL, "mute.receiver")
	epFast := dlvAddEndpoint(h, appID, fast.URL, "fast.lane")

	evSlow := dlvPublish(h, appID, "slow.loris")
	evMute := dlvPublish(h, appID, "mute.receiver")
	waitFor(t, "the slow receiver to start trickling", func() bool { return trickling.Load() > 0 })
	evFast := dlvPublish(h, appID, "fast.lane")
	dlvWaitStatus(h, appID, dlvDeliveryID(h, evFast, epFast), "succeeded")
	if !duringTrickle.Load() {
		t.Errorf("the fast endpoint got its delivery only after the trickling attempt ended")
	}

	// The trickle is cut at the timeout; the 200 still counts, and the
	// attempt says why the body is short.
	d := dlvWaitStatus(h, appID, dlvDeliveryID(h, evSlow, epSlow), "succeeded")
	if d.AttemptCount != 1 || len(d.Attempts) != 1 {
		t.Fatalf("trickled delivery = %+v, want one attempt", d)
	}
	a := d.Attempts[0]
	if a.StatusCode == nil || *a.StatusCode != http.StatusOK || a.ErrorClass != "success" ||
		a.Error == nil || !strings.Contains(*a.Error, "reading the response body") {
		t.Errorf("trickled attempt = %+v, want a 200 classified success, with an error about the body", a)
	}
	if a.DurationMS < 2900 || a.DurationMS > 4500 {
		t.Errorf("trickled attempt took %.0fms, want about the 3s timeout", a.DurationMS)
	}
	if a.ResponseBody == nil || *a.ResponseBody == "" || len(*a.ResponseBody) > 40 || strings.Trim(*a.ResponseBody, "x") != "" {
		t.Errorf("trickled attempt recorded body %v, want the few bytes sent before the timeout", a.ResponseBody)
	}
	waitFor(t, "hookd to hang up on the trickling receiver", func() bool { return trickling.Load() == 0 })

	// A receiver that never answers times out and is retried.
	d = dlvWaitStatus(h, appID, dlvDeliveryID(h, evMute, epMute), "succeeded")
	if d.AttemptCount != 2 || len(d.Attempts) != 2 {
		t.Fatalf("delivery to the mute receiver = %+v, want succeeded at the second attempt", d)
	}
	if a := d.Attempts[0]; a.ErrorClass != "timeout" || a.StatusCode != nil || a.Error == nil || a.DurationMS < 2900 || a.DurationMS > 4500 {
		t.Errorf("first attempt to the mute receiver = %+v, want a timeout after about 3s", a)
	}
	if a := d.Attempts[1]; a.ErrorClass != "success" {
		t.Errorf("retry to the mute receiver = %+v, want a success", a)
	}
}

// TestHugeResponseBodyCapped: a 100 MB response is neither read nor kept:
// the attempt records its first 4 KiB and hookd hangs up.
func TestHugeResponseBodyCapped(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	const size = 100 << 20
	chunk := []byte(strings.Repeat("0123456789abcdef", 2048)) // 32 KiB, written again and again
	var written atomic.Int64
	var finished atomic.Bool
	recv := dlvServe(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		defer finished.Store(true)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(http.StatusOK)
		for written.Load() < size && r.Context().Err() == nil {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	appID := dlvApp(h)
	epID := dlvAddEndpoint(h, appID, recv.URL)

	before := dlvHeapAlloc()
	ev := dlvPublish(h, appID, "order.created")
	d := dlvWaitStatus(h, appID, dlvDeliveryID(h, ev, epID), "succeeded")
	waitFor(t, "the receiver to stop writing", finished.Load)
	after := dlvHeapAlloc()

	if d.AttemptCount != 1 || len(d.Attempts) != 1 {
		t.Fatalf("delivery = %+v, want succeeded at the first attempt", d)
	}
	a := d.Attempts[0]
	if a.StatusCode == nil || *a.StatusCode != http.StatusOK || a.ErrorClass != "success" || a.Error != nil {
		t.Errorf("attempt = %+v, want a clean 200", a)
	}
	if a.DurationMS > 2500 {
		t.Errorf("attempt took %.0fms, want well under the 5s timeout", a.DurationMS)
	}
	if a.ResponseBody == nil || len(*a.ResponseBody) == 0 || len(*a.ResponseBody) > 4096 ||
		!strings.HasPrefix(string(chunk), *a.ResponseBody) {
		n := -1
		if a.ResponseBody != nil {
			n = len(*a.ResponseBody)
		}
		t.Errorf("recorded response body of %d bytes, want the body's first bytes, at most 4096", n)
	}
	t.Logf("receiver wrote %d KB; heap %d KB before, %d KB after", written.Load()>>10, before>>10, after>>10)
	if n := written.Load(); n >= size/2 {
		t.Errorf("the receiver wrote %d MB: hookd read the body instead of hanging up", n>>20)
	}
	if growth := int64(after) - int64(before); growth > 20<<20 {
		t.Errorf("heap grew by %d MB over the delivery, want less than 20 MB", growth>>20)
	}
}

// dlvHeapAlloc returns the live heap after a full collection.
func dlvHeapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestHostnameResolvingToLoopbackRefused: with private targets refused, a
// URL whose host name resolves to loopback is refused when set through the
// API, and, planted in the database as a changed DNS answer would, refused
// again when hookd connects. Neither refusal tells the app what the host
// resolves to; the worker's log tells the operator.
func TestHostnameResolvingToLoopbackRefused(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_ALLOW_PRIVATE_TARGETS": "false"})
	recv := dlvServe(t, dlvStatus(http.StatusNoContent))
	_, port, err := net.SplitHostPort(recv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	local := "http://localhost:" + port + "/hook"
	appID := dlvApp(h)
	addresses := []string{"127.0.0.1", "::1", "[::1]"}
	namesAddress := func(s string) bool {
		return slices.ContainsFunc(addresses, func(a string) bool { return strings.Contains(s, a) })
	}

	checkRefused := func(name, url string, code int, body []byte) {
		t.Helper()
		var p struct {
			Field  string `json:"field"`
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(body, &p)
		if code != http.StatusUnprocessableEntity || p.Field != "url" || !strings.Contains(p.Detail, "target not allowed") {
			t.Errorf("%s with %s = %d %s, want 422 on url, target not allowed", name, url, code, body)
		}
		if namesAddress(p.Detail) {
			t.Errorf("%s with %s: detail %q names the address", name, url, p.Detail)
		}
	}
	for _, u := range []string{local, recv.URL + "/hook"} {
		code, body := dlvDo(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints", `{"url":"`+u+`"}`)
		checkRefused("create", u, code, body)
	}
	epID := itgPlantEndpoint(h, appID, "http://127.0.0.1:"+port+"/planted", nil)
	code, body := dlvDo(h, http.MethodPatch, "/v1/apps/"+appID+"/endpoints/"+epID, `{"url":"`+local+`"}`)
	checkRefused("update", local, code, body)

	if _, err := h.db.NewRaw(`UPDATE endpoints SET url = ? WHERE id = ?`, local, epID).Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	ev := dlvPublish(h, appID, "order.created")
	dlvID := dlvDeliveryID(h, ev, epID)
	d := dlvWaitStatus(h, appID, dlvID, "failed")
	if d.AttemptCount != 3 || len(d.Attempts) != 3 {
		t.Errorf("delivery = %+v, want failed after 3 attempts", d)
	}
	for i, a := range d.Attempts {
		if a.ErrorClass != "ssrf_blocked" || a.StatusCode != nil || a.Error == nil || !strings.Contains(*a.Error, "target not allowed") {
			t.Errorf("attempt %d = %+v, want refused as ssrf_blocked", i, a)
		}
		if a.Error != nil && namesAddress(*a.Error) {
			t.Errorf("attempt %d: error %q names the address", i, *a.Error)
		}
	}
	if d.LastError == nil || namesAddress(*d.LastError) {
		t.Errorf("delivery last_error = %v, want one naming no address", d.LastError)
	}
	_, dl, _ := resDo(h, http.MethodGet, "/v1/dead-letters?app_id="+appID, "")
	if !strings.Contains(string(dl), dlvID) || namesAddress(string(dl)) {
		t.Errorf("dead letters = %s, want the delivery, naming no address", dl)
	}
	if ep := dlvGetEndpoint(h, appID, epID); ep.DisabledReason != nil && namesAddress(*ep.DisabledReason) {
		t.Errorf("endpoint disabled_reason %q names the address", *ep.DisabledReason)
	}
	if !h.logs.contains("delivery target refused") || !h.logs.contains("forbidden target address: 127.0.0.1") && !h.logs.contains("forbidden target address: ::1") {
		t.Errorf("the worker's log does not name the refused address")
	}
	if n := recv.count(); n != 0 {
		t.Errorf("the loopback receiver got %d requests", n)
	}
}

// TestCircuitOpensProbesAndCloses: consecutive failures open an endpoint's
// circuit; its deliveries then wait without spending attempts, one probe at
// a time tests the endpoint after each cooldown, and a successful probe
// closes the circuit. The app's other endpoint is never held up.
func TestCircuitOpensProbesAndCloses(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{
		"HOOKD_CIRCUIT_THRESHOLD": "3",
		// Long enough that the checks made while the circuit is open
		// still fall in its first cooldown on a loaded CI machine.
		"HOOKD_CIRCUIT_COOLDOWN": "2s",
		"HOOKD_RETRY_SCHEDULE":   strings.Repeat("10ms,", 9) + "10ms",
	})
	// Requests 0 to 2 open the circuit, 3 is a failed probe, 4 the probe
	// that succeeds. Each takes a while, so that a request overlapping it
	// would show.
	const recoverAt = 4
	flaky := dlvServe(t, func(n int, w http.ResponseWriter, r *http.Request) {
		dlvPause(r, 200*time.Millisecond)
		if n < recoverAt {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	healthy := dlvServe(t, dlvStatus(http.StatusNoContent))
	appID := dlvApp(h)
	epFlaky := dlvAddEndpoint(h, appID, flaky.URL)
	epHealthy := dlvAddEndpoint(h, appID, healthy.URL)

	// One delivery fails three times in a row: the circuit opens.
	ev := dlvPublish(h, appID, "order.created")
	first := dlvDeliveryID(h, ev, epFlaky)
	waitFor(t, "three attempts to be recorded", func() bool {
		return h.count(`SELECT attempts FROM deliveries WHERE id = ?`, first) == 3
	})
	opened := flaky.requests()[2].end

	// While it is open, new deliveries wait and the other endpoint gets
	// its own at once.
	for range 4 {
		dlvPublish(h, appID, "order.created")
	}
	waitFor(t, "the healthy endpoint to receive all five events", func() bool { return healthy.count() == 5 })
	time.Sleep(time.Until(opened.Add(700 * time.Millisecond)))
	if n := flaky.count(); n != 3 {
		t.Errorf("%d requests reached the endpoint within 700ms of its circuit opening, want none", n-3)
	}
	// The fan-out writes a delivery's row after the first attempts of its
	// event: the healthy endpoint may have its request a moment before.
	waitFor(t, "five deliveries pending behind the open circuit", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'pending'`, epFlaky) == 5
	})
	if n := h.count(`SELECT coalesce(sum(attempts), 0) FROM deliveries WHERE endpoint_id = ?`, epFlaky); n != 3 {
		t.Errorf("%d attempts recorded behind the open circuit, want 3", n)
	}

	// Probes, then the circuit closes and every delivery goes out.
	waitFor(t, "every delivery to the recovered endpoint to succeed", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'succeeded'`, epFlaky) == 5
	})
	reqs := flaky.requests()
	if len(reqs) != 9 {
		t.Fatalf("the endpoint got %d requests, want 9 (3 failures, 2 probes, 4 held deliveries)", len(reqs))
	}
	t.Logf("requests at %v after the first", dlvOffsets(reqs))
	if gap := reqs[3].at.Sub(reqs[2].end); gap < 2*time.Second {
		t.Errorf("first probe %s after the circuit opened, want at least the 2s cooldown", gap)
	}
	if gap := reqs[4].at.Sub(reqs[3].end); gap < 2*time.Second {
		t.Errorf("second probe %s after the first failed, want at least the 2s cooldown", gap)
	}
	for i, r := range reqs {
		if r.at.Before(reqs[recoverAt].end) && r.concurrent > 1 {
			t.Errorf("request %d arrived with %d requests in flight before the circuit closed, want one at a time", i, r.concurrent)
		}
	}
	if n := h.count(`SELECT coalesce(sum(attempts), 0) FROM deliveries WHERE endpoint_id = ?`, epFlaky); n != 9 {
		t.Errorf("%d attempts recorded, want 9: postponing must not count as an attempt", n)
	}
	n := h.count(`SELECT count(*) FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id
		WHERE d.endpoint_id = ? AND d.status = 'succeeded' AND d.attempts = 1
		AND a.attempted_at < d.created_at + interval '1 second'`, epHealthy)
	if n != 5 {
		t.Errorf("%d of the healthy endpoint's 5 deliveries succeeded at once, want all", n)
	}
}

// dlvOffsets returns when each request arrived, after the first.
func dlvOffsets(reqs []dlvRequest) []time.Duration {
	out := make([]time.Duration, len(reqs))
	for i, r := range reqs {
		out[i] = r.at.Sub(reqs[0].at).Round(time.Millisecond)
	}
	return out
}

// TestFailingEndpointAutoDisabled: an endpoint whose every attempt failed
// for HOOKD_ENDPOINT_DISABLE_AFTER is disabled; enabled again, its next
// success ends the failing streak.
func TestFailingEndpointAutoDisabled(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{
		"HOOKD_ENDPOINT_DISABLE_AFTER": "1s",
		"HOOKD_RETRY_SCHEDULE":         strings.Repeat("50ms,", 39) + "50ms",
		// Only attempts disable an endpoint, and an open circuit makes
		// none: keep the breaker out of the way.
		"HOOKD_CIRCUIT_THRESHOLD": "1000",
	})
	var healthy atomic.Bool
	recv := dlvServe(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if healthy.Load() {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	appID := dlvApp(h)
	epID := dlvAddEndpoint(h, appID, recv.URL)

	ev := dlvPublish(h, appID, "order.created")
	var ep dlvEndpoint
	waitFor(t, "the endpoint to be disabled", func() bool {
		ep = dlvGetEndpoint(h, appID, epID)
		return ep.Disabled
	})
	if ep.DisabledReason == nil || !strings.Contains(*ep.DisabledReason, "failed since") || !strings.Contains(*ep.DisabledReason, "HTTP 500") {
		t.Errorf("disabled_reason = %v, want the failing streak and its last failure", ep.DisabledReason)
	}
	// From the recorded times, not the test's clock: at the first failure
	// past the 1s streak (attempts 50ms apart), give or take a loaded
	// machine.
	if ep.FailingSince == nil || ep.DisabledAt == nil || ep.DisabledAt.Sub(*ep.FailingSince) < time.Second ||
		ep.DisabledAt.Sub(*ep.FailingSince) > 6*time.Second {
		t.Errorf("failing_since %v, disabled_at %v; want disabled soon after 1s into the streak", ep.FailingSince, ep.DisabledAt)
	}
	d := dlvWaitStatus(h, appID, dlvDeliveryID(h, ev, epID), "failed")
	if d.AttemptCount < 2 || d.AttemptCount != recv.count() {
		t.Errorf("delivery failed after %d attempts, the receiver got %d requests; want the same, at least 2", d.AttemptCount, recv.count())
	}

	// Enabled again, the endpoint succeeds: the streak is over.
	healthy.Store(true)
	var enabled dlvEndpoint
	dlvMust(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints/"+epID+"/enable", "", http.StatusOK, &enabled)
	if enabled.Disabled || enabled.DisabledReason != nil || enabled.DisabledAt != nil {
		t.Errorf("enabled endpoint = %+v", enabled)
	}
	ev = dlvPublish(h, appID, "order.created")
	dlvWaitStatus(h, appID, dlvDeliveryID(h, ev, epID), "succeeded")
	if ep := dlvGetEndpoint(h, appID, epID); ep.Disabled || ep.FailingSince != nil {
		t.Errorf("endpoint after a success = %+v, want enabled with no failing_since", ep)
	}
}

// TestAsynqmonRunFollowsInPostgres: running a dead-lettered delivery task
// from Asynqmon (Inspector.RunTask) delivers it and Postgres follows.
func TestAsynqmonRunFollowsInPostgres(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms"})
	var healthy atomic.Bool
	recv := dlvServe(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if healthy.Load() {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	appID := dlvApp(h)
	epID := dlvAddEndpoint(h, appID, recv.URL)
	ev := dlvPublish(h, appID, "order.created")
	id := dlvDeliveryID(h, ev, epID)
	if d := dlvWaitStatus(h, appID, id, "failed"); d.AttemptCount != 2 {
		t.Errorf("dead letter = %+v, want failed after 2 attempts", d)
	}

	ins := asynq.NewInspectorFromRedisClient(h.rdb)
	archived := func() bool {
		tasks, err := ins.ListArchivedTasks(h.queues[1])
		if err != nil {
			t.Fatalf("list archived tasks: %v", err)
		}
		return slices.ContainsFunc(tasks, func(ti *asynq.TaskInfo) bool { return ti.ID == id })
	}
	waitFor(t, "the task to be archived", archived)

	healthy.Store(true)
	if err := ins.RunTask(h.queues[1], id); err != nil {
		t.Fatalf("run archived task %s: %v", id, err)
	}
	d := dlvWaitStatus(h, appID, id, "succeeded")
	if d.AttemptCount != 3 || len(d.Attempts) != 3 || d.SucceededAt == nil || d.LastStatusCode == nil ||
		*d.LastStatusCode != http.StatusOK || d.LastError != nil {
		t.Errorf("delivery run from the archive = %+v, want succeeded at the third attempt", d)
	}
	if d.FailedAt != nil {
		t.Errorf("succeeded delivery still has failed_at %v", d.FailedAt)
	}
	if archived() {
		t.Errorf("the delivered task is still archived")
	}
	if n := recv.count(); n != 3 {
		t.Errorf("the receiver got %d requests, want 3", n)
	}
}

// TestDeleteAppRetriesADeadlock: deleting an app deletes its deliveries,
// which workers may be recording meanwhile, locking the same rows in
// another order. Postgres breaks the deadlock by aborting one side; when it
// is the deletion, it runs again and succeeds.
func TestDeleteAppRetriesADeadlock(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	rcv := newReceiver(t, nil)
	// Postgres aborts the side of a deadlock whose deadlock_timeout (1s)
	// runs out first: the deletion's, which waited first. On a loaded
	// machine the other side's may run out first all the same; then the
	// deletion just goes through, and the scenario runs again.
	for try := 1; ; try++ {
		if deadlockedDeletion(t, h, rcv) {
			return
		}
		if try == 3 {
			t.Fatal("in 3 tries, Postgres never aborted the deletion's side of the deadlock")
		}
		t.Logf("try %d: Postgres aborted the other side of the deadlock; again", try)
	}
}

// deadlockedDeletion deletes an app while another transaction makes a
// deadlock with the deletion, and checks that the deletion, retried, went
// through. It reports whether Postgres aborted the deletion's side.
func deadlockedDeletion(t *testing.T, h *harness, rcv *receiver) bool {
	t.Helper()
	appID := dlvApp(h)
	ep := dlvAddEndpoint(h, appID, rcv.URL)
	dlvWaitStatus(h, appID, dlvDeliveryID(h, dlvPublish(h, appID, "order.paid"), ep), "succeeded")

	// Another transaction holds the delivery; the deletion takes the app's
	// row, then waits for the delivery; the other then asks for the app's
	// row: a deadlock.
	tx, err := h.db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(t.Context(), `SELECT id FROM deliveries WHERE app_id = ? FOR UPDATE`, appID); err != nil {
		t.Fatal(err)
	}
	deleted := make(chan int, 1)
	go func() { deleted <- h.do(http.MethodDelete, "/v1/apps/"+appID, nil, nil) }()
	waitFor(t, "the deletion to wait for the delivery's lock", func() bool {
		return h.count(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE ?`, `DELETE FROM "deliveries"%`+appID+`%`) > 0
	})
	// Well inside the deletion's second of waiting, but later than it by
	// more than a busy machine's jitter.
	time.Sleep(300 * time.Millisecond)
	_, lockErr := tx.ExecContext(t.Context(), `SELECT id FROM applications WHERE id = ? FOR UPDATE`, appID)
	if lockErr == nil {
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	} else {
		_ = tx.Rollback()
	}
	if code := <-deleted; code != http.StatusNoContent {
		t.Fatalf("DELETE app after a deadlock: %d, want 204", code)
	}
	if n := h.count(`SELECT count(*) FROM deliveries WHERE app_id = ?`, appID); n != 0 {
		t.Errorf("%d deliveries left of the deleted app", n)
	}
	return lockErr == nil
}
