package tasks

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/hookd/hookd/outbox/groupcommit"
	"github.com/hookd/hookd/tasks/body"
	"github.com/hookd/hookd/tasks/guard"
	"github.com/hookd/hookd/tasks/signature"
)

// Endpoint is what the deliverer needs to know of an endpoint.
type Endpoint struct {
	ID    string
	AppID string
	URL   string
	// Headers are sent with every delivery, before hookd's own.
	Headers map[string]string
	// Keys sign each delivery; more than one while a secret is rotated.
	Keys     [][]byte
	Disabled bool
	// RateLimit caps deliveries per second to the endpoint (0: none).
	RateLimit int
	// Failing tells that the endpoint's failing streak runs: a success
	// must end it (EndpointHealth.Succeeded).
	Failing bool
}

// EndpointHealth hears the outcome of every attempt: it disables endpoints
// that answer 410 Gone or that fail for too long.
type EndpointHealth interface {
	// Succeeded ends the endpoint's failing streak.
	Succeeded(ctx context.Context, endpointID string) error
	// Failed extends the streak (gone: the endpoint answered 410) and
	// reports whether the endpoint is now disabled.
	Failed(ctx context.Context, endpointID string, gone bool, reason string) (disabled bool, err error)
}

// ErrEndpointGone is returned by an EndpointFunc for an endpoint that no
// longer exists.
var ErrEndpointGone = errors.New("endpoint gone")

// EndpointFunc returns an endpoint by ID, or an error wrapping
// ErrEndpointGone.
type EndpointFunc func(ctx context.Context, id string) (Endpoint, error)

// DelivererConfig tunes a Deliverer. Zero values take the defaults.
type DelivererConfig struct {
	// Timeout bounds a whole attempt, body included (default 15s).
	Timeout time.Duration
	// ConnectTimeout bounds the TCP connect (default 5s).
	ConnectTimeout time.Duration
	// TLSTimeout bounds the TLS handshake (default 5s).
	TLSTimeout time.Duration
	// HeaderTimeout bounds the wait for response headers once the request
	// is sent (default Timeout).
	HeaderTimeout time.Duration
	// MaxRetryAfter caps the wait a receiver can ask for with Retry-After
	// on a 429 or 503 (default 1h).
	MaxRetryAfter time.Duration
	// AllowPrivateTargets lets deliveries reach loopback, private and
	// link-local addresses (for tests and local development).
	AllowPrivateTargets bool
	// UserAgent is sent with every request (default "hookd").
	UserAgent string
	// FirstAttempts is how many first attempts the fan-outs of this
	// process make at once (default DefaultFirstAttempts; negative: none,
	// every delivery is a task).
	FirstAttempts int
}

// responseBodyLimit is how much of a response body an attempt records;
// drainLimit is how much more is read, so the connection can be reused.
const (
	responseBodyLimit = 4 << 10
	drainLimit        = 64 << 10
)

// Deliverer handles TypeDeliver tasks: it signs the webhook, POSTs it and
// records the attempt. A delivery already succeeded is skipped.
type Deliverer struct {
	db       *bun.DB
	records  *groupcommit.Batcher[recording]
	endpoint EndpointFunc
	health   EndpointHealth
	limiter  *guard.RateLimiter
	gate     *guard.Gate
	queue    *Queue
	bodies   *body.Cache
	firsts   chan struct{} // a token per first attempt in flight
	retry    RetryPolicy
	client   *http.Client
	cfg      DelivererConfig
	log      *slog.Logger
	metrics  *Metrics
}

// DelivererDeps are what a Deliverer works with besides Postgres.
type DelivererDeps struct {
	Endpoint EndpointFunc
	Health   EndpointHealth
	Limiter  *guard.RateLimiter
	// Gate admits deliveries (circuits, in-flight slots, waiting rooms).
	Gate *guard.Gate
	// Queue makes the waiters the gate wakes due.
	Queue *Queue
	// Bodies serves each event's webhook body.
	Bodies *body.Cache
	// Retry is the policy the delivery tasks were enqueued with; it tells
	// the last try.
	Retry   RetryPolicy
	Metrics *Metrics
}

