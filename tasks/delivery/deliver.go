// Package delivery makes deliveries: it signs an event's webhook, POSTs it
// to its endpoint within strict timeouts, records the attempt and moves the
// delivery on, through the gate (tasks/guard) that admits it. The
// Deliverer handles TypeDeliver tasks and makes the first attempt of fresh
// deliveries for the fan-out.
//
// It reads endpoints through the function types it declares (EndpointFunc,
// EndpointHealth) and never imports the app.
package delivery

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hookd/hookd/outbox/groupcommit"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/body"
	"github.com/hookd/hookd/tasks/guard"
	"github.com/hookd/hookd/tasks/ledger"
)

// Defaults of Config.
const (
	DefaultTimeout        = 15 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultTLSTimeout     = 5 * time.Second
	DefaultMaxRetryAfter  = time.Hour
	DefaultUserAgent      = "hookd"
	// DefaultFirstAttempts is how many first attempts the fan-outs of one
	// worker process make at once, besides the tasks it runs.
	DefaultFirstAttempts = 50
	// DefaultTLSClients is how many endpoints' own HTTP clients (mutual
	// TLS, CA bundle) a Deliverer keeps.
	DefaultTLSClients = 256
	// DefaultOAuthTokens is how many endpoints' OAuth tokens a Deliverer
	// keeps.
	DefaultOAuthTokens = 10_000
)

// Config tunes a Deliverer. Zero values take the defaults.
type Config struct {
	// Timeout bounds a whole attempt, body included (default
	// DefaultTimeout).
	Timeout time.Duration
	// ConnectTimeout bounds the TCP connect (default DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// TLSTimeout bounds the TLS handshake (default DefaultTLSTimeout).
	TLSTimeout time.Duration
	// HeaderTimeout bounds the wait for response headers once the request
	// is sent (default Timeout).
	HeaderTimeout time.Duration
	// MaxRetryAfter caps the wait a receiver can ask for with Retry-After
	// on a 429 or 503 (default DefaultMaxRetryAfter).
	MaxRetryAfter time.Duration
	// AllowPrivateTargets lets deliveries reach loopback, private and
	// link-local addresses (for tests and local development).
	AllowPrivateTargets bool
	// UserAgent is sent with every request (default DefaultUserAgent).
	UserAgent string
	// FirstAttempts is how many first attempts the fan-outs of this
	// process make at once (default DefaultFirstAttempts; negative: none,
	// every delivery is a task).
	FirstAttempts int
	// TLSClients is how many endpoints with TLS material of their own keep
	// their HTTP client (and its connections) at once, the least recently
	// used dropped first (default DefaultTLSClients).
	TLSClients int
	// OAuthTokens is how many endpoints with OAuth client credentials keep
	// their token at once (default DefaultOAuthTokens).
	OAuthTokens int
}

func (c Config) withDefaults() Config {
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, DefaultConnectTimeout)
	c.TLSTimeout = cmp.Or(c.TLSTimeout, DefaultTLSTimeout)
	c.HeaderTimeout = cmp.Or(c.HeaderTimeout, c.Timeout)
	c.MaxRetryAfter = cmp.Or(c.MaxRetryAfter, DefaultMaxRetryAfter)
	c.UserAgent = cmp.Or(c.UserAgent, DefaultUserAgent)
	c.FirstAttempts = max(cmp.Or(c.FirstAttempts, DefaultFirstAttempts), 0)
	c.TLSClients = max(cmp.Or(c.TLSClients, DefaultTLSClients), 1)
	c.OAuthTokens = max(cmp.Or(c.OAuthTokens, DefaultOAuthTokens), 1)
	return c
}

// Deps are what a Deliverer works with.
type Deps struct {
	// Ledger records attempts and moves deliveries on.
	Ledger   *ledger.Store
	Endpoint EndpointFunc
	Health   EndpointHealth
	Limiter  *guard.RateLimiter
	// Gate admits deliveries (circuits, in-flight slots, waiting rooms).
	Gate *guard.Gate
	// Queue makes the waiters the gate wakes due, and archives the dead
	// letters of first attempts.
	Queue *tasks.Queue
	// Bodies serves each event's webhook body.
	Bodies *body.Cache
	// Retry is the policy the delivery tasks were enqueued with; it tells
	// the last try.
	Retry   tasks.RetryPolicy
	Metrics *Metrics
}

