package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/ledger"
)

func TestClassifyStatus(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]string{
		200: OutcomeSuccess,
		204: OutcomeSuccess,
		299: OutcomeSuccess,
		301: OutcomeHTTP3xx,
		308: OutcomeHTTP3xx,
		400: OutcomeHTTP4xx,
		404: OutcomeHTTP4xx,
		410: OutcomeHTTP4xx,
		429: OutcomeHTTP4xx,
		500: OutcomeHTTP5xx,
		503: OutcomeHTTP5xx,
		599: OutcomeHTTP5xx,
	} {
		if got := classify(status, nil); got != want {
			t.Errorf("classify(%d, nil) = %q, want %q", status, got, want)
		}
		// A status wins over an error met while reading the body.
		if got := classify(status, context.DeadlineExceeded); got != want {
			t.Errorf("classify(%d, DeadlineExceeded) = %q, want %q", status, got, want)
		}
	}
}

func TestClassifyError(t *testing.T) {
	t.Parallel()
	asURLError := func(err error) error {
		return &url.Error{Op: "Post", URL: "https://hooks.example/secret-token", Err: err}
	}
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 443},
		Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"NoStatusNoError", nil, OutcomeError},
		{"DeadlineExceeded", context.DeadlineExceeded, OutcomeTimeout},
		{"DeadlineExceededInURLError", asURLError(fmt.Errorf("awaiting headers: %w", context.DeadlineExceeded)), OutcomeTimeout},
		{"OSDeadline", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, OutcomeTimeout},
		{"DialTimeout", &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, OutcomeTimeout},
		{"DialRefused", dialErr, OutcomeConnectError},
		{"DialRefusedInURLError", asURLError(dialErr), OutcomeConnectError},
		{"DNSNotFound", &net.DNSError{Err: "no such host", Name: "hooks.invalid", IsNotFound: true}, OutcomeConnectError},
		{"DNSInOpError", asURLError(&net.OpError{Op: "dial", Net: "tcp",
			Err: &net.DNSError{Err: "server misbehaving", Name: "hooks.example", IsTemporary: true}}), OutcomeConnectError},
		{"DNSTimeout", &net.DNSError{Err: "i/o timeout", Name: "hooks.example", IsTimeout: true}, OutcomeTimeout},
		{"ForbiddenTarget", fmt.Errorf("%w: 127.0.0.1", ErrForbiddenTarget), OutcomeSSRFBlocked},
		{"ForbiddenTargetWrapped", asURLError(&net.OpError{Op: "dial", Net: "tcp",
			Err: fmt.Errorf("%w: 169.254.169.254", ErrForbiddenTarget)}), OutcomeSSRFBlocked},
		{"UnknownAuthority", asURLError(x509.UnknownAuthorityError{}), OutcomeTLSError},
		{"CertificateVerification", asURLError(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), OutcomeTLSError},
		{"Hostname", asURLError(x509.HostnameError{Host: "hooks.example", Certificate: &x509.Certificate{}}), OutcomeTLSError},
		{"Expired", asURLError(x509.CertificateInvalidError{Reason: x509.Expired, Cert: &x509.Certificate{}}), OutcomeTLSError},
		{"TLSAlert", asURLError(&net.OpError{Op: "remote error", Err: tls.AlertError(40)}), OutcomeTLSError},
		{"NotTLS", asURLError(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), OutcomeTLSError},
		{"ResetWhileReading", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, OutcomeError},
		{"EOF", asURLError(io.EOF), OutcomeError},
		{"Generic", errors.New("something broke"), OutcomeError},
	} {
		if got := classify(0, tc.err); got != tc.want {
			t.Errorf("%s: classify(0, %v) = %q, want %q", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestClassifyNetwork classifies real failed requests, made by a
// Deliverer's own client against local servers.
func TestClassifyNetwork(t *testing.T) {
	t.Parallel()
	send := func(t *testing.T, cfg Config, target string) *ledger.Attempt {
		t.Helper()
		d := New(Deps{}, slog.New(slog.DiscardHandler), cfg)
		ep := Endpoint{ID: "ep_test", URL: target, Keys: [][]byte{[]byte("0123456789abcdef0123456789abcdef")}}
		a, _ := d.send(t.Context(), ep, tasks.DeliverPayload{DeliveryID: "dlv_test", EventID: "evt_test"}, []byte(`{}`))
		return a
	}
	check := func(t *testing.T, a *ledger.Attempt, want string) {
		t.Helper()
		if a.ErrorClass != want {
			t.Errorf("attempt classified %q (status %v, error %v), want %q", a.ErrorClass, a.StatusCode, outcomeDeref(a.Error), want)
		}
		if a.Error != nil && strings.Contains(*a.Error, "secret-path") {
			t.Errorf("attempt error %q reveals the endpoint URL", *a.Error)
		}
	}

	t.Run("Refused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		a := send(t, Config{Timeout: 5 * time.Second, AllowPrivateTargets: true}, "http://"+addr+"/secret-path")
		check(t, a, OutcomeConnectError)
		if a.StatusCode != nil || a.Error == nil {
			t.Errorf("refused attempt: status %v, error %v; want no status and an error", a.StatusCode, outcomeDeref(a.Error))
		}
	})

	t.Run("UntrustedCertificate", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
		srv.StartTLS()
		t.Cleanup(srv.Close)
		check(t, send(t, Config{Timeout: 5 * time.Second, AllowPrivateTargets: true}, srv.URL+"/secret-path"), OutcomeTLSError)
	})

	t.Run("NoHeadersBeforeTimeout", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Read the body: only then does the server notice the client
			// hanging up, which ends r.Context().
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}))
		t.Cleanup(srv.Close)
		start := time.Now()
		a := send(t, Config{Timeout: 200 * time.Millisecond, AllowPrivateTargets: true}, srv.URL+"/secret-path")
		check(t, a, OutcomeTimeout)
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("timed-out attempt took %s, want about 200ms", took)
		}
	})

	t.Run("PrivateTargetRefused", func(t *testing.T) {
		t.Parallel()
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
		t.Cleanup(srv.Close)
		var logs bytes.Buffer
		d := New(Deps{}, slog.New(slog.NewTextHandler(&logs, nil)), Config{Timeout: 5 * time.Second})
		ep := Endpoint{ID: "ep_test", URL: srv.URL + "/secret-path", Keys: [][]byte{[]byte("0123456789abcdef0123456789abcdef")}}
		a, _ := d.send(t.Context(), ep, tasks.DeliverPayload{DeliveryID: "dlv_test", EventID: "evt_test"}, []byte(`{}`))
		check(t, a, OutcomeSSRFBlocked)
		if n := hits.Load(); n != 0 {
			t.Errorf("the private server got %d requests", n)
		}
		// The app reads the attempt: it says the target is not allowed,
		// not what the host resolved to; the operator's log says it.
		if a.Error == nil || !strings.Contains(*a.Error, "target not allowed") || strings.Contains(*a.Error, "127.0.0.1") {
			t.Errorf("attempt error = %q, want the target refused without its address", outcomeDeref(a.Error))
		}
		if !strings.Contains(logs.String(), "127.0.0.1") || !strings.Contains(logs.String(), "ep_test") || strings.Contains(logs.String(), "secret-path") {
			t.Errorf("log = %q, want the refused address and the endpoint, without the URL", logs.String())
		}
	})

	t.Run("RedirectNotFollowed", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/moved" {
				http.Redirect(w, r, "/moved", http.StatusMovedPermanently)
				return
			}
			t.Errorf("the redirect was followed")
		}))
		t.Cleanup(srv.Close)
		a := send(t, Config{Timeout: 5 * time.Second, AllowPrivateTargets: true}, srv.URL+"/secret-path")
		check(t, a, OutcomeHTTP3xx)
		if a.StatusCode == nil || *a.StatusCode != http.StatusMovedPermanently {
			t.Errorf("status = %v, want 301", a.StatusCode)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const limit = time.Hour
	for _, tc := range []struct {
		name   string
		header string // "" sends none
		want   time.Duration
		ok     bool
	}{
		{"None", "", 0, false},
		{"Seconds", "120", 120 * time.Second, true},
		{"Zero", "0", 0, true},
		{"Negative", "-1", 0, false},
		{"NotANumber", "abc", 0, false},
		{"Fraction", "1.5", 0, false},
		{"DateAhead", now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{"DateRFC850", now.Add(30 * time.Second).Format(time.RFC850), 30 * time.Second, true},
		{"DatePast", now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"HugeSecondsCapped", "86400000", limit, true},
		{"MaxInt64SecondsCapped", "9223372036854775807", limit, true},
		{"FarDateCapped", now.AddDate(10, 0, 0).Format(http.TimeFormat), limit, true},
		{"JustOverLimit", "3601", limit, true},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Retry-After", tc.header)
		}
		got, ok := retryAfter(h, now, limit)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: retryAfter(%q) = %s, %t; want %s, %t", tc.name, tc.header, got, ok, tc.want, tc.ok)
		}
	}
	// A limit that is not a whole number of seconds still caps.
	if got, ok := retryAfter(http.Header{"Retry-After": {"5"}}, now, 1500*time.Millisecond); got != 1500*time.Millisecond || !ok {
		t.Errorf("retryAfter(5) with a 1.5s limit = %s, %t; want 1.5s, true", got, ok)
	}
}

func outcomeDeref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