// NewDeliverer returns a delivery handler with its own HTTP client.
func NewDeliverer(db *bun.DB, deps DelivererDeps, log *slog.Logger, cfg DelivererConfig) *Deliverer {
	cfg.Timeout = cmp.Or(cfg.Timeout, 15*time.Second)
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, 5*time.Second)
	cfg.TLSTimeout = cmp.Or(cfg.TLSTimeout, 5*time.Second)
	cfg.HeaderTimeout = cmp.Or(cfg.HeaderTimeout, cfg.Timeout)
	cfg.MaxRetryAfter = cmp.Or(cfg.MaxRetryAfter, time.Hour)
	cfg.UserAgent = cmp.Or(cfg.UserAgent, "hookd")
	cfg.FirstAttempts = max(cmp.Or(cfg.FirstAttempts, DefaultFirstAttempts), 0)
	transport := &http.Transport{
		Proxy:                 nil, // a proxy would bypass the target guard
		DialContext:           guardedDialer(cfg.ConnectTimeout, cfg.AllowPrivateTargets).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   cfg.TLSTimeout,
		ResponseHeaderTimeout: cfg.HeaderTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1000,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
	}
	client := &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // redirects are failures, never followed
		},
	}
	d := &Deliverer{
		db: db, endpoint: deps.Endpoint, health: deps.Health, limiter: deps.Limiter, gate: deps.Gate, queue: deps.Queue, bodies: deps.Bodies,
		retry: deps.Retry.withDefaults(), client: client, cfg: cfg, metrics: deps.Metrics, log: log,
		firsts: make(chan struct{}, cfg.FirstAttempts),
	}
	// Attempts record in batches of up to 256 (a flush taking longer than
	// 30s fails, and its deliveries are retried).
	d.records = groupcommit.New(256, 30*time.Second, d.recordAll)
	return d
}

// ProcessTask implements asynq.Handler.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p DeliverPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode delivery payload: %w: %w", err, asynq.SkipRetry)
	}
	if done, err := d.alreadyDone(ctx, p); done || err != nil {
		return err
	}

	ep, err := d.endpoint(ctx, p.EndpointID)
	switch {
	case errors.Is(err, ErrEndpointGone):
		// Deleting an endpoint deletes its deliveries: nothing is owed to
		// anyone, and no dead letter is kept. A row a racing fan-out wrote
		// meanwhile is closed, not left pending.
		d.log.InfoContext(ctx, "delivery dropped: its endpoint is gone", slog.String("delivery_id", p.DeliveryID))
		if err := markFailed(ctx, d.db, p.DeliveryID, "endpoint deleted"); err != nil {
			return err
		}
		d.finished(ctx, p)
		return nil
	case err != nil:
		return fmt.Errorf("read endpoint %s: %w", p.EndpointID, err)
	case ep.Disabled:
		return d.fail(ctx, p, "endpoint disabled")
	case len(ep.Keys) == 0:
		return fmt.Errorf("deliver %s: endpoint %s has no live signing secret", p.DeliveryID, ep.ID) // never send unsigned
	}
	webhook, err := d.bodies.Get(ctx, p.EventID)
	switch {
	case errors.Is(err, body.ErrEventGone):
		return d.fail(ctx, p, "event deleted")
	case err != nil:
		return err
	}

	// Postpone, without spending a retry, what the endpoint's rate limit,
	// its circuit or the in-flight caps of the endpoint and its app do not
	// let through now.
	if wait, err := d.admit(ctx, ep, p.DeliveryID); err != nil {
		return err
	} else if wait > 0 {
		d.metrics.attempts.WithLabelValues(OutcomeRateLimited).Inc()
		return &deferral{outcome: OutcomeRateLimited, wait: wait}
	}
	queue, _ := asynq.GetQueueName(ctx)
	ticket := guard.Ticket{AppID: ep.AppID, EndpointID: ep.ID, DeliveryID: p.DeliveryID, Queue: queue}
	v, err := d.enter(ctx, ticket)
	if err != nil {
		return err
	}
	if v.Wait > 0 {
		d.metrics.attempts.WithLabelValues(v.Reason).Inc()
		return &deferral{outcome: v.Reason, wait: v.Wait}
	}
	// The slots are given back, the circuit told the outcome, the backlogs
	// updated and the next waiter woken in one round trip, on every way
	// out.
	var outcome guard.Outcome
	defer func() { d.settle(context.WithoutCancel(ctx), ticket, outcome) }()
	r, err := d.attempt(ctx, ep, p, webhook, d.isLastTry(ctx, p), &outcome)
	if err != nil {
		return err
	}
	switch {
	case r.next == StatusSucceeded:
		return nil
	case r.next == StatusFailed:
		return fmt.Errorf("deliver %s to %s: %s: %w", p.DeliveryID, ep.ID, describe(r.a), asynq.SkipRetry)
	}
	err = fmt.Errorf("deliver %s to %s: %s", p.DeliveryID, ep.ID, describe(r.a))
	if r.asked {
		return &retryAfterError{wait: r.retryAfter, err: err}
	}
	return err
}