// Deliverer handles TypeDeliver tasks: it signs the webhook, POSTs it and
// records the attempt. A delivery already succeeded is skipped.
type Deliverer struct {
	ledger   *ledger.Store
	records  *groupcommit.Batcher[ledger.Record]
	endpoint EndpointFunc
	health   EndpointHealth
	limiter  *guard.RateLimiter
	gate     *guard.Gate
	queue    *tasks.Queue
	bodies   *body.Cache
	firsts   chan struct{} // a token per first attempt in flight
	retry    tasks.RetryPolicy
	client   *http.Client
	// clients are the endpoints' own clients (ClientTLS), tokens their
	// OAuth tokens.
	clients *clients
	tokens  *tokens
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
}

// Recording batches: up to recordBatch attempts in one statement; a flush
// taking longer than recordTimeout fails, and its deliveries are retried.
const (
	recordBatch   = 256
	recordTimeout = 30 * time.Second
)

// New returns a delivery handler with its own HTTP client.
func New(deps Deps, log *slog.Logger, cfg Config) *Deliverer {
	cfg = cfg.withDefaults()
	client := newClient(cfg)
	d := &Deliverer{
		ledger: deps.Ledger, endpoint: deps.Endpoint, health: deps.Health, limiter: deps.Limiter, gate: deps.Gate,
		queue: deps.Queue, bodies: deps.Bodies, retry: deps.Retry, client: client, cfg: cfg,
		clients: newClients(client, cfg.TLSClients), tokens: newTokens(cfg.OAuthTokens),
		metrics: deps.Metrics, log: log, firsts: make(chan struct{}, cfg.FirstAttempts),
	}
	// Concurrent attempts record together, in one statement and one commit.
	d.records = groupcommit.New(recordBatch, recordTimeout, d.ledger.Record)
	return d
}

// ProcessTask implements asynq.Handler.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p tasks.DeliverPayload
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
		if err := d.ledger.MarkFailed(ctx, p.DeliveryID, "endpoint deleted"); err != nil {
			return err
		}
		d.finished(ctx, p)
		return nil
	case err != nil:
		return fmt.Errorf("read endpoint %s: %w", p.EndpointID, err)
	case ep.Disabled:
		return d.fail(ctx, p, "endpoint disabled")
	case ep.signingKeys().Len() == 0:
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
		return &tasks.Postponed{Outcome: OutcomeRateLimited, Wait: wait}
	}
	queue, _ := asynq.GetQueueName(ctx)
	ticket := guard.Ticket{AppID: ep.AppID, EndpointID: ep.ID, DeliveryID: p.DeliveryID, Queue: queue}
	v, err := d.enter(ctx, ticket)
	if err != nil {
		return err
	}
	if v.Wait > 0 {
		d.metrics.attempts.WithLabelValues(v.Reason).Inc()
		return &tasks.Postponed{Outcome: v.Reason, Wait: v.Wait}
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
	case r.next == ledger.StatusSucceeded:
		return nil
	case r.next == ledger.StatusFailed:
		return fmt.Errorf("deliver %s to %s: %s: %w", p.DeliveryID, ep.ID, describe(r.a), asynq.SkipRetry)
	}
	err = fmt.Errorf("deliver %s to %s: %s", p.DeliveryID, ep.ID, describe(r.a))
	if r.asked {
		return &tasks.RetryAfterError{Wait: r.retryAfter, Err: err}
	}
	return err
}

// result is what an attempt made of its delivery.
type result struct {
	a *ledger.Attempt
	// next is the delivery's status after the attempt.
	next string
	// retryAfter is the wait a 429 or 503 asked for with Retry-After,
	// when it did (asked).
	retryAfter time.Duration
	asked      bool
}

// pauseAfter returns the wait before the retry of a delivery still pending
// after attempt r, retries being how many retries it had before r: the
// policy's delay, and at least what the receiver asked with Retry-After.
// Retry-After is in seconds: a second more keeps the retry from coming
// early (as RetryDelay does).
func (d *Deliverer) pauseAfter(r result, retries int) time.Duration {
	pause := d.retry.Delay(retries)
	if r.asked {
		pause = max(pause, r.retryAfter+time.Second)
	}
	return pause
}

// record is the attempt and what it makes of its delivery, to store.
func (r result) record() *ledger.Record {
	lastErr := r.a.Error
	if lastErr == nil && r.next != ledger.StatusSucceeded {
		lastErr = ptr(describe(r.a))
	}
	return &ledger.Record{Attempt: r.a, Status: r.next, LastError: lastErr}
}

