package app_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"database/sql"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/app/api/openapitest"
	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/outbox/outboxtest"
)

const adminKey = "test-admin-key-0123456789"

// redisDB is this package's own logical Redis database.
const redisDB = 2

func testRedisURL(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(cmp.Or(os.Getenv("HOOKD_TEST_REDIS_URL"), "redis://127.0.0.1:6379"))
	if err != nil {
		t.Fatalf("HOOKD_TEST_REDIS_URL: %v", err)
	}
	u.Path = fmt.Sprintf("/%d", redisDB)
	return u.String()
}

// harness is a running hookd (all roles, in process) on an isolated schema
// and its own queues.
type harness struct {
	t      *testing.T
	base   string
	db     *bun.DB
	rdb    *redis.Client
	queues []string
	// client and noRedir check every response against the OpenAPI
	// document hookd serves.
	client  *http.Client
	noRedir *http.Client
	doc     *openapitest.Doc
	// metrics gathers what hookd's /metrics serves.
	metrics prometheus.Gatherer
	// metricsBase is the base URL of the metrics listener.
	metricsBase string
	// logs holds what hookd logged (warnings and errors).
	logs *logBuffer
}

// logBuffer keeps what hookd logs, for tests that wait for a log line.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// contains reports whether a logged line contains s.
func (l *logBuffer) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.b.String(), s)
}

// start runs hookd with test defaults; env overrides HOOKD_* variables.
func start(t *testing.T, env map[string]string) *harness {
	t.Helper()
	dbURL := outboxtest.SchemaURL(t)
	vars := map[string]string{
		"HOOKD_DATABASE_URL":          dbURL,
		"HOOKD_REDIS_URL":             testRedisURL(t),
		"HOOKD_HTTP_ADDR":             "127.0.0.1:0",
		"HOOKD_METRICS_ADDR":          "127.0.0.1:0",
		"HOOKD_ADMIN_API_KEY":         adminKey,
		"HOOKD_ALLOW_PRIVATE_TARGETS": "true",
		"HOOKD_RETRY_SCHEDULE":        "10ms,10ms",
		"HOOKD_DELIVERY_TIMEOUT":      "5s",
		"HOOKD_SHUTDOWN_TIMEOUT":      "5s",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := app.ParseConfig(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	// Queues of their own: tests share one Redis database.
	prefix := "test-" + rand.Text()[:12]
	cfg.Queue.Events = prefix + ":events"
	cfg.Queue.Deliveries = prefix + ":deliveries"

	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), logs), &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(t.Context(), cfg, log)
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(cfg.DatabaseURL)))
	h := &harness{
		t:      t,
		base:   "http://" + a.HTTPAddr(),
		db:     bun.NewDB(sqldb, pgdialect.New()),
		rdb:    redis.NewClient(mustParseRedis(t, cfg.Redis.URL)),
		queues: []string{cfg.Queue.Events, cfg.Queue.Deliveries, cfg.Queue.Deliveries + "_overflow"},
		logs:   logs,
	}
	h.metrics = a.Gatherer()
	h.metricsBase = "http://" + a.MetricsAddr()
	h.doc = loadDoc(t, h.base)
	h.client = &http.Client{Transport: h.doc.Transport(t, nil, nil)}
	h.noRedir = &http.Client{
		Transport: h.client.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app.Run: %v", err)
		}
		ins := asynq.NewInspectorFromRedisClient(h.rdb)
		for _, q := range h.queues {
			_ = ins.DeleteQueue(q, true)
		}
		_ = h.rdb.Close()
		_ = h.db.Close()
	})
	return h
}

// loadDoc fetches and compiles the OpenAPI document hookd serves.
func loadDoc(t *testing.T, base string) *openapitest.Doc {
	t.Helper()
	resp, err := http.Get(base + "/openapi.json")
	if err != nil {
		t.Fatalf("GET /openapi.json: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json = %d, %v", resp.StatusCode, err)
	}
	doc, err := openapitest.Load(b)
	if err != nil {
		t.Fatalf("load OpenAPI document: %v", err)
	}
	return doc
}

