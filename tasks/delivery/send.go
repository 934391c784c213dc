package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/ledger"
	"github.com/hookd/hookd/tasks/signature"
)

// responseBodyLimit is how much of a response body an attempt records;
// drainLimit is how much more is read, so the connection can be reused.
const (
	responseBodyLimit = 4 << 10
	drainLimit        = 64 << 10
)

// newClient returns the HTTP client of a Deliverer: no proxy (it would
// bypass the target guard), strict timeouts, redirects never followed.
func newClient(cfg Config) *http.Client {
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           guardedDialer(cfg.ConnectTimeout, cfg.AllowPrivateTargets).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   cfg.TLSTimeout,
		ResponseHeaderTimeout: cfg.HeaderTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1000,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // redirects are failures, never followed
		},
	}
}

// send makes one signed POST and returns the attempt, classified but not
// yet stored, and the response (its body already closed) if there was one.
// An endpoint with TLS material of its own is reached through its own
// client. One with OAuth client credentials gets its token first (cached
// until it expires); a 401 drops the token, and the POST is sent again,
// once, with a new one: token requests and POSTs together take at most the
// attempt's timeout.
func (d *Deliverer) send(ctx context.Context, ep Endpoint, p tasks.DeliverPayload, webhook []byte) (*ledger.Attempt, *http.Response) {
	start := time.Now()
	a := &ledger.Attempt{DeliveryID: p.DeliveryID, AttemptedAt: start}
	defer func() { a.DurationMS = float64(time.Since(start).Microseconds()) / 1000 }()

	client := d.client
	if ep.TLS != nil {
		client = d.clients.get(ep.ID, ep.TLS)
	}
	var (
		src *tokenSource
		tok *oauth2.Token
		err error
	)
	if ep.OAuth != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.cfg.Timeout)
		defer cancel()
		src = d.tokens.source(ep.ID, ep.OAuth)
		if tok, err = src.token(ctx, d.client, nil); err != nil {
			d.tokenFailed(ctx, a, ep, p, err, "")
			return a, nil
		}
	}
	resp, err := d.post(ctx, client, ep, p, webhook, start, tok)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && src != nil {
		drain(resp)
		if tok, err = src.token(ctx, d.client, tok); err != nil {
			d.tokenFailed(ctx, a, ep, p, err, "after HTTP 401 from the endpoint, ")
			return a, nil
		}
		resp, err = d.post(ctx, client, ep, p, webhook, start, tok)
	}
	if err != nil {
		a.ErrorClass = classify(0, err)
		a.Error = ptr(attemptError(err))
		if a.ErrorClass == OutcomeSSRFBlocked {
			// The attempt leaves the address out; the operator sees it.
			d.log.WarnContext(ctx, "delivery target refused", slog.String("endpoint_id", ep.ID),
				slog.String("delivery_id", p.DeliveryID), slog.Any("err", withoutURL(err)))
		}
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

// post sends the signed webhook once with client, with tok as its bearer
// token when there is one.
func (d *Deliverer) post(ctx context.Context, client *http.Client, ep Endpoint, p tasks.DeliverPayload, webhook []byte, start time.Time, tok *oauth2.Token) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(webhook))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for name, value := range ep.Headers {
		if CustomHeaderAllowed(name) { // one stored before it was refused is left out
			req.Header.Set(name, value)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.cfg.UserAgent)
	req.Header.Set(signature.HeaderID, p.EventID)
	req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(start.Unix(), 10))
	req.Header.Set(signature.HeaderSignature, signature.HeaderOf(ep.signingKeys(), p.EventID, start, webhook))
	if tok != nil {
		tok.SetAuthHeader(req) // over a custom Authorization header
	}
	return client.Do(req)
}

// tokenFailed makes a the attempt that got no OAuth token (err); when
// refreshing, what it says starts with that.
func (d *Deliverer) tokenFailed(ctx context.Context, a *ledger.Attempt, ep Endpoint, p tasks.DeliverPayload, err error, refreshing string) {
	a.ErrorClass = OutcomeOAuthError
	msg := tokenError(err)
	if refreshing != "" {
		msg = "oauth token: " + refreshing + strings.TrimPrefix(msg, "oauth token: ")
	}
	a.Error = ptr(msg)
	if errors.Is(err, ErrForbiddenTarget) {
		d.log.WarnContext(ctx, "oauth token server refused", slog.String("endpoint_id", ep.ID),
			slog.String("delivery_id", p.DeliveryID), slog.Any("err", withoutURL(err)))
	}
}

// drain reads a little of a response that is not kept, so that its
// connection can be reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	_ = resp.Body.Close()
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
