package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/taskstest"
)

// BenchmarkSendAuth measures one delivery (signed POST, 1 KiB body, the
// response read) to a local receiver over a reused connection: plain HTTP
// with the shared client, then with an OAuth token from the cache, then
// HTTPS with the endpoint's own client (CA bundle), with a client
// certificate (mutual TLS), and both; then HTTPS with a new connection
// per delivery (the receiver closes each), whose handshake mutual TLS makes
// dearer. The receiver runs in the same process, so its work counts too.
func BenchmarkSendAuth(b *testing.B) {
	serverCA, clientCA := taskstest.NewCA(b, "server CA"), taskstest.NewCA(b, "client CA")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	plain := httptest.NewServer(handler)
	b.Cleanup(plain.Close)

	certPEM, keyPEM := serverCA.Issue(b, "receiver", true)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	startTLS := func(h http.Handler) *httptest.Server {
		srv := httptest.NewUnstartedServer(h)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		b.Cleanup(srv.Close)
		return srv
	}
	secure := startTLS(handler)
	closing := startTLS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		handler(w, r)
	}))

	ts := newTokenServer(b)
	clientCert, clientKey := clientCA.Issue(b, "hookd-client", false)
	caOnly := mustClientTLS(b, nil, nil, serverCA.PEM)
	mutual := mustClientTLS(b, clientCert, clientKey, serverCA.PEM)

	webhook := make([]byte, 1024)
	for i := range webhook {
		webhook[i] = 'a'
	}
	webhook[0], webhook[len(webhook)-1] = '"', '"'
	for _, bc := range []struct {
		name string
		ep   Endpoint
	}{
		{"HTTP", Endpoint{URL: plain.URL}},
		{"HTTP+OAuth", Endpoint{URL: plain.URL, OAuth: ts.oauth()}},
		{"HTTPS+CABundle", Endpoint{URL: secure.URL, TLS: caOnly}},
		{"HTTPS+mTLS", Endpoint{URL: secure.URL, TLS: mutual}},
		{"HTTPS+mTLS+OAuth", Endpoint{URL: secure.URL, TLS: mutual, OAuth: ts.oauth()}},
		{"NewConnection/HTTPS+CABundle", Endpoint{URL: closing.URL, TLS: caOnly}},
		{"NewConnection/HTTPS+mTLS", Endpoint{URL: closing.URL, TLS: mutual}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := New(Deps{}, slog.New(slog.DiscardHandler), Config{Timeout: 5 * time.Second, AllowPrivateTargets: true})
			ep := bc.ep
			ep.ID, ep.Keys = "ep_bench", [][]byte{testSigningKey}
			p := tasks.DeliverPayload{DeliveryID: "dlv_bench", EventID: "evt_bench"}
			// The connection and the token, made before the clock starts.
			if a, _ := d.send(b.Context(), ep, p, webhook); a.ErrorClass != OutcomeSuccess {
				b.Fatalf("warm-up delivery: %s %s", a.ErrorClass, outcomeDeref(a.Error))
			}
			b.ReportAllocs()
			for b.Loop() {
				if a, _ := d.send(b.Context(), ep, p, webhook); a.ErrorClass != OutcomeSuccess {
					b.Fatalf("delivery: %s %s", a.ErrorClass, outcomeDeref(a.Error))
				}
			}
		})
	}
}

// BenchmarkCachedToken measures what OAuth adds to a delivery once its
// token is cached: the lookup of the endpoint's token source and of its
// token, the attempt's deadline, and the Authorization header.
func BenchmarkCachedToken(b *testing.B) {
	ts := newTokenServer(b)
	d := New(Deps{}, slog.New(slog.DiscardHandler), Config{Timeout: 5 * time.Second, AllowPrivateTargets: true})
	o := ts.oauth()
	req, _ := http.NewRequest(http.MethodPost, "http://hooks.example/", nil)
	if _, err := d.tokens.source("ep_bench", o).token(b.Context(), d.client, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(b.Context(), d.cfg.Timeout)
		tok, err := d.tokens.source("ep_bench", o).token(ctx, d.client, nil)
		if err != nil {
			b.Fatal(err)
		}
		tok.SetAuthHeader(req)
		cancel()
	}
	if n := ts.requests.Load(); n != 1 {
		b.Errorf("%d token requests, want 1", n)
	}
}