// result is what an attempt made of its delivery.
type result struct {
	a *Attempt
	// next is the delivery's status after the attempt.
	next string
	// retryAfter is the wait a 429 or 503 asked for with Retry-After,
	// when it did (asked).
	retryAfter time.Duration
	asked      bool
}

// attempt sends an admitted delivery, lets the endpoint's health follow,
// records the attempt and moves the delivery on; lastTry fails it for good
// on a failure. It fills in o for the gate as it goes.
func (d *Deliverer) attempt(ctx context.Context, ep Endpoint, p DeliverPayload, webhook []byte, lastTry bool, o *guard.Outcome) (result, error) {
	a, resp := d.send(ctx, ep, p, webhook)
	o.Sent = true
	d.metrics.attempts.WithLabelValues(a.ErrorClass).Inc()
	d.metrics.attemptDuration.WithLabelValues(a.ErrorClass).Observe(a.DurationMS / 1000)
	ok := a.ErrorClass == OutcomeSuccess
	o.OK = ok
	gone := a.StatusCode != nil && *a.StatusCode == http.StatusGone

	// The endpoint's health follows every attempt but may not lose the
	// attempt itself, so its errors are only logged.
	var (
		disabled  bool
		healthErr error
	)
	switch {
	case ok && ep.Failing:
		healthErr = d.health.Succeeded(ctx, ep.ID)
	case !ok:
		disabled, healthErr = d.health.Failed(ctx, ep.ID, gone, describe(a))
	}
	if healthErr != nil {
		d.log.WarnContext(ctx, "endpoint health not updated", slog.String("endpoint_id", ep.ID), slog.Any("err", healthErr))
	}

	r := result{a: a, next: StatusPending}
	switch {
	case ok:
		r.next = StatusSucceeded
	case gone, disabled, lastTry:
		r.next = StatusFailed
	}
	if err := d.record(ctx, a, r.next); err != nil {
		return result{}, err
	}
	o.Finished = r.next != StatusPending
	if ok && !p.CreatedAt.IsZero() {
		d.metrics.latency.Observe(time.Since(p.CreatedAt).Seconds())
	}
	if disabled {
		reason := "failing"
		if gone {
			reason = "gone"
		}
		d.metrics.disabled.WithLabelValues(reason).Inc()
	}
	if r.next == StatusPending && resp != nil && (*a.StatusCode == http.StatusTooManyRequests || *a.StatusCode == http.StatusServiceUnavailable) {
		r.retryAfter, r.asked = retryAfter(resp.Header, time.Now(), d.cfg.MaxRetryAfter)
	}
	return r, nil
}