func mustParseRedis(t *testing.T, u string) *redis.Options {
	t.Helper()
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

// do sends a request to hookd with the admin key and decodes the JSON
// response into out (when not nil), returning the status code.
func (h *harness) do(method, path string, body any, out any) int {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			h.t.Fatalf("%s %s: decode response: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

type created struct {
	ID     string `json:"id"`
	Code   string `json:"code"`
	Secret string `json:"secret"`
}

// mustCreate POSTs body to path and fails unless hookd answers 201.
func (h *harness) mustCreate(path string, body any) created {
	h.t.Helper()
	var c created
	if code := h.do(http.MethodPost, path, body, &c); code != http.StatusCreated {
		h.t.Fatalf("POST %s = %d, want 201", path, code)
	}
	return c
}

// click follows a short link without following the redirect.
func (h *harness) click(code string) *http.Response {
	h.t.Helper()
	req, _ := http.NewRequestWithContext(h.t.Context(), http.MethodGet, h.base+"/r/"+code, nil)
	req.Header.Set("User-Agent", "e2e-browser/1.0")
	req.Header.Set("Referer", "https://news.example/item")
	resp, err := h.noRedir.Do(req)
	if err != nil {
		h.t.Fatalf("GET /r/%s: %v", code, err)
	}
	_ = resp.Body.Close()
	return resp
}

// count runs a COUNT(*) query on the app's schema.
func (h *harness) count(query string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.db.NewRaw(query, args...).Scan(h.t.Context(), &n); err != nil {
		h.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// receiver is a local webhook endpoint that records what it receives.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
	status   func(n int) int // status for the n-th request (from 0)
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	t.Helper()
	r := &receiver{status: status}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		n := len(r.requests)
		r.requests = append(r.requests, received{header: req.Header.Clone(), body: body})
		r.mu.Unlock()
		code := http.StatusNoContent
		if r.status != nil {
			code = r.status(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.requests...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type webhookBody struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      struct {
		LinkID    string    `json:"link_id"`
		Code      string    `json:"code"`
		URL       string    `json:"url"`
		ClickedAt time.Time `json:"clicked_at"`
		UserAgent string    `json:"user_agent"`
		Referer   string    `json:"referer"`
	} `json:"data"`
}

func TestClicksBecomeSignedWebhooks(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, nil)
	other := newReceiver(t, nil)

	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	ep := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{
		"url": recv.URL + "/hook", "event_types": []string{"link.clicked"},
	})
	if !strings.HasPrefix(ep.Secret, "whsec_") {
		t.Fatalf("endpoint secret = %q, want whsec_...", ep.Secret)
	}
	// Subscribed to another type only: must receive nothing.
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{
		"url": other.URL, "event_types": []string{"invoice.paid"},
	})
	link := h.mustCreate("/v1/apps/"+appID+"/links", map[string]any{"url": "https://example.com/landing"})
	if link.Code == "" {
		t.Fatal("link has no code")
	}

	const clicks = 5
	for range clicks {
		resp := h.click(link.Code)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://example.com/landing" {
			t.Fatalf("click = %d to %q, want 302 to the link URL", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	waitFor(t, "webhooks", func() bool { return len(recv.got()) >= clicks })
	// hookd records a delivery after the receiver's answer.
	waitFor(t, "the deliveries recorded", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE status = 'succeeded'`) == clicks
	})
	// Allow duplicates a moment to show up if there were any.
	time.Sleep(100 * time.Millisecond)

	wh, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range recv.got() {
		if err := wh.Verify(r.body, r.header); err != nil {
			t.Errorf("signature rejected by the reference verifier: %v", err)
		}
		id := r.header.Get("webhook-id")
		if ids[id] {
			t.Errorf("webhook-id %s received twice", id)
		}
		ids[id] = true
		var b webhookBody
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatalf("body %s: %v", r.body, err)
		}
		if b.Type != "link.clicked" || b.Timestamp.IsZero() || b.Data.LinkID != link.ID ||
			b.Data.Code != link.Code || b.Data.URL != "https://example.com/landing" || b.Data.ClickedAt.IsZero() ||
			b.Data.UserAgent != "e2e-browser/1.0" || b.Data.Referer != "https://news.example/item" {
			t.Errorf("unexpected webhook body %s", r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
	}
	if len(ids) != clicks {
		t.Errorf("received %d distinct webhooks, want %d", len(ids), clicks)
	}
	if n := len(other.got()); n != 0 {
		t.Errorf("endpoint subscribed to another type received %d webhooks", n)
	}
	if n := h.count(`SELECT count(*) FROM clicks`); n != clicks {
		t.Errorf("%d clicks stored, want %d", n, clicks)
	}
	if n := h.count(`SELECT count(*) FROM deliveries WHERE status = 'succeeded' AND attempts = 1`); n != clicks {
		t.Errorf("%d deliveries succeeded at the first attempt, want %d", n, clicks)
	}
}

func TestRetryReusesWebhookID(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, func(n int) int {
		if n == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	ep := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})
	link := h.mustCreate("/v1/apps/"+appID+"/links", map[string]any{"url": "https://example.com", "code": "retry-me"})
	if link.Code != "retry-me" {
		t.Fatalf("link code = %q, want the requested one", link.Code)
	}
	h.click(link.Code)

	waitFor(t, "the retry", func() bool { return len(recv.got()) >= 2 })
	waitFor(t, "the delivery to succeed", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE status = 'succeeded'`) == 1
	})
	got := recv.got()
	if a, b := got[0].header.Get("webhook-id"), got[1].header.Get("webhook-id"); a == "" || a != b {
		t.Errorf("retry webhook-id = %q, first = %q; want the same", b, a)
	}
	if !bytes.Equal(got[0].body, got[1].body) {
		t.Errorf("retry body differs:\n%s\n%s", got[0].body, got[1].body)
	}
	wh, _ := standardwebhooks.NewWebhook(ep.Secret)
	for _, r := range got {
		if err := wh.Verify(r.body, r.header); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	if n := h.count(`SELECT count(*) FROM delivery_attempts`); n != 2 {
		t.Errorf("%d attempts recorded, want 2", n)
	}
	if n := h.count(`SELECT count(*) FROM delivery_attempts WHERE status_code = 500`); n != 1 {
		t.Errorf("%d attempts recorded with status 500, want 1", n)
	}
}

func TestExhaustedDeliveryBecomesDeadLetter(t *testing.T) {
	t.Parallel()
	h := start(t, nil) // two retries, 10ms apart
	recv := newReceiver(t, func(int) int { return http.StatusBadGateway })
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})
	link := h.mustCreate("/v1/apps/"+appID+"/links", map[string]any{"url": "https://example.com"})
	h.click(link.Code)

	waitFor(t, "the delivery to fail", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE status = 'failed' AND attempts = 3 AND last_status_code = 502`) == 1
	})
	ins := asynq.NewInspectorFromRedisClient(h.rdb)
	waitFor(t, "the archived task", func() bool {
		archived, err := ins.ListArchivedTasks(h.queues[1])
		return err == nil && len(archived) == 1
	})
	if n := len(recv.got()); n != 3 {
		t.Errorf("receiver got %d requests, want 3 (1 + 2 retries)", n)
	}
}

func TestRolledBackEventIsNeverDelivered(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})

	publish := func(topic string, commit bool) {
		rollback := fmt.Errorf("rolled back on purpose")
		err := h.db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
			if err := outbox.Publish(ctx, tx, &outbox.Message{Tenant: appID, Topic: topic, Payload: []byte(`{}`)}); err != nil {
				return err
			}
			if !commit {
				return rollback
			}
			return nil
		})
		if commit && err != nil {
			t.Fatalf("publish %s: %v", topic, err)
		}
	}
	publish("test.rolled_back", false)
	publish("test.committed", true)

	waitFor(t, "the committed event", func() bool { return len(recv.got()) >= 1 })
	time.Sleep(200 * time.Millisecond) // time for a wrong delivery to arrive
	for _, r := range recv.got() {
		var b webhookBody
		_ = json.Unmarshal(r.body, &b)
		if b.Type != "test.committed" {
			t.Errorf("received %s, which was rolled back", b.Type)
		}
	}
	if n := h.count(`SELECT count(*) FROM outbox_events`); n != 1 {
		t.Errorf("%d events in the outbox, want 1", n)
	}
}

func TestUnknownCodeIs404AndPublishesNothing(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	resp := h.click("no-such-code")
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("GET /r/no-such-code = %d %s, want 404 problem+json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if n := h.count(`SELECT count(*) FROM outbox_events`); n != 0 {
		t.Errorf("%d events published for an unknown code", n)
	}
	if n := h.count(`SELECT count(*) FROM clicks`); n != 0 {
		t.Errorf("%d clicks stored for an unknown code", n)
	}
}

// TestDialTimeGuardRefusesPrivateTargets plants an endpoint whose URL points
// at loopback, as a DNS answer changed after creation would: with private
// targets disallowed, the deliverer must refuse to connect and record why.
func TestDialTimeGuardRefusesPrivateTargets(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_ALLOW_PRIVATE_TARGETS": "false"})
	recv := newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	itgPlantEndpoint(h, appID, recv.URL, nil)
	link := h.mustCreate("/v1/apps/"+appID+"/links", map[string]any{"url": "https://example.com"})
	h.click(link.Code)

	waitFor(t, "the refused attempts to dead-letter", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE status = 'failed'`) == 1
	})
	if n := h.count(`SELECT count(*) FROM delivery_attempts WHERE error LIKE 'target not allowed%' AND status_code IS NULL`); n != 3 {
		t.Errorf("%d attempts record the refusal, want 3", n)
	}
	if n := len(recv.got()); n != 0 {
		t.Errorf("the private receiver got %d requests", n)
	}
}

