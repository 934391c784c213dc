package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/ledger"
	"github.com/hookd/hookd/tasks/taskstest"
)

// testSigningKey signs the deliveries of these tests.
var testSigningKey = []byte("0123456789abcdef0123456789abcdef")

// mtlsReceiver is an HTTPS receiver whose certificate serverCA issued and
// that requires a client certificate issued by clientCA. It checks each
// webhook's signature and counts TLS handshakes.
type mtlsReceiver struct {
	srv        *httptest.Server
	received   atomic.Int32
	badSig     atomic.Int32
	handshakes atomic.Int32
	mu         sync.Mutex
	clients    []string // the common names of the client certificates
}

func newMTLSReceiver(t testing.TB, serverCA, clientCA *taskstest.CA) *mtlsReceiver {
	t.Helper()
	r := &mtlsReceiver{}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if !validSignature(req.Header, body) {
			r.badSig.Add(1)
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.clients = append(r.clients, req.TLS.PeerCertificates[0].Subject.CommonName)
		r.mu.Unlock()
		r.received.Add(1)
	}))
	certPEM, keyPEM := serverCA.Issue(t, "receiver", true)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	r.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		VerifyConnection: func(tls.ConnectionState) error { r.handshakes.Add(1); return nil },
	}
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	return r
}

// validSignature checks the v1 signature of a webhook by its own HMAC.
func validSignature(h http.Header, body []byte) bool {
	mac := hmac.New(sha256.New, testSigningKey)
	fmt.Fprintf(mac, "%s.%s.%s", h.Get("webhook-id"), h.Get("webhook-timestamp"), body)
	return h.Get("webhook-signature") == "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func sendOnce(t testing.TB, d *Deliverer, ep Endpoint, n int) *ledger.Attempt {
	t.Helper()
	p := tasks.DeliverPayload{DeliveryID: fmt.Sprintf("dlv_%d", n), EventID: fmt.Sprintf("evt_%d", n)}
	a, _ := d.send(t.Context(), ep, p, []byte(`{"n":`+fmt.Sprint(n)+`}`))
	return a
}