// attempt sends an admitted delivery (try), records the attempt and moves
// the delivery on. It fills in o for the gate as it goes.
func (d *Deliverer) attempt(ctx context.Context, ep Endpoint, p tasks.DeliverPayload, webhook []byte, lastTry bool, o *guard.Outcome) (result, error) {
	r := d.try(ctx, ep, p, webhook, lastTry, o)
	// Concurrent attempts record together, in one statement and one commit.
	if err := d.records.Do(ctx, *r.record()); err != nil {
		return result{}, fmt.Errorf("record attempt of %s: %w", p.DeliveryID, err)
	}
	o.Finished = r.next != ledger.StatusPending
	return r, nil
}

// try sends an admitted delivery and lets the endpoint's health follow;
// lastTry fails the delivery for good on a failure. It fills in o for the
// gate and returns the attempt, not stored, with what it makes of the
// delivery.
func (d *Deliverer) try(ctx context.Context, ep Endpoint, p tasks.DeliverPayload, webhook []byte, lastTry bool, o *guard.Outcome) result {
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

	r := result{a: a, next: ledger.StatusPending}
	switch {
	case ok:
		r.next = ledger.StatusSucceeded
	case gone, disabled, lastTry:
		r.next = ledger.StatusFailed
	}
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
	if r.next == ledger.StatusPending && resp != nil && (*a.StatusCode == http.StatusTooManyRequests || *a.StatusCode == http.StatusServiceUnavailable) {
		r.retryAfter, r.asked = retryAfter(resp.Header, time.Now(), d.cfg.MaxRetryAfter)
	}
	return r
}

// alreadyDone reports whether a delivery needs no attempt: it succeeded
// already, or its row is gone with its endpoint or app. Only a task run
// again can find it so (a retry, a task recovered from a dead worker, a
// dead letter run from Asynqmon), so a first run skips the query: a fresh
// delivery task is enqueued only for a pending row.
func (d *Deliverer) alreadyDone(ctx context.Context, p tasks.DeliverPayload) (bool, error) {
	if n, _ := asynq.GetRetryCount(ctx); n == 0 {
		return false, nil
	}
	status, err := d.ledger.Status(ctx, p.DeliveryID)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		// Its endpoint or app was deleted: nothing is owed to anyone.
		d.log.InfoContext(ctx, "delivery dropped: its row is gone", slog.String("delivery_id", p.DeliveryID))
		d.finished(ctx, p)
		return true, nil
	case err != nil:
		return false, err
	}
	return status == ledger.StatusSucceeded, nil
}

// isLastTry reports whether the running delivery has no retries left. The
// policy, not the task's MaxRetry, decides: tasks carry spare retries so
// that postponing the last try does not archive it. Tries made before the
// task (the fan-out's first attempt) count.
func (d *Deliverer) isLastTry(ctx context.Context, p tasks.DeliverPayload) bool {
	n, ok := asynq.GetRetryCount(ctx)
	return ok && n+p.Attempts >= d.retry.MaxRetry()
}

// fail marks a delivery failed without an attempt, for a reason that no
// retry can change.
func (d *Deliverer) fail(ctx context.Context, p tasks.DeliverPayload, reason string) error {
	if err := d.ledger.MarkFailed(ctx, p.DeliveryID, reason); err != nil {
		return err
	}
	d.finished(ctx, p)
	return fmt.Errorf("deliver %s: %s: %w", p.DeliveryID, reason, asynq.SkipRetry)
}

// deadLetterTimeout bounds the mirror of a dead letter in Postgres, which
// runs after its task's context is done.
const deadLetterTimeout = 10 * time.Second

// DeadLettered mirrors in Postgres a delivery task that asynq is about to
// archive, whatever made its last try fail (even a failure to read or write
// Postgres inside the handler), and counts it. The worker calls it from its
// error handler.
func (d *Deliverer) DeadLettered(ctx context.Context, t *asynq.Task, cause error) error {
	d.metrics.deadLetters.Inc()
	var p tasks.DeliverPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode delivery payload: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
	defer cancel()
	return d.ledger.MarkFailed(ctx, p.DeliveryID, cause.Error())
}

func describe(a *ledger.Attempt) string {
	if a.Error != nil {
		return *a.Error
	}
	if a.StatusCode != nil {
		return "HTTP " + strconv.Itoa(*a.StatusCode)
	}
	return "no response"
}