// alreadyDone reports whether a delivery needs no attempt: it succeeded
// already, or its row is gone with its endpoint or app. Only a task run
// again can find it so (a retry, a task recovered from a dead worker, a
// dead letter run from Asynqmon), so a first run skips the query: a fresh
// delivery task is enqueued only for a pending row.
func (d *Deliverer) alreadyDone(ctx context.Context, p DeliverPayload) (bool, error) {
	if n, _ := asynq.GetRetryCount(ctx); n == 0 {
		return false, nil
	}
	var status string
	err := d.db.NewSelect().Model((*Delivery)(nil)).Column("status").Where("id = ?", p.DeliveryID).Scan(ctx, &status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Its endpoint or app was deleted: nothing is owed to anyone.
		d.log.InfoContext(ctx, "delivery dropped: its row is gone", slog.String("delivery_id", p.DeliveryID))
		d.finished(ctx, p)
		return true, nil
	case err != nil:
		return false, fmt.Errorf("read delivery %s: %w", p.DeliveryID, err)
	}
	return status == StatusSucceeded, nil
}

// settle tells the gate what became of an admitted delivery and makes
// the waiter it woke, if any, due. Errors are logged: none of them may lose
// the attempt.
func (d *Deliverer) settle(ctx context.Context, t guard.Ticket, o guard.Outcome) {
	w, err := d.gate.Leave(ctx, t, o)
	if err != nil {
		d.log.WarnContext(ctx, "endpoint slots, circuit or backlog not updated", slog.String("endpoint_id", t.EndpointID), slog.Any("err", err))
		return
	}
	d.wake(ctx, w)
}

// enter asks the gate to admit t. Slots a wake held for t, which it may
// not use now, go to the next waiter.
func (d *Deliverer) enter(ctx context.Context, t guard.Ticket) (guard.Verdict, error) {
	v, err := d.gate.Enter(ctx, t)
	if err == nil && v.Released {
		d.forgo(ctx, t.Waiter())
	}
	return v, err
}

// forgo gives up the slots held for w and wakes the next waiter instead.
func (d *Deliverer) forgo(ctx context.Context, w guard.Waiter) {
	next, err := d.gate.Forgo(context.WithoutCancel(ctx), w)
	if err != nil {
		d.log.WarnContext(ctx, "held slots not given up", slog.String("endpoint_id", w.EndpointID), slog.Any("err", err))
		return
	}
	d.wake(ctx, next)
}

// maxWakes bounds how many waiters one settle tries to wake: a waiter
// whose task is gone hands its slots on to the next.
const maxWakes = 4

// wake makes the postponed task of w, which the gate woke, due now. A
// waiter whose task is gone or done gives its slots to the next; one whose
// task runs keeps them (it holds them already, or will find them when it
// asks the gate). A waiter left unwoken comes back by itself when its
// postponement ends.
func (d *Deliverer) wake(ctx context.Context, w *guard.Waiter) {
	ctx = context.WithoutCancel(ctx)
	for range maxWakes {
		if w == nil {
			return
		}
		state, err := d.queue.wake(ctx, w.Queue, w.DeliveryID)
		if err != nil {
			// Its slots lapse, and it comes back when its postponement ends.
			d.log.WarnContext(ctx, "waiting delivery not woken", slog.String("delivery_id", w.DeliveryID), slog.Any("err", err))
			return
		}
		switch state {
		case woken:
			d.metrics.woken.Inc()
			return
		case running:
			return
		}
		next, err := d.gate.Forgo(ctx, *w)
		if err != nil {
			d.log.WarnContext(ctx, "held slots not given up", slog.String("endpoint_id", w.EndpointID), slog.Any("err", err))
			return
		}
		w = next
	}
}

// maxRateHold is the longest a worker waits in place for a delivery's
// rate-limit slot. asynq schedules retries to the whole second, so a
// delivery postponed by less comes back early, up to a second; waiting out
// the last moments here sends it on time, which keeps the rate even.
const maxRateHold = 250 * time.Millisecond