func mustClientTLS(t testing.TB, cert, key, ca []byte) *ClientTLS {
	t.Helper()
	c, err := NewClientTLS(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMutualTLS delivers to a local receiver that requires a client
// certificate: with the right one and the receiver's CA, signed webhooks
// arrive over one reused connection; a wrong certificate, none, or no CA
// bundle are failed attempts that say why, and a change of material takes
// effect at the next delivery.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	serverCA, clientCA, otherCA := taskstest.NewCA(t, "server CA"), taskstest.NewCA(t, "client CA"), taskstest.NewCA(t, "other CA")
	recv := newMTLSReceiver(t, serverCA, clientCA)
	goodCert, goodKey := clientCA.Issue(t, "hookd-client", false)
	wrongCert, wrongKey := otherCA.Issue(t, "intruder", false)
	newDeliverer := func(cfg Config) *Deliverer {
		cfg.Timeout, cfg.AllowPrivateTargets = 5*time.Second, true
		return New(Deps{}, slog.New(slog.DiscardHandler), cfg)
	}
	endpoint := func(id string, c *ClientTLS) Endpoint {
		return Endpoint{ID: id, URL: recv.srv.URL + "/hook", Keys: [][]byte{testSigningKey}, TLS: c}
	}
	failed := func(t *testing.T, a *ledger.Attempt, class string, want ...string) {
		t.Helper()
		msg := outcomeDeref(a.Error)
		t.Logf("attempt: %s: %s", a.ErrorClass, msg)
		if a.ErrorClass != class || a.StatusCode != nil {
			t.Errorf("attempt %s (status %v, %q), want %s without a status", a.ErrorClass, a.StatusCode, msg, class)
		}
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("attempt error %q, want it to say %q", msg, w)
			}
		}
	}

	t.Run("RightCertificate", func(t *testing.T) {
		d := newDeliverer(Config{})
		before, got := recv.handshakes.Load(), recv.received.Load()
		ep := endpoint("ep_right", mustClientTLS(t, goodCert, goodKey, serverCA.PEM))
		for i := range 5 {
			if a := sendOnce(t, d, ep, i); a.ErrorClass != OutcomeSuccess {
				t.Fatalf("delivery %d: %s %q", i, a.ErrorClass, outcomeDeref(a.Error))
			}
		}
		if n := recv.received.Load() - got; n != 5 || recv.badSig.Load() != 0 {
			t.Errorf("receiver verified %d webhooks (%d bad signatures), want 5", n, recv.badSig.Load())
		}
		if n := recv.handshakes.Load() - before; n != 1 {
			t.Errorf("%d TLS handshakes for 5 deliveries, want 1 (a reused connection)", n)
		}
		recv.mu.Lock()
		last := recv.clients[len(recv.clients)-1]
		recv.mu.Unlock()
		if last != "hookd-client" {
			t.Errorf("receiver saw client %q, want hookd-client", last)
		}
	})

	t.Run("WrongCertificate", func(t *testing.T) {
		d := newDeliverer(Config{})
		got := recv.received.Load()
		a := sendOnce(t, d, endpoint("ep_wrong", mustClientTLS(t, wrongCert, wrongKey, serverCA.PEM)), 1)
		failed(t, a, OutcomeTLSError, "tls")
		if strings.Contains(outcomeDeref(a.Error), "127.0.0.1") {
			t.Errorf("attempt error %q names an address", *a.Error)
		}
		if recv.received.Load() != got {
			t.Error("the receiver took a webhook from a client it does not trust")
		}
	})

	t.Run("NoCertificate", func(t *testing.T) {
		d := newDeliverer(Config{})
		a := sendOnce(t, d, endpoint("ep_none", mustClientTLS(t, nil, nil, serverCA.PEM)), 1)
		failed(t, a, OutcomeTLSError, "tls", "certificate")
	})

	t.Run("CABundleNeeded", func(t *testing.T) {
		d := newDeliverer(Config{})
		a := sendOnce(t, d, endpoint("ep_noca", mustClientTLS(t, goodCert, goodKey, nil)), 1)
		failed(t, a, OutcomeTLSError, "certificate signed by unknown authority")
		a = sendOnce(t, d, endpoint("ep_wrongca", mustClientTLS(t, goodCert, goodKey, otherCA.PEM)), 2)
		failed(t, a, OutcomeTLSError, "certificate signed by unknown authority")
	})

	t.Run("ChangeTakesEffect", func(t *testing.T) {
		d := newDeliverer(Config{})
		a := sendOnce(t, d, endpoint("ep_change", mustClientTLS(t, wrongCert, wrongKey, serverCA.PEM)), 1)
		failed(t, a, OutcomeTLSError)
		a = sendOnce(t, d, endpoint("ep_change", mustClientTLS(t, goodCert, goodKey, serverCA.PEM)), 2)
		if a.ErrorClass != OutcomeSuccess {
			t.Errorf("after the certificate changed: %s %q, want success", a.ErrorClass, outcomeDeref(a.Error))
		}
		if n := d.clients.cache.Len(); n != 1 {
			t.Errorf("%d clients kept for one endpoint, want 1", n)
		}
	})

	t.Run("ClientsBounded", func(t *testing.T) {
		d := newDeliverer(Config{TLSClients: 2})
		c := mustClientTLS(t, goodCert, goodKey, serverCA.PEM)
		for i := range 4 {
			if a := sendOnce(t, d, endpoint(fmt.Sprintf("ep_%d", i), c), i); a.ErrorClass != OutcomeSuccess {
				t.Fatalf("delivery %d: %s %q", i, a.ErrorClass, outcomeDeref(a.Error))
			}
		}
		if n := d.clients.cache.Len(); n != 2 {
			t.Errorf("%d clients kept, want at most 2", n)
		}
	})
}

// tokenServer is a local OAuth 2.0 token endpoint (client credentials
// grant) that checks the client, scopes and audience, and a receiver that
// accepts only the tokens it issued and has not revoked.
type tokenServer struct {
	srv       *httptest.Server
	requests  atomic.Int32
	expiresIn atomic.Int32
	mu        sync.Mutex
	issued    map[string]bool // token -> still valid
	bad       []string        // what the token server refused
	hang      chan struct{}   // when set, token requests wait on it
	refuseAll atomic.Bool     // the receiver refuses every token
}

