package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

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
func (d *Deliverer) send(ctx context.Context, ep Endpoint, p tasks.DeliverPayload, webhook []byte) (*ledger.Attempt, *http.Response) {
	start := time.Now()
	a := &ledger.Attempt{DeliveryID: p.DeliveryID, AttemptedAt: start}
	defer func() { a.DurationMS = float64(time.Since(start).Microseconds()) / 1000 }()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(webhook))
	if err != nil {
		a.Error, a.ErrorClass = ptr(fmt.Sprintf("build request: %v", err)), OutcomeError
		return a, nil
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

	resp, err := d.client.Do(req)
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
