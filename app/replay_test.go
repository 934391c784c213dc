package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks"
)

// The replay tests steer replays: recovering an endpoint's missed events,
// dry runs and paced bulk retries. Their helpers carry an rpy prefix.

// rpyHit is one webhook a rpyReceiver got: the n of its payload, its
// webhook-id, the status answered and when.
type rpyHit struct {
	n      int
	id     string
	status int
	at     time.Time
}

// rpyReceiver records the webhooks it gets; it answers 500 to payloads
// whose n is in fail, 204 to the others.
type rpyReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	hits []rpyHit
	fail map[int]bool
}

func rpyNewReceiver(t *testing.T) *rpyReceiver {
	t.Helper()
	r := &rpyReceiver{fail: map[int]bool{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var body struct {
			Data struct {
				N int `json:"n"`
			} `json:"data"`
		}
		_ = json.Unmarshal(b, &body)
		r.mu.Lock()
		status := http.StatusNoContent
		if r.fail[body.Data.N] {
			status = http.StatusInternalServerError
		}
		r.hits = append(r.hits, rpyHit{n: body.Data.N, id: req.Header.Get("webhook-id"), status: status, at: time.Now()})
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *rpyReceiver) setFail(n int, fail bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail[n] = fail
}

func (r *rpyReceiver) got() []rpyHit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.hits)
}

// received returns the n of each webhook answered with success, in order.
func (r *rpyReceiver) received() []int {
	var ns []int
	for _, h := range r.got() {
		if h.status < 300 {
			ns = append(ns, h.n)
		}
	}
	return ns
}

// rpyJob is a bulk retry or a recovery as the API answers it.
type rpyJob struct {
	ID         string     `json:"id"`
	AppID      string     `json:"app_id"`
	EndpointID string     `json:"endpoint_id"`
	Status     string     `json:"status"`
	DryRun     bool       `json:"dry_run"`
	Rate       *int       `json:"rate"`
	Retried    int        `json:"retried"`
	Recovered  int        `json:"recovered"`
	Since      time.Time  `json:"since"`
	Until      time.Time  `json:"until"`
	FinishedAt *time.Time `json:"finished_at"`
}

// rpyPublish publishes an event of type typ with payload {"n": n} and
// returns its ID.
func rpyPublish(h *harness, appPath, typ string, n int) string {
	h.t.Helper()
	return h.mustCreate(appPath+"/events", map[string]any{"type": typ, "payload": map[string]any{"n": n}}).ID
}

// rpyFannedOut waits until the fan-out of every event of the app is done.
func rpyFannedOut(t *testing.T, h *harness, appID string) {
	t.Helper()
	waitFor(t, "every event fanned out", func() bool {
		return h.count(`SELECT count(*) FROM outbox_events WHERE tenant = ? AND fanned_out_at IS NULL`, appID) == 0
	})
}

// rpyRecover starts a recovery and waits for it to complete.
func rpyRecover(t *testing.T, h *harness, path string, body map[string]any) rpyJob {
	t.Helper()
	var job rpyJob
	if code := h.do(http.MethodPost, path+"/recover", body, &job); code != http.StatusAccepted || !strings.HasPrefix(job.ID, "rcv_") {
		t.Fatalf("recover %v = %d %+v, want 202 with a recovery", body, code, job)
	}
	waitFor(t, "the recovery to complete", func() bool {
		if code := h.do(http.MethodGet, path+"/recoveries/"+job.ID, nil, &job); code != http.StatusOK {
			t.Fatalf("GET recovery = %d", code)
		}
		return job.Status == "completed"
	})
	return job
}

func rpySorted(ns []int) []int {
	ns = slices.Clone(ns)
	slices.Sort(ns)
	return ns
}