const (
	testClientID     = "hookd-client"
	testClientSecret = "s3cret-client-secret-value"
)

func newTokenServer(t testing.TB) *tokenServer {
	t.Helper()
	ts := &tokenServer{issued: map[string]bool{}}
	ts.expiresIn.Store(3600)
	ts.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := ts.requests.Add(1)
		if ts.hang != nil {
			select {
			case <-ts.hang:
			case <-r.Context().Done():
			}
			return
		}
		id, secret, ok := r.BasicAuth()
		_ = r.ParseForm()
		var problem string
		switch {
		case r.Method != http.MethodPost || r.PostForm.Get("grant_type") != "client_credentials":
			problem = "want a client_credentials POST"
		case !ok || id != testClientID || secret != testClientSecret:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"unknown client or wrong secret"}`))
			return
		case r.PostForm.Get("scope") != "webhooks:write orders":
			problem = "scope " + r.PostForm.Get("scope")
		case r.PostForm.Get("audience") != "https://receiver.example":
			problem = "audience " + r.PostForm.Get("audience")
		}
		if problem != "" {
			ts.mu.Lock()
			ts.bad = append(ts.bad, problem)
			ts.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_request"}`))
			return
		}
		tok := fmt.Sprintf("token-%d", n)
		ts.mu.Lock()
		ts.issued[tok] = true
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": ts.expiresIn.Load()})
	}))
	t.Cleanup(ts.srv.Close)
	return ts
}

// receiver returns a receiver that answers 401 to a request without a
// valid token; got counts the webhooks it took, unauthorized the 401s.
func (ts *tokenServer) receiver(t testing.TB) (srv *httptest.Server, got, unauthorized *atomic.Int32) {
	t.Helper()
	got, unauthorized = &atomic.Int32{}, &atomic.Int32{}
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		ts.mu.Lock()
		valid := ok && ts.issued[tok] && !ts.refuseAll.Load()
		ts.mu.Unlock()
		if !valid {
			unauthorized.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if !validSignature(r.Header, body) {
			t.Errorf("webhook with a bad signature")
		}
		got.Add(1)
	}))
	t.Cleanup(srv.Close)
	return srv, got, unauthorized
}

// revokeAll makes every token issued so far invalid at the receiver.
func (ts *tokenServer) revokeAll() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for tok := range ts.issued {
		ts.issued[tok] = false
	}
}

func (ts *tokenServer) oauth() *OAuth {
	return &OAuth{
		TokenURL: ts.srv.URL + "/oauth/token", ClientID: testClientID, ClientSecret: testClientSecret,
		Scopes: []string{"webhooks:write", "orders"}, Audience: "https://receiver.example",
	}
}

