package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hookd/hookd/tasks/guard"
)

// Outcome classes of a delivery attempt, recorded with each attempt and
// counted by hookd_delivery_attempts_total. RateLimited, CircuitOpen,
// EndpointBusy and AppBusy (the in-flight caps of the endpoint and of its
// app) are not attempts: the delivery was postponed before any request.
const (
	OutcomeSuccess      = "success"
	OutcomeHTTP3xx      = "http_3xx"
	OutcomeHTTP4xx      = "http_4xx"
	OutcomeHTTP5xx      = "http_5xx"
	OutcomeTimeout      = "timeout"
	OutcomeConnectError = "connect_error"
	OutcomeTLSError     = "tls_error"
	OutcomeSSRFBlocked  = "ssrf_blocked"
	// OutcomeOAuthError is an attempt that got no OAuth token to send
	// with: the token server failed, refused or was out of reach.
	OutcomeOAuthError   = "oauth_error"
	OutcomeError        = "error"
	OutcomeRateLimited  = "rate_limited"
	OutcomeCircuitOpen  = guard.ReasonCircuitOpen
	OutcomeEndpointBusy = guard.ReasonEndpointBusy
	OutcomeAppBusy      = guard.ReasonAppBusy
)

// classify names the outcome of a request that got status (0 for none) or
// failed with err.
func classify(status int, err error) string {
	switch {
	case status >= 200 && status < 300:
		return OutcomeSuccess
	case status >= 300 && status < 400:
		return OutcomeHTTP3xx
	case status >= 400 && status < 500:
		return OutcomeHTTP4xx
	case status >= 500:
		return OutcomeHTTP5xx
	case err == nil:
		return OutcomeError
	case errors.Is(err, ErrForbiddenTarget):
		return OutcomeSSRFBlocked
	case isTimeout(err):
		return OutcomeTimeout
	case isTLSError(err):
		return OutcomeTLSError
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) && opErr.Op == "dial" {
		return OutcomeConnectError
	}
	return OutcomeError
}

// targetNotAllowed is what an attempt records of a refused target.
const targetNotAllowed = "target not allowed: the host's address is not public (private targets are not allowed)"

// attemptError is what an attempt records of a failed request. The app
// reads it (attempts, last_error, disabled_reason), so it names no address
// hookd resolved: a refused target says only that it is not allowed (what
// its host resolved to would map the operator's network), and a DNS error
// leaves out the resolver's address. The *url.Error wrapper goes too: the
// endpoint URL can itself be a credential (chat webhooks), so it stays out
// of logs and attempts.
func attemptError(err error) string {
	var (
		dnsErr *net.DNSError
		opErr  *net.OpError
	)
	err = withoutURL(err)
	switch {
	case errors.Is(err, ErrForbiddenTarget):
		return targetNotAllowed
	case errors.As(err, &dnsErr) && dnsErr.Server != "":
		bare := *dnsErr
		bare.Server = ""
		if errors.As(err, &opErr) {
			return (&net.OpError{Op: opErr.Op, Net: opErr.Net, Err: &bare}).Error()
		}
		return bare.Error()
	case isRemoteAlert(err):
		// A server refusing a client certificate says so only by a TLS
		// alert: "remote error: tls: certificate required".
		return "tls: the endpoint refused the handshake: " + err.Error()
	}
	return err.Error()
}

// withoutURL drops the *url.Error wrapper of a request's error, which
// names the endpoint URL.
func withoutURL(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func isTLSError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
		alert    tls.AlertError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &alert) ||
		errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || isRemoteAlert(err)
}

// isRemoteAlert reports whether err is a TLS alert the server sent, such
// as its refusal of a client certificate (crypto/tls reports it as a
// *net.OpError of Op "remote error").
func isRemoteAlert(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "remote error"
}

// retryAfter parses a Retry-After header (delay-seconds or an HTTP date)
// into a delay from now, capped at limit; ok is false when there is none.
func retryAfter(h http.Header, now time.Time, limit time.Duration) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		d = time.Duration(min(secs, int64(limit/time.Second)+1)) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = at.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), limit), true
}