// TestHangingEndpointTimesOutAndRetries holds the first request past the
// delivery timeout: the attempt must end at the timeout and the retry
// succeed.
func TestHangingEndpointTimesOutAndRetries(t *testing.T) {
	t.Parallel()
	// 2s: the retry must beat the timeout on a loaded machine too.
	h := start(t, map[string]string{"HOOKD_DELIVERY_TIMEOUT": "2s"})
	release := make(chan struct{})
	recv := newReceiver(t, func(n int) int {
		if n == 0 {
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		return http.StatusOK
	})
	t.Cleanup(func() { close(release) }) // before the receiver's Close waits for it
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})
	link := h.mustCreate("/v1/apps/"+appID+"/links", map[string]any{"url": "https://example.com"})
	h.click(link.Code)

	waitFor(t, "the retry to succeed", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE status = 'succeeded' AND attempts = 2`) == 1
	})
	var first struct {
		DurationMS float64 `bun:"duration_ms"`
		Error      string  `bun:"error"`
	}
	if err := h.db.NewRaw(`SELECT duration_ms, error FROM delivery_attempts ORDER BY id LIMIT 1`).Scan(t.Context(), &first); err != nil {
		t.Fatal(err)
	}
	if first.Error == "" || first.DurationMS < 1900 || first.DurationMS > 4500 {
		t.Errorf("first attempt took %.0fms with error %q; want a timeout after about 2s", first.DurationMS, first.Error)
	}
}