// TestOAuth delivers with OAuth 2.0 client credentials from a local token
// server: the token is cached across deliveries and concurrent ones, fetched
// again when it expires and, once, on a 401; a token server that refuses,
// is down, hangs or is a forbidden target makes a failed attempt that says
// why, and no webhook leaves without a token.
func TestOAuth(t *testing.T) {
	t.Parallel()
	newDeliverer := func(timeout time.Duration, allowPrivate bool) *Deliverer {
		return New(Deps{}, slog.New(slog.DiscardHandler), Config{Timeout: timeout, AllowPrivateTargets: allowPrivate})
	}
	endpoint := func(url string, o *OAuth) Endpoint {
		return Endpoint{ID: "ep_oauth", URL: url + "/hook", Keys: [][]byte{testSigningKey}, OAuth: o}
	}
	oauthFailed := func(t *testing.T, a *ledger.Attempt, want ...string) {
		t.Helper()
		msg := outcomeDeref(a.Error)
		t.Logf("attempt: %s: %s", a.ErrorClass, msg)
		if a.ErrorClass != OutcomeOAuthError || a.StatusCode != nil {
			t.Errorf("attempt %s (status %v, %q), want %s", a.ErrorClass, a.StatusCode, msg, OutcomeOAuthError)
		}
		for _, w := range append(want, "oauth token: ") {
			if !strings.Contains(msg, w) {
				t.Errorf("attempt error %q, want it to say %q", msg, w)
			}
		}
		for _, never := range []string{testClientSecret, "127.0.0.1", "/oauth/token"} {
			if strings.Contains(msg, never) {
				t.Errorf("attempt error %q holds %q", msg, never)
			}
		}
	}

	t.Run("TokenCached", func(t *testing.T) {
		t.Parallel()
		ts := newTokenServer(t)
		recv, got, _ := ts.receiver(t)
		d := newDeliverer(5*time.Second, true)
		ep := endpoint(recv.URL, ts.oauth())
		for i := range 5 {
			if a := sendOnce(t, d, ep, i); a.ErrorClass != OutcomeSuccess {
				t.Fatalf("delivery %d: %s %q", i, a.ErrorClass, outcomeDeref(a.Error))
			}
		}
		// Concurrent deliveries of a new endpoint wait for one request.
		ep2 := ep
		ep2.ID = "ep_oauth2"
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				if a := sendOnce(t, d, ep2, 10+i); a.ErrorClass != OutcomeSuccess {
					t.Errorf("concurrent delivery %d: %s %q", i, a.ErrorClass, outcomeDeref(a.Error))
				}
			})
		}
		wg.Wait()
		if n := ts.requests.Load(); n != 2 {
			t.Errorf("%d token requests for 13 deliveries to 2 endpoints, want 2", n)
		}
		if n := got.Load(); n != 13 {
			t.Errorf("receiver took %d webhooks, want 13", n)
		}
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if len(ts.bad) > 0 {
			t.Errorf("token server refused: %q", ts.bad)
		}
	})

	t.Run("ExpiryHonoured", func(t *testing.T) {
		t.Parallel()
		ts := newTokenServer(t)
		recv, _, _ := ts.receiver(t)
		// 11 s: valid for 1 s beyond the 10 s margin.
		ts.expiresIn.Store(int32((tokenEarlyExpiry + time.Second) / time.Second))
		d := newDeliverer(5*time.Second, true)
		ep := endpoint(recv.URL, ts.oauth())
		for i := range 2 {
			if a := sendOnce(t, d, ep, i); a.ErrorClass != OutcomeSuccess {
				t.Fatalf("delivery %d: %s %q", i, a.ErrorClass, outcomeDeref(a.Error))
			}
		}
		if n := ts.requests.Load(); n != 1 {
			t.Fatalf("%d token requests before expiry, want 1", n)
		}
		time.Sleep(1100 * time.Millisecond)
		if a := sendOnce(t, d, ep, 3); a.ErrorClass != OutcomeSuccess {
			t.Fatalf("delivery after expiry: %s %q", a.ErrorClass, outcomeDeref(a.Error))
		}
		if n := ts.requests.Load(); n != 2 {
			t.Errorf("%d token requests after the token expired, want 2", n)
		}
	})

	t.Run("RefreshedOnceOn401", func(t *testing.T) {
		t.Parallel()
		ts := newTokenServer(t)
		recv, got, unauthorized := ts.receiver(t)
		d := newDeliverer(5*time.Second, true)
		ep := endpoint(recv.URL, ts.oauth())
		if a := sendOnce(t, d, ep, 1); a.ErrorClass != OutcomeSuccess {
			t.Fatalf("first delivery: %s %q", a.ErrorClass, outcomeDeref(a.Error))
		}
		ts.revokeAll() // the cached token is now refused
		a := sendOnce(t, d, ep, 2)
		if a.ErrorClass != OutcomeSuccess || a.StatusCode == nil || *a.StatusCode != http.StatusOK {
			t.Errorf("delivery with a revoked cached token: %s %v %q, want 200 after a refresh", a.ErrorClass, a.StatusCode, outcomeDeref(a.Error))
		}
		if n, u, g := ts.requests.Load(), unauthorized.Load(), got.Load(); n != 2 || u != 1 || g != 2 {
			t.Errorf("%d token requests, %d 401s, %d webhooks taken; want 2, 1, 2", n, u, g)
		}
		// A receiver that refuses every token gets the POST twice, then
		// the attempt records its 401: one refresh, never a loop.
		ts.refuseAll.Store(true)
		before, beforeU := ts.requests.Load(), unauthorized.Load()
		a = sendOnce(t, d, ep, 3)
		if a.ErrorClass != OutcomeHTTP4xx || a.StatusCode == nil || *a.StatusCode != http.StatusUnauthorized {
			t.Errorf("delivery refused with every token: %s %v %q, want a 401", a.ErrorClass, a.StatusCode, outcomeDeref(a.Error))
		}
		if n, u := ts.requests.Load()-before, unauthorized.Load()-beforeU; n != 1 || u != 2 {
			t.Errorf("%d token requests and %d 401s, want 1 and 2", n, u)
		}
	})

	t.Run("WrongSecret", func(t *testing.T) {
		t.Parallel()
		ts := newTokenServer(t)
		recv, got, unauthorized := ts.receiver(t)
		o := ts.oauth()
		o.ClientSecret = "not-the-secret"
		a := sendOnce(t, newDeliverer(5*time.Second, true), endpoint(recv.URL, o), 1)
		oauthFailed(t, a, "HTTP 401", "invalid_client", "unknown client or wrong secret")
		if got.Load()+unauthorized.Load() != 0 {
			t.Error("a webhook left without a token")
		}
	})

	t.Run("TokenServerDown", func(t *testing.T) {
		t.Parallel()
		ts := newTokenServer(t)
		recv, got, _ := ts.receiver(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		_ = ln.Close()
		o := ts.oauth()
		o.TokenURL = "http://localhost:" + port + "/oauth/token" // a name: what it resolves to stays out
		a := sendOnce(t, newDeliverer(5*time.Second, true), endpoint(recv.URL, o), 1)
		oauthFailed(t, a, "connection refused")
		if got.Load() != 0 {
			t.Error("a webhook left without a token")
		}
	})

	t.Run("TokenServerHangs", func(t *testing.T) {
		t.Parallel()
		ts := newTokenServer(t)
		ts.hang = make(chan struct{})
		t.Cleanup(func() { close(ts.hang) })
		recv, _, _ := ts.receiver(t)
		start := time.Now()
		a := sendOnce(t, newDeliverer(300*time.Millisecond, true), endpoint(recv.URL, ts.oauth()), 1)
		oauthFailed(t, a, "no token within the attempt's timeout")
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("the attempt took %s, want about its 300ms timeout", took)
		}
	})

	t.Run("TokenURLForbidden", func(t *testing.T) {
		t.Parallel()
		ts := newTokenServer(t)
		o := ts.oauth()
		// The endpoint's URL is never reached: the token comes first.
		a := sendOnce(t, newDeliverer(5*time.Second, false), endpoint("https://hooks.invalid", o), 1)
		oauthFailed(t, a, "target not allowed")
		if n := ts.requests.Load(); n != 0 {
			t.Errorf("the token server on loopback got %d requests with private targets refused", n)
		}
	})

	t.Run("CredentialsChangeTakesEffect", func(t *testing.T) {
		t.Parallel()
		ts := newTokenServer(t)
		recv, _, _ := ts.receiver(t)
		d := newDeliverer(5*time.Second, true)
		o := ts.oauth()
		o.ClientSecret = "old-secret"
		oauthFailed(t, sendOnce(t, d, endpoint(recv.URL, o), 1), "invalid_client")
		if a := sendOnce(t, d, endpoint(recv.URL, ts.oauth()), 2); a.ErrorClass != OutcomeSuccess {
			t.Errorf("after the secret changed: %s %q", a.ErrorClass, outcomeDeref(a.Error))
		}
	})
}

func TestTokenError(t *testing.T) {
	t.Parallel()
	dial := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 443},
		Err: fmt.Errorf("connect: connection refused")}
	if got, want := tokenError(dial), "oauth token: dial tcp: connect: connection refused"; got != want {
		t.Errorf("tokenError(dial) = %q, want %q", got, want)
	}
	long := strings.Repeat("x", 5000) + "\n\x00"
	if got := printable(long, maxTokenErrorText); len(got) > maxTokenErrorText+3 || strings.ContainsAny(got, "\n\x00") {
		t.Errorf("printable kept %d bytes or control characters", len(got))
	}
}