// TestEndpointRecover: an endpoint disabled while events are published,
// then enabled and recovered, receives exactly the events it missed, of
// its types and accepted by its filter, committed in the range asked and
// after it was created: none twice, none it had received; its dead letter
// is retried with its webhook-id.
func TestEndpointRecover(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms", "HOOKD_CIRCUIT_THRESHOLD": "1000"})
	recv := rpyNewReceiver(t)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	appPath := "/v1/apps/" + appID
	start := time.Now().Add(-time.Minute)

	// Before the endpoint exists: never its.
	rpyPublish(h, appPath, "order.paid", 100)
	rpyFannedOut(t, h, appID)
	resNextMilli()
	ep := h.mustCreate(appPath+"/endpoints", map[string]any{
		"url": recv.URL, "event_types": []string{"order.paid"}, "filter": map[string]any{"n": map[string]any{"$gte": 0}},
	})
	epPath := appPath + "/endpoints/" + ep.ID

	// Received while enabled; 9 fails for good (a dead letter).
	recv.setFail(9, true)
	for _, n := range []int{1, 2, 9} {
		rpyPublish(h, appPath, "order.paid", n)
	}
	waitFor(t, "1 and 2 received and 9 dead-lettered", func() bool {
		return len(recv.received()) == 2 && h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'failed'`, ep.ID) == 1
	})
	recv.setFail(9, false)

	// Missed while disabled: 3 to 7; not its: another type, and a
	// payload its filter refuses.
	if code := h.do(http.MethodPost, epPath+"/disable", map[string]any{}, nil); code != http.StatusOK {
		t.Fatalf("disable = %d", code)
	}
	for n := 3; n <= 7; n++ {
		rpyPublish(h, appPath, "order.paid", n)
	}
	rpyPublish(h, appPath, "order.refunded", 50)
	rpyPublish(h, appPath, "order.paid", -1)
	rpyFannedOut(t, h, appID)
	resNextMilli()
	mid := time.Now()
	resNextMilli()
	rpyPublish(h, appPath, "order.paid", 8)
	rpyFannedOut(t, h, appID)

	// Disabled: a recovery is refused, a dry run counts.
	if code, p, _ := h.raw(http.MethodPost, epPath+"/recover", "Bearer "+adminKey, "", fmt.Sprintf(`{"since":%q}`, start.Format(time.RFC3339Nano))); code != http.StatusConflict {
		t.Errorf("recover of a disabled endpoint = %d %v, want 409", code, p)
	}
	dry := rpyRecover(t, h, epPath, map[string]any{"since": start, "dry_run": true})
	if !dry.DryRun || dry.Recovered != 7 { // 3..7, 8 and the dead letter 9
		t.Errorf("dry run of the disabled endpoint = %+v, want 7 counted", dry)
	}
	time.Sleep(200 * time.Millisecond)
	if got := recv.received(); len(got) != 2 {
		t.Errorf("the dry run sent: receiver has %v", got)
	}

	if code := h.do(http.MethodPost, epPath+"/enable", map[string]any{}, nil); code != http.StatusOK {
		t.Fatalf("enable = %d", code)
	}
	// Until mid: 3..7 and the dead letter 9, not 8.
	job := rpyRecover(t, h, epPath, map[string]any{"since": start, "until": mid})
	if job.Recovered != 6 || job.AppID != appID || job.EndpointID != ep.ID || job.DryRun || job.FinishedAt == nil {
		t.Errorf("recovery until mid = %+v, want 6 recovered", job)
	}
	want := []int{1, 2, 3, 4, 5, 6, 7, 9}
	waitFor(t, "the recovered events", func() bool { return len(recv.received()) >= len(want) })
	time.Sleep(300 * time.Millisecond)
	if got := rpySorted(recv.received()); !slices.Equal(got, want) {
		t.Errorf("after the recovery until mid, receiver has %v, want %v", got, want)
	}
	// The dead letter went again as itself.
	var ids []string
	for _, hit := range recv.got() {
		if hit.n == 9 && !slices.Contains(ids, hit.id) {
			ids = append(ids, hit.id)
		}
	}
	if len(ids) != 1 {
		t.Errorf("event 9 came with webhook-ids %v, want one", ids)
	}

	// Again, without until: only 8 is left.
	job = rpyRecover(t, h, epPath, map[string]any{"since": start})
	if job.Recovered != 1 {
		t.Errorf("second recovery = %+v, want 1 recovered", job)
	}
	want = []int{1, 2, 3, 4, 5, 6, 7, 8, 9}
	waitFor(t, "event 8", func() bool { return len(recv.received()) >= len(want) })
	time.Sleep(300 * time.Millisecond)
	if got := rpySorted(recv.received()); !slices.Equal(got, want) {
		t.Errorf("after both recoveries, receiver has %v, want %v", got, want)
	}
	// A third finds nothing.
	if job := rpyRecover(t, h, epPath, map[string]any{"since": start}); job.Recovered != 0 {
		t.Errorf("third recovery = %+v, want none recovered", job)
	}
}

// TestEndpointRecoverPaced: a recovery of 20 events at a rate of 10 takes
// about two seconds at the receiver; its dry run counts the 20 and sends
// nothing.
func TestEndpointRecoverPaced(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := rpyNewReceiver(t)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	appPath := "/v1/apps/" + appID
	ep := h.mustCreate(appPath+"/endpoints", map[string]any{"url": recv.URL, "disabled": true})
	epPath := appPath + "/endpoints/" + ep.ID
	since := time.Now().Add(-time.Minute)
	const events = 20
	for n := range events {
		rpyPublish(h, appPath, "order.paid", n)
	}
	rpyFannedOut(t, h, appID)
	if code := h.do(http.MethodPost, epPath+"/enable", map[string]any{}, nil); code != http.StatusOK {
		t.Fatalf("enable = %d", code)
	}

	var dry rpyJob
	if code := h.do(http.MethodPost, epPath+"/recover", map[string]any{"since": since, "dry_run": true}, &dry); code != http.StatusAccepted {
		t.Fatalf("dry run = %d", code)
	}
	if dry.Status != "completed" || dry.Recovered != events {
		t.Errorf("dry run answered %+v, want completed with %d counted", dry, events)
	}
	if n := h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ?`, ep.ID); n != 0 {
		t.Errorf("the dry run wrote %d deliveries", n)
	}

	job := rpyRecover(t, h, epPath, map[string]any{"since": since, "rate": 10})
	if job.Recovered != events || job.Rate == nil || *job.Rate != 10 {
		t.Errorf("paced recovery = %+v, want %d recovered at 10/s", job, events)
	}
	waitFor(t, "every event", func() bool { return len(recv.received()) == events })
	hits := recv.got()
	span := hits[len(hits)-1].at.Sub(hits[0].at)
	t.Logf("%d events at 10/s reached the receiver over %s", events, span.Round(time.Millisecond))
	// 2 every 200 ms: the last batch leaves 1.8 s after the first.
	if span < 1500*time.Millisecond {
		t.Errorf("%d events at 10/s took %s at the receiver, want at least 1.5 s", events, span)
	}
	if got := rpySorted(recv.received()); len(slices.Compact(got)) != events {
		t.Errorf("receiver got %v, want each of %d once", got, events)
	}
}

// TestEndpointRecoverRefusesBadInput: recover's input is checked, with a
// problem naming the field, and a recovery is found under its own
// endpoint only.
func TestEndpointRecoverRefusesBadInput(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	ep := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": "http://127.0.0.1:9/"})
	other := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": "http://127.0.0.1:9/other"})
	path := "/v1/apps/" + appID + "/endpoints/" + ep.ID + "/recover"
	for _, tc := range []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"NoSince", path, `{}`, 422, "since"},
		{"NotATime", path, `{"since":"yesterday"}`, 422, "since"},
		{"UntilBeforeSince", path, `{"since":"2026-01-02T00:00:00Z","until":"2026-01-01T00:00:00Z"}`, 422, "until"},
		{"UntilIsSince", path, `{"since":"2026-01-02T00:00:00Z","until":"2026-01-02T00:00:00Z"}`, 422, "until"},
		{"YearZero", path, `{"since":"0000-01-01T00:00:00Z"}`, 422, "since"},
		{"RateTooHigh", path, `{"since":"2026-01-01T00:00:00Z","rate":10001}`, 422, "rate"},
		{"RateNegative", path, `{"since":"2026-01-01T00:00:00Z","rate":-1}`, 422, "rate"},
		{"UnknownField", path, `{"since":"2026-01-01T00:00:00Z","dryrun":true}`, 422, "dryrun"},
		{"MissingEndpoint", "/v1/apps/" + appID + "/endpoints/ep_00000000000000000000000000/recover", `{"since":"2026-01-01T00:00:00Z"}`, 404, ""},
	} {
		code, b, hdr := resDo(h, http.MethodPost, tc.path, tc.body)
		resCheckProblem(t, tc.name, code, b, hdr, tc.status, tc.field)
	}
	if n := h.count(`SELECT count(*) FROM endpoint_recoveries`); n != 0 {
		t.Errorf("refused recoveries recorded %d jobs", n)
	}
	var job rpyJob
	if code := h.do(http.MethodPost, path, map[string]any{"since": time.Now().Add(-time.Hour), "dry_run": true}, &job); code != http.StatusAccepted {
		t.Fatalf("dry run = %d", code)
	}
	code, b, hdr := resDo(h, http.MethodGet, "/v1/apps/"+appID+"/endpoints/"+other.ID+"/recoveries/"+job.ID, "")
	resCheckProblem(t, "another endpoint's recovery", code, b, hdr, http.StatusNotFound, "")
}

// TestBulkRetryDryRunAndRate: a dry run of a bulk retry counts the dead
// letters and retries none; a paced one retries 20 at 10 a second over
// about two seconds at the receiver.
func TestBulkRetryDryRunAndRate(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms", "HOOKD_CIRCUIT_THRESHOLD": "1000"})
	recv := rpyNewReceiver(t)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	ep := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})
	const events = 20
	for n := range events {
		recv.setFail(n, true)
		rpyPublish(h, "/v1/apps/"+appID, "order.paid", n)
	}
	waitFor(t, "every delivery to fail", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'failed'`, ep.ID) == events
	})
	for n := range events {
		recv.setFail(n, false)
	}
	before := len(recv.got())

	var dry rpyJob
	if code := h.do(http.MethodPost, "/v1/dead-letters/retry", map[string]any{"endpoint_id": ep.ID, "dry_run": true}, &dry); code != http.StatusAccepted {
		t.Fatalf("dry run = %d", code)
	}
	if !dry.DryRun || dry.Status != "completed" || dry.Retried != events {
		t.Errorf("dry run answered %+v, want completed with %d counted", dry, events)
	}
	time.Sleep(200 * time.Millisecond)
	if n := h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'failed'`, ep.ID); n != events || len(recv.got()) != before {
		t.Errorf("after the dry run: %d dead letters (want %d), %d requests (want %d)", n, events, len(recv.got()), before)
	}
	code, b, hdr := resDo(h, http.MethodPost, "/v1/dead-letters/retry", `{"rate":0.5}`)
	resCheckProblem(t, "fractional rate", code, b, hdr, http.StatusUnprocessableEntity, "rate")
	code, b, hdr = resDo(h, http.MethodPost, "/v1/dead-letters/retry", `{"rate":100000}`)
	resCheckProblem(t, "rate too high", code, b, hdr, http.StatusUnprocessableEntity, "rate")

	var job rpyJob
	if code := h.do(http.MethodPost, "/v1/dead-letters/retry", map[string]any{"endpoint_id": ep.ID, "rate": 10}, &job); code != http.StatusAccepted {
		t.Fatalf("paced bulk retry = %d", code)
	}
	waitFor(t, "the paced bulk retry to complete", func() bool {
		h.do(http.MethodGet, "/v1/dead-letters/retries/"+job.ID, nil, &job)
		return job.Status == "completed"
	})
	if job.Retried != events || job.Rate == nil || *job.Rate != 10 {
		t.Errorf("paced bulk retry = %+v, want %d retried at 10/s", job, events)
	}
	waitFor(t, "every retried delivery", func() bool { return len(recv.received()) == events })
	var ok []rpyHit
	for _, hit := range recv.got() {
		if hit.status < 300 {
			ok = append(ok, hit)
		}
	}
	span := ok[len(ok)-1].at.Sub(ok[0].at)
	t.Logf("%d dead letters at 10/s reached the receiver over %s", events, span.Round(time.Millisecond))
	if span < 1500*time.Millisecond {
		t.Errorf("%d dead letters at 10/s took %s at the receiver, want at least 1.5 s", events, span)
	}
}

// TestDLQRecoverAndDryRun: `hookd dlq recover` counts (--dry-run) and
// recovers an endpoint's missed events, naming the app by its uid; `hookd
// dlq retry --all --dry-run` counts; bad flags are refused.
func TestDLQRecoverAndDryRun(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms", "HOOKD_CIRCUIT_THRESHOLD": "1000"})
	recv := rpyNewReceiver(t)
	app1 := h.mustCreate("/v1/apps", map[string]any{"name": "acme", "uid": "cli-customer-1"}).ID
	ep := h.mustCreate("/v1/apps/"+app1+"/endpoints", map[string]any{"url": recv.URL, "disabled": true})
	since := time.Now().Add(-time.Minute).Format(time.RFC3339Nano)
	for n := range 5 {
		rpyPublish(h, "/v1/apps/"+app1, "order.paid", n)
	}
	rpyFannedOut(t, h, app1)

	env := map[string]string{"HOOKD_DATABASE_URL": accDatabaseURL(t, h), "HOOKD_REDIS_URL": testRedisURL(t)}
	queue := tasks.QueueConfig{Events: h.queues[0], Deliveries: h.queues[1]}
	dlq := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := app.DLQ(t.Context(), args, func(k string) string { return env[k] }, &out, slog.New(slog.DiscardHandler), queue)
		return out.String(), err
	}
	out, err := dlq("recover", "--app", "cli-customer-1", "--endpoint", ep.ID, "--since", since, "--dry-run")
	if err != nil || !strings.Contains(out, "would recover 5 events") {
		t.Errorf("dlq recover --dry-run = %q, %v; want 5 counted", out, err)
	}
	if _, err := dlq("recover", "--app", app1, "--endpoint", ep.ID, "--since", since); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("dlq recover of a disabled endpoint: %v, want refused", err)
	}
	if code := h.do(http.MethodPost, "/v1/apps/"+app1+"/endpoints/"+ep.ID+"/enable", map[string]any{}, nil); code != http.StatusOK {
		t.Fatalf("enable = %d", code)
	}
	out, err = dlq("recover", "--app", "cli-customer-1", "--endpoint", ep.ID, "--since", since, "--rate", "100")
	if err != nil || !strings.Contains(out, "recovered 5 events") {
		t.Errorf("dlq recover = %q, %v; want 5 recovered", out, err)
	}
	waitFor(t, "the recovered events", func() bool { return len(recv.received()) == 5 })

	// Dead letters: a dry run counts them, retries none.
	recv.setFail(10, true)
	rpyPublish(h, "/v1/apps/"+app1, "order.paid", 10)
	waitFor(t, "a dead letter", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'failed'`, ep.ID) == 1
	})
	out, err = dlq("retry", "--all", "--endpoint", ep.ID, "--dry-run")
	if err != nil || !strings.Contains(out, "would retry 1 dead letters") {
		t.Errorf("dlq retry --all --dry-run = %q, %v; want 1 counted", out, err)
	}
	if n := h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'failed'`, ep.ID); n != 1 {
		t.Errorf("%d dead letters after the dry run, want 1", n)
	}

	for _, args := range [][]string{
		{"recover", "--endpoint", ep.ID, "--since", since},
		{"recover", "--app", app1, "--since", since},
		{"recover", "--app", app1, "--endpoint", ep.ID},
		{"recover", "--app", app1, "--endpoint", ep.ID, "--since", since, "--until", since},
		{"recover", "--app", app1, "--endpoint", ep.ID, "--since", since, "--rate", "10001"},
		{"retry", "--all", "--rate", "-1"},
		{"retry", "--dry-run", "dlv_00000000000000000000000000"},
		{"list", "--dry-run"},
	} {
		if _, err := dlq(args...); err == nil {
			t.Errorf("dlq %q: no error", args)
		}
	}
	if _, err := dlq("recover", "--app", "no-such-customer", "--endpoint", ep.ID, "--since", since); err == nil {
		t.Error("dlq recover of an unknown uid: no error")
	}
}