// admit asks the endpoint's rate limit for the delivery's slot. A slot at
// most maxRateHold away is waited for in place; otherwise it returns how
// long the delivery must be postponed.
func (d *Deliverer) admit(ctx context.Context, ep Endpoint, deliveryID string) (time.Duration, error) {
	wait, err := d.limiter.Allow(ctx, ep.ID, deliveryID, ep.RateLimit)
	if err != nil || wait == 0 || wait > maxRateHold {
		return wait, err
	}
	select {
	case <-time.After(wait):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return d.limiter.Allow(ctx, ep.ID, deliveryID, ep.RateLimit)
}

// finished takes a delivery that did not pass the gate off the backlogs.
func (d *Deliverer) finished(ctx context.Context, p DeliverPayload) {
	if err := d.gate.Finished(context.WithoutCancel(ctx), p.AppID, p.EndpointID); err != nil {
		d.log.WarnContext(ctx, "backlog not updated", slog.String("endpoint_id", p.EndpointID), slog.Any("err", err))
	}
}

// isLastTry reports whether the running delivery has no retries left. The
// policy, not the task's MaxRetry, decides: tasks carry spare retries so
// that postponing the last try does not archive it. Tries made before the
// task (the fan-out's first attempt) count.
func (d *Deliverer) isLastTry(ctx context.Context, p DeliverPayload) bool {
	n, ok := asynq.GetRetryCount(ctx)
	return ok && n+p.Attempts >= d.retry.MaxRetry()
}

// send makes one signed POST and returns the attempt, classified but not
// yet stored, and the response (its body already closed) if there was one.
func (d *Deliverer) send(ctx context.Context, ep Endpoint, p DeliverPayload, webhook []byte) (*Attempt, *http.Response) {
	start := time.Now()
	a := &Attempt{DeliveryID: p.DeliveryID, AttemptedAt: start}
	defer func() { a.DurationMS = float64(time.Since(start).Microseconds()) / 1000 }()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(webhook))
	if err != nil {
		a.Error, a.ErrorClass = ptr(fmt.Sprintf("build request: %v", err)), OutcomeError
		return a, nil
	}
	for name, value := range ep.Headers {
		req.Header.Set(name, value)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.cfg.UserAgent)
	req.Header.Set(signature.HeaderID, p.EventID)
	req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(start.Unix(), 10))
	req.Header.Set(signature.HeaderSignature, signature.Header(ep.Keys, p.EventID, start, webhook))

	resp, err := d.client.Do(req)
	if err != nil {
		a.ErrorClass = classify(0, err)
		// Drop the *url.Error wrapper: the endpoint URL can itself be a
		// credential (chat webhooks), so it stays out of logs and attempts.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		a.Error = ptr(err.Error())
		return a, nil
	}
	defer resp.Body.Close()
	a.StatusCode = &resp.StatusCode
	a.ErrorClass = classify(resp.StatusCode, nil)
	// Record the start of the body and drain a little more so that the
	// connection can be reused; the rest is never read: closing the body
	// drops the connection. The client's timeout bounds the reads.
	body, err := io.ReadAll(io.LimitReader(resp.Body, responseBodyLimit))
	if err == nil {
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	}
	if len(body) > 0 {
		a.ResponseBody = ptr(validUTF8(body))
	}
	if err != nil && a.ErrorClass == OutcomeSuccess && isTimeout(err) {
		// A 2xx whose body trickled past the timeout still reached the
		// receiver: it counts, but the attempt says what happened.
		a.Error = ptr("reading the response body: " + err.Error())
	}
	return a, resp
}

// record stores an attempt and moves the delivery to status. Concurrent
// deliveries record together, in one statement and one commit (see
// recordAll).
func (d *Deliverer) record(ctx context.Context, a *Attempt, status string) error {
	lastErr := a.Error
	if lastErr == nil && status != StatusSucceeded {
		lastErr = ptr(describe(a))
	}
	if err := d.records.Do(ctx, recording{a, status, lastErr}); err != nil {
		return fmt.Errorf("record attempt of %s: %w", a.DeliveryID, err)
	}
	return nil
}

// recording is an attempt and what it makes of its delivery.
type recording struct {
	attempt *Attempt
	status  string
	lastErr *string
}

