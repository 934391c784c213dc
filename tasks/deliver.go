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

	"github.com/hookd/hookd/tasks/signature"
)

// Endpoint is what the deliverer needs to know of an endpoint.
type Endpoint struct {
	ID  string
	URL string
	// Headers are sent with every delivery, before hookd's own.
	Headers map[string]string
	// Keys sign each delivery; more than one while a secret is rotated.
	Keys     [][]byte
	Disabled bool
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
	// AllowPrivateTargets lets deliveries reach loopback, private and
	// link-local addresses (for tests and local development).
	AllowPrivateTargets bool
	// UserAgent is sent with every request (default "hookd").
	UserAgent string
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
	endpoint EndpointFunc
	client   *http.Client
	cfg      DelivererConfig
	log      *slog.Logger
	metrics  *Metrics
}

// NewDeliverer returns a delivery handler with its own HTTP client.
func NewDeliverer(db *bun.DB, endpoint EndpointFunc, metrics *Metrics, log *slog.Logger, cfg DelivererConfig) *Deliverer {
	cfg.Timeout = cmp.Or(cfg.Timeout, 15*time.Second)
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, 5*time.Second)
	cfg.UserAgent = cmp.Or(cfg.UserAgent, "hookd")
	transport := &http.Transport{
		Proxy:                 nil, // a proxy would bypass the target guard
		DialContext:           guardedDialer(cfg.ConnectTimeout, cfg.AllowPrivateTargets).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.Timeout,
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
	return &Deliverer{db: db, endpoint: endpoint, client: client, cfg: cfg, metrics: metrics, log: log}
}

// ProcessTask implements asynq.Handler.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p DeliverPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode delivery payload: %w: %w", err, asynq.SkipRetry)
	}
	var status string
	err := d.db.NewSelect().Model((*Delivery)(nil)).Column("status").Where("id = ?", p.DeliveryID).Scan(ctx, &status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Its endpoint or app was deleted: nothing is owed to anyone.
		d.log.InfoContext(ctx, "delivery dropped: its row is gone", slog.String("delivery_id", p.DeliveryID))
		return nil
	case err != nil:
		return fmt.Errorf("read delivery %s: %w", p.DeliveryID, err)
	case status == StatusSucceeded:
		return nil
	}

	ep, err := d.endpoint(ctx, p.EndpointID)
	switch {
	case errors.Is(err, ErrEndpointGone):
		return d.fail(ctx, p, "endpoint deleted")
	case err != nil:
		return fmt.Errorf("read endpoint %s: %w", p.EndpointID, err)
	case ep.Disabled:
		return d.fail(ctx, p, "endpoint disabled")
	case len(ep.Keys) == 0:
		return fmt.Errorf("deliver %s: endpoint %s has no live signing secret", p.DeliveryID, ep.ID) // never send unsigned
	}

	a := d.send(ctx, ep, p)
	ok := a.StatusCode != nil && *a.StatusCode >= 200 && *a.StatusCode < 300
	outcome := outcomeOf(a)
	d.metrics.attempts.WithLabelValues(outcome).Inc()
	d.metrics.attemptDuration.WithLabelValues(outcome).Observe(a.DurationMS / 1000)

	next := StatusPending
	switch {
	case ok:
		next = StatusSucceeded
	case isLastTry(ctx):
		next = StatusFailed
	}
	if err := d.record(ctx, a, next); err != nil {
		return err
	}
	if next == StatusSucceeded {
		return nil
	}
	return fmt.Errorf("deliver %s to %s: %s", p.DeliveryID, ep.ID, describe(a))
}

// send makes one signed POST and returns the attempt, not yet stored.
func (d *Deliverer) send(ctx context.Context, ep Endpoint, p DeliverPayload) *Attempt {
	start := time.Now()
	a := &Attempt{DeliveryID: p.DeliveryID, AttemptedAt: start}
	defer func() { a.DurationMS = float64(time.Since(start).Microseconds()) / 1000 }()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(p.Body))
	if err != nil {
		a.Error = ptr(fmt.Sprintf("build request: %v", err))
		return a
	}
	for name, value := range ep.Headers {
		req.Header.Set(name, value)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.cfg.UserAgent)
	req.Header.Set(signature.HeaderID, p.EventID)
	req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(start.Unix(), 10))
	req.Header.Set(signature.HeaderSignature, signature.Header(ep.Keys, p.EventID, start, p.Body))

	resp, err := d.client.Do(req)
	if err != nil {
		// Drop the *url.Error wrapper: the endpoint URL can itself be a
		// credential (chat webhooks), so it stays out of logs and attempts.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		a.Error = ptr(err.Error())
		return a
	}
	defer resp.Body.Close()
	a.StatusCode = &resp.StatusCode
	body, _ := io.ReadAll(io.LimitReader(resp.Body, responseBodyLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	if len(body) > 0 {
		a.ResponseBody = ptr(validUTF8(body))
	}
	return a
}

// record stores an attempt and moves the delivery to status, in one
// transaction.
func (d *Deliverer) record(ctx context.Context, a *Attempt, status string) error {
	lastErr := a.Error
	if lastErr == nil && status != StatusSucceeded {
		lastErr = ptr(describe(a))
	}
	err := d.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(a).Exec(ctx); err != nil {
			return fmt.Errorf("insert attempt: %w", err)
		}
		q := tx.NewUpdate().Model((*Delivery)(nil)).
			Set("status = ?", status).
			Set("attempts = attempts + 1").
			Set("last_status_code = ?", a.StatusCode).
			Set("last_error = ?", lastErr).
			Set("updated_at = clock_timestamp()").
			Where("id = ?", a.DeliveryID)
		switch status {
		case StatusSucceeded:
			q = q.Set("succeeded_at = clock_timestamp()")
		case StatusFailed:
			q = q.Set("failed_at = clock_timestamp()")
		}
		if _, err := q.Exec(ctx); err != nil {
			return fmt.Errorf("update delivery: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record attempt of %s: %w", a.DeliveryID, err)
	}
	return nil
}

// fail marks a delivery failed without an attempt, for a reason that no
// retry can change.
func (d *Deliverer) fail(ctx context.Context, p DeliverPayload, reason string) error {
	if err := d.markFailed(ctx, p.DeliveryID, reason); err != nil {
		return err
	}
	return fmt.Errorf("deliver %s: %s: %w", p.DeliveryID, reason, asynq.SkipRetry)
}

// markFailed moves a pending delivery to failed. It changes nothing for a
// delivery already failed or succeeded.
func (d *Deliverer) markFailed(ctx context.Context, deliveryID, reason string) error {
	_, err := d.db.NewUpdate().Model((*Delivery)(nil)).
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
	return d.markFailed(ctx, p.DeliveryID, cause.Error())
}

// isLastTry reports whether the running task has no retries left.
func isLastTry(ctx context.Context) bool {
	n, ok1 := asynq.GetRetryCount(ctx)
	limit, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && n >= limit
}

// outcomeOf classifies an attempt for metrics.
func outcomeOf(a *Attempt) string {
	switch {
	case a.StatusCode == nil:
		return "error"
	case *a.StatusCode < 300:
		return "success"
	case *a.StatusCode < 400:
		return "http_3xx"
	case *a.StatusCode < 500:
		return "http_4xx"
	default:
		return "http_5xx"
	}
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