// TestAppUID: an app created with the integrator's own ID is addressed by
// it in every {app_id}; uids are checked, unique, never shaped like app
// IDs; an app-scoped key reaches its own app by uid, and another app's by
// uid not at all.
func TestAppUID(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, nil)
	var a, b struct {
		ID  string  `json:"id"`
		UID *string `json:"uid"`
	}
	accMust(t, h, http.MethodPost, "/v1/apps", adminKey, map[string]any{"name": "a", "uid": "cust.42_A-x"}, http.StatusCreated, &a)
	if a.UID == nil || *a.UID != "cust.42_A-x" {
		t.Fatalf("created app uid = %v", a.UID)
	}
	accMust(t, h, http.MethodPost, "/v1/apps", adminKey, map[string]any{"name": "b", "uid": "cust-b"}, http.StatusCreated, &b)
	var plain struct {
		UID *string `json:"uid"`
	}
	accMust(t, h, http.MethodPost, "/v1/apps", adminKey, map[string]any{"name": "no uid"}, http.StatusCreated, &plain)
	if plain.UID != nil {
		t.Errorf("an app created without uid has uid %q", *plain.UID)
	}

	for _, tc := range []struct {
		name, uid string
		status    int
	}{
		{"Taken", "cust.42_A-x", http.StatusConflict},
		{"Empty", "", http.StatusUnprocessableEntity},
		{"Space", "cust 42", http.StatusUnprocessableEntity},
		{"Slash", "cust/42", http.StatusUnprocessableEntity},
		{"TooLong", strings.Repeat("x", 65), http.StatusUnprocessableEntity},
		{"ShapedLikeAnAppID", "app_0123456789abcdefghijklmnop", http.StatusUnprocessableEntity},
		{"NonASCII", "cüst", http.StatusUnprocessableEntity},
		{"Dot", ".", http.StatusUnprocessableEntity},
		{"DotDot", "..", http.StatusUnprocessableEntity},
	} {
		body := fmt.Sprintf(`{"name":"x","uid":%q}`, tc.uid)
		field := "uid"
		if tc.status == http.StatusConflict {
			field = ""
		}
		accCheckProblem(t, "create with uid "+tc.name, accDo(t, h, http.MethodPost, "/v1/apps", adminKey, body), tc.status, field)
	}
	accCheckProblem(t, "patch to a taken uid", accDo(t, h, http.MethodPatch, "/v1/apps/cust-b", adminKey, map[string]any{"uid": "cust.42_A-x"}), http.StatusConflict, "")
	if n := h.count(`SELECT count(*) FROM applications`); n != 3 {
		t.Errorf("%d apps after refused requests, want 3", n)
	}
	accCheckProblem(t, "unknown uid", accDo(t, h, http.MethodGet, "/v1/apps/nobody", adminKey, nil), http.StatusNotFound, "")

	// Every kind of route, by uid.
	byUID := "/v1/apps/cust.42_A-x"
	var got struct {
		ID string `json:"id"`
	}
	accMust(t, h, http.MethodGet, byUID, adminKey, nil, http.StatusOK, &got)
	if got.ID != a.ID {
		t.Errorf("GET by uid = %s, want %s", got.ID, a.ID)
	}
	ep := h.mustCreate(byUID+"/endpoints", map[string]any{"url": recv.URL})
	ev := h.mustCreate(byUID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": 1}})
	waitFor(t, "the delivery", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE event_id = ? AND status = 'succeeded'`, ev.ID) == 1
	})
	for path, want := range map[string]string{
		byUID + "/endpoints":              ep.ID,
		byUID + "/events":                 ev.ID,
		byUID + "/endpoints/" + ep.ID:     ep.ID,
		byUID + "/events/" + ev.ID:        ev.ID,
		byUID + "/deliveries?limit=10":    ev.ID,
		"/v1/apps/" + a.ID + "/endpoints": ep.ID,
	} {
		r := accMust(t, h, http.MethodGet, path, adminKey, nil, http.StatusOK, nil)
		if !strings.Contains(string(r.body), want) {
			t.Errorf("GET %s = %s, want %s in it", path, r.body, want)
		}
	}
	accCheckProblem(t, "b's endpoint under a's uid", accDo(t, h, http.MethodGet, "/v1/apps/cust-b/endpoints/"+ep.ID, adminKey, nil), http.StatusNotFound, "")

	// App-scoped keys are authorized against the app the uid names.
	var keyA accKey
	accMust(t, h, http.MethodPost, "/v1/api-keys", adminKey, map[string]any{"name": "a-only", "app_id": a.ID}, http.StatusCreated, &keyA)
	accMust(t, h, http.MethodGet, byUID+"/endpoints", keyA.Key, nil, http.StatusOK, nil)
	for _, path := range []string{"/v1/apps/cust-b", "/v1/apps/cust-b/endpoints", "/v1/apps/cust-b/events", "/v1/apps/" + b.ID + "/endpoints"} {
		accCheckProblem(t, "a's key on "+path, accDo(t, h, http.MethodGet, path, keyA.Key, nil), http.StatusNotFound, "")
	}
	accCheckProblem(t, "a's key publishing to b by uid",
		accDo(t, h, http.MethodPost, "/v1/apps/cust-b/events", keyA.Key, map[string]any{"type": "order.paid", "payload": map[string]any{}}), http.StatusNotFound, "")
	// An app key cannot tell another app's uid from one nobody has.
	if other, none := accDo(t, h, http.MethodGet, "/v1/apps/cust-b/endpoints", keyA.Key, nil), accDo(t, h, http.MethodGet, "/v1/apps/cust-nobody/endpoints", keyA.Key, nil); other.code != none.code || !bytes.Equal(other.body, none.body) {
		t.Errorf("a's key: b's uid answers %s, an unknown uid %s; want the same", other, none)
	}

	// PATCH changes and clears the uid.
	var patched struct {
		UID *string `json:"uid"`
	}
	accMust(t, h, http.MethodPatch, byUID, adminKey, map[string]any{"uid": "cust-43"}, http.StatusOK, &patched)
	if patched.UID == nil || *patched.UID != "cust-43" {
		t.Errorf("patched uid = %v, want cust-43", patched.UID)
	}
	accCheckProblem(t, "the old uid", accDo(t, h, http.MethodGet, byUID, adminKey, nil), http.StatusNotFound, "")
	accMust(t, h, http.MethodPatch, "/v1/apps/cust-43", adminKey, map[string]any{"uid": nil}, http.StatusOK, &patched)
	if patched.UID != nil {
		t.Errorf("uid after PATCH null = %q, want null", *patched.UID)
	}
	accCheckProblem(t, "the cleared uid", accDo(t, h, http.MethodGet, "/v1/apps/cust-43", adminKey, nil), http.StatusNotFound, "")
	// A freed uid may be taken again.
	accMust(t, h, http.MethodPatch, "/v1/apps/cust-b", adminKey, map[string]any{"uid": "cust.42_A-x"}, http.StatusOK, nil)
	accMust(t, h, http.MethodGet, byUID, adminKey, nil, http.StatusOK, &got)
	if got.ID != b.ID {
		t.Errorf("uid moved to b names %s, want %s", got.ID, b.ID)
	}
	accMust(t, h, http.MethodDelete, byUID, adminKey, nil, http.StatusNoContent, nil)
	if h.count(`SELECT count(*) FROM applications WHERE id = ?`, b.ID) != 0 {
		t.Errorf("DELETE by uid did not delete app b")
	}
}

// TestEndpointRecoverLargeRange recovers an endpoint over 3,000 events
// committed at one instant (the keyset's ties), 500 of which it received:
// batch after batch, it sends each of the 2,500 others once.
func TestEndpointRecoverLargeRange(t *testing.T) {
	if testing.Short() {
		t.Skip("3,000 events; skipped with -short")
	}
	t.Parallel()
	h := start(t, nil)
	recv := rpyNewReceiver(t)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	ep := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})
	epPath := "/v1/apps/" + appID + "/endpoints/" + ep.ID
	const n, received = 3000, 500
	resNextMilli()
	day := outbox.IDAt("evt", time.Now())[:len("evt_")+12]
	_, err := h.db.ExecContext(t.Context(), `
		INSERT INTO outbox_events (id, tenant, topic, payload, created_at, published_at, fanned_out_at)
		SELECT ? || lpad(g::text, 14, '0'), ?, 'bulk.import', json_build_object('n', g), now(), now(), now()
		FROM generate_series(1, ?) AS g`, day, appID, n)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.db.ExecContext(t.Context(), `
		INSERT INTO deliveries (id, event_id, endpoint_id, app_id, event_type, status, attempts, succeeded_at)
		SELECT 'dlv_' || lpad(g::text, 26, '0'), ? || lpad(g::text, 14, '0'), ?, ?, 'bulk.import', 'succeeded', 1, now()
		FROM generate_series(1, ?) AS g`, day, ep.ID, appID, received)
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-time.Hour)

	sent := time.Now()
	dry := rpyRecover(t, h, epPath, map[string]any{"since": since, "dry_run": true})
	t.Logf("dry run over %d events: %s", n, time.Since(sent).Round(time.Millisecond))
	if dry.Recovered != n-received {
		t.Errorf("dry run counted %d, want %d", dry.Recovered, n-received)
	}
	sent = time.Now()
	job := rpyRecover(t, h, epPath, map[string]any{"since": since})
	if job.Recovered != n-received {
		t.Errorf("recovery recovered %d, want %d", job.Recovered, n-received)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for len(recv.received()) < n-received {
		if time.Now().After(deadline) {
			t.Fatalf("receiver got %d of %d after 3 minutes", len(recv.received()), n-received)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("recovery of %d events delivered in %s", n-received, time.Since(sent).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	got := rpySorted(recv.received())
	if len(got) != n-received || got[0] != received+1 || got[len(got)-1] != n || len(slices.Compact(got)) != n-received {
		t.Errorf("receiver got %d webhooks, n from %d to %d; want each of %d..%d once", len(got), got[0], got[len(got)-1], received+1, n)
	}
}

// TestEndpointRecoverFIFO: a FIFO endpoint's recovered events take their
// place in its queue and reach it one at a time, in the order they were
// committed.
func TestEndpointRecoverFIFO(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := rpyNewReceiver(t)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	appPath := "/v1/apps/" + appID
	ep := h.mustCreate(appPath+"/endpoints", map[string]any{"url": recv.URL, "ordering": "fifo", "disabled": true})
	epPath := appPath + "/endpoints/" + ep.ID
	since := time.Now().Add(-time.Minute)
	const events = 12
	for n := range events {
		rpyPublish(h, appPath, "order.paid", n)
	}
	rpyFannedOut(t, h, appID)
	if code := h.do(http.MethodPost, epPath+"/enable", map[string]any{}, nil); code != http.StatusOK {
		t.Fatalf("enable = %d", code)
	}
	job := rpyRecover(t, h, epPath, map[string]any{"since": since, "rate": 50})
	if job.Recovered != events {
		t.Errorf("recovery = %+v, want %d recovered", job, events)
	}
	waitFor(t, "every event", func() bool { return len(recv.received()) == events })
	time.Sleep(200 * time.Millisecond)
	want := make([]int, events)
	for i := range want {
		want[i] = i
	}
	if got := recv.received(); !slices.Equal(got, want) {
		t.Errorf("FIFO endpoint received %v, want %v in order", got, want)
	}
}

// TestReplaysBoundedPerApp: an app has at most 4 bulk retries and
// recoveries running at once; the fifth is a 409 that records nothing,
// while another app and the admin's retries of every app are not held
// back.
func TestReplaysBoundedPerApp(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	other := h.mustCreate("/v1/apps", map[string]any{"name": "other"}).ID
	ep := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": "http://127.0.0.1:9/"}).ID
	otherEP := h.mustCreate("/v1/apps/"+other+"/endpoints", map[string]any{"url": "http://127.0.0.1:9/"}).ID
	// Paced jobs over an hour of events, still running when the fifth
	// comes; recorded directly so that no worker finishes them first.
	if _, err := h.db.ExecContext(t.Context(), `INSERT INTO endpoint_recoveries (id, app_id, endpoint_id, since, until, status)
		SELECT 'rcv_held' || i, ?, ?, now() - interval '1 hour', now(), 'running' FROM generate_series(1, 3) AS i`, appID, ep); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.ExecContext(t.Context(), `INSERT INTO dead_letter_retries (id, filter, status, cutoff)
		VALUES ('dlr_held', jsonb_build_object('app_id', ?::text), 'running', now())`, appID); err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-time.Hour)
	recoverPath := func(app, ep string) string { return "/v1/apps/" + app + "/endpoints/" + ep + "/recover" }
	var p map[string]any
	if code := h.do(http.MethodPost, recoverPath(appID, ep), map[string]any{"since": since}, &p); code != http.StatusConflict {
		t.Errorf("a fifth recovery = %d %v, want 409", code, p)
	}
	if code := h.do(http.MethodPost, "/v1/dead-letters/retry", map[string]any{"app_id": appID}, &p); code != http.StatusConflict {
		t.Errorf("a fifth bulk retry = %d %v, want 409", code, p)
	}
	if n := h.count(`SELECT count(*) FROM endpoint_recoveries WHERE app_id = ?`, appID) + h.count(`SELECT count(*) FROM dead_letter_retries`); n != 4 {
		t.Errorf("%d jobs recorded, want the 4 held", n)
	}
	if code := h.do(http.MethodPost, recoverPath(other, otherEP), map[string]any{"since": since}, nil); code != http.StatusAccepted {
		t.Errorf("another app's recovery = %d, want 202", code)
	}
	if code := h.do(http.MethodPost, "/v1/dead-letters/retry", map[string]any{}, nil); code != http.StatusAccepted {
		t.Errorf("the admin's bulk retry of every app = %d, want 202", code)
	}
}