// recordAll stores attempts and moves their deliveries on, in one
// statement: every attempt is inserted and its delivery updated, or none.
// Succeeded deliveries get succeeded_at; failed ones failed_at, which
// anything else clears (a dead letter run again from Asynqmon).
func (d *Deliverer) recordAll(ctx context.Context, rs []recording) error {
	var (
		ids, classes, statuses []string
		at                     []time.Time
		ms                     []float64
		codes                  []*int
		bodies, errs, lastErrs []*string
	)
	for _, r := range rs {
		a := r.attempt
		ids, at, ms = append(ids, a.DeliveryID), append(at, a.AttemptedAt), append(ms, a.DurationMS)
		codes, bodies, errs = append(codes, a.StatusCode), append(bodies, a.ResponseBody), append(errs, a.Error)
		classes, statuses, lastErrs = append(classes, a.ErrorClass), append(statuses, r.status), append(lastErrs, r.lastErr)
	}
	_, err := d.db.NewRaw(`WITH v AS (
			SELECT * FROM unnest(?::text[], ?::timestamptz[], ?::float8[], ?::int[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])
			AS v(delivery_id, attempted_at, duration_ms, status_code, response_body, error, error_class, status, last_error)
		), attempts AS (
			INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code, response_body, error, error_class)
			SELECT delivery_id, attempted_at, duration_ms, status_code, response_body, error, error_class FROM v
		)
		UPDATE deliveries AS d SET
			status = v.status,
			attempts = d.attempts + 1,
			last_status_code = v.status_code,
			last_error = v.last_error,
			updated_at = clock_timestamp(),
			succeeded_at = CASE WHEN v.status = ? THEN clock_timestamp() ELSE d.succeeded_at END,
			failed_at = CASE WHEN v.status = ? THEN clock_timestamp() END
		FROM v WHERE d.id = v.delivery_id`,
		pgdialect.Array(ids), pgdialect.Array(at), pgdialect.Array(ms), pgdialect.Array(codes),
		pgdialect.Array(bodies), pgdialect.Array(errs), pgdialect.Array(classes), pgdialect.Array(statuses),
		pgdialect.Array(lastErrs), StatusSucceeded, StatusFailed,
	).Exec(ctx)
	return err
}

// fail marks a delivery failed without an attempt, for a reason that no
// retry can change.
func (d *Deliverer) fail(ctx context.Context, p DeliverPayload, reason string) error {
	if err := markFailed(ctx, d.db, p.DeliveryID, reason); err != nil {
		return err
	}
	d.finished(ctx, p)
	return fmt.Errorf("deliver %s: %s: %w", p.DeliveryID, reason, asynq.SkipRetry)
}

// markFailed moves a pending delivery to failed. It changes nothing for a
// delivery already failed or succeeded.
func markFailed(ctx context.Context, db bun.IDB, deliveryID, reason string) error {
	_, err := db.NewUpdate().Model((*Delivery)(nil)).
		Set("status = ?", StatusFailed).
		Set("last_error = ?", reason).
		Set("updated_at = clock_timestamp()").
		Set("failed_at = clock_timestamp()").
		Where("id = ?", deliveryID).
		Where("status = ?", StatusPending).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("mark delivery %s failed: %w", deliveryID, err)
	}
	return nil
}

// deadLettered mirrors in Postgres a delivery task that asynq is about to
// archive, whatever made its last try fail (even a failure to read or write
// Postgres inside the handler), and counts it.
func (d *Deliverer) deadLettered(ctx context.Context, t *asynq.Task, cause error) error {
	d.metrics.deadLetters.Inc()
	var p DeliverPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode delivery payload: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return markFailed(ctx, d.db, p.DeliveryID, cause.Error())
}

func describe(a *Attempt) string {
	if a.Error != nil {
		return *a.Error
	}
	if a.StatusCode != nil {
		return "HTTP " + strconv.Itoa(*a.StatusCode)
	}
	return "no response"
}

// validUTF8 makes a response body storable as Postgres text: valid UTF-8
// without NUL bytes.
func validUTF8(b []byte) string {
	b = bytes.ReplaceAll(b, []byte{0}, nil)
	if !utf8.Valid(b) {
		b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }
