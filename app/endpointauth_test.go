package app_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookd/hookd/tasks/taskstest"
)

// The authenticated-endpoint tests run hookd against a receiver that
// requires a client certificate and a local OAuth 2.0 token server. Their
// helpers carry an auth prefix.

// authCA is a certificate authority made for one test, its PEM as text.
type authCA struct {
	*taskstest.CA
	pem string
}

func authNewCA(t *testing.T, name string) *authCA {
	ca := taskstest.NewCA(t, name)
	return &authCA{CA: ca, pem: string(ca.PEM)}
}

// issue returns a leaf certificate of ca and its key, in PEM text: a
// server's for 127.0.0.1, or a client's.
func (ca *authCA) issue(t *testing.T, name string, server bool) (certPEM, keyPEM string) {
	c, k := ca.Issue(t, name, server)
	return string(c), string(k)
}

// authMTLSReceiver is a webhook receiver on HTTPS whose certificate
// serverCA issued, requiring a client certificate issued by clientCA.
type authMTLSReceiver struct {
	*receiver
	clients atomic.Int32 // requests that came with a verified client certificate
}

func authNewMTLSReceiver(t *testing.T, serverCA, clientCA *authCA) *authMTLSReceiver {
	t.Helper()
	r := &authMTLSReceiver{receiver: &receiver{}}
	r.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if len(req.TLS.VerifiedChains) > 0 {
			r.clients.Add(1)
		}
		r.mu.Lock()
		r.requests = append(r.requests, received{header: req.Header.Clone(), body: body})
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	certPEM, keyPEM := serverCA.issue(t, "receiver", true)
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	r.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	r.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	r.StartTLS()
	t.Cleanup(r.Close)
	return r
}

// authTokenServer is a local OAuth 2.0 token endpoint (client credentials)
// that checks the client, its scopes and audience; its receiver takes
// webhooks only with a token it issued.
type authTokenServer struct {
	*httptest.Server
	id, secret, scope, audience string
	requests                    atomic.Int32
	mu                          sync.Mutex
	issued                      map[string]bool
}

func authNewTokenServer(t *testing.T, id, secret, scope, audience string) *authTokenServer {
	t.Helper()
	ts := &authTokenServer{id: id, secret: secret, scope: scope, audience: audience, issued: map[string]bool{}}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := ts.requests.Add(1)
		gotID, gotSecret, _ := r.BasicAuth()
		_ = r.ParseForm()
		ts.mu.Lock()
		id, secret, scope, audience := ts.id, ts.secret, ts.scope, ts.audience
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if gotID != id || gotSecret != secret || r.PostForm.Get("grant_type") != "client_credentials" ||
			r.PostForm.Get("scope") != scope || r.PostForm.Get("audience") != audience {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		tok := fmt.Sprintf("access-%d", n)
		ts.mu.Lock()
		ts.issued[tok] = true
		ts.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(ts.Close)
	return ts
}

// receiver returns a webhook receiver that answers 401 unless a request
// carries a token ts issued, and records the others.
func (ts *authTokenServer) receiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		tok, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ts.valid(tok) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.mu.Lock()
		r.requests = append(r.requests, received{header: req.Header.Clone(), body: body})
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

// expect changes what the token server accepts.
func (ts *authTokenServer) expect(secret, scope string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.secret, ts.scope = secret, scope
}

func (ts *authTokenServer) valid(tok string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.issued[tok]
}

// authTLSView is what the API shows of an endpoint's TLS material.
type authTLSView struct {
	ClientCertificate          *string    `json:"client_certificate"`
	ClientCertificateSubject   *string    `json:"client_certificate_subject"`
	ClientCertificateExpiresAt *time.Time `json:"client_certificate_expires_at"`
	ClientKeySet               bool       `json:"client_key_set"`
	CABundle                   *string    `json:"ca_bundle"`
}

// authOAuthView is what the API shows of an endpoint's OAuth credentials.
type authOAuthView struct {
	TokenURL        string   `json:"token_url"`
	ClientID        string   `json:"client_id"`
	ClientSecretSet bool     `json:"client_secret_set"`
	Scopes          []string `json:"scopes"`
	Audience        string   `json:"audience"`
}

type authEndpoint struct {
	ID     string         `json:"id"`
	Secret string         `json:"secret"`
	TLS    *authTLSView   `json:"tls"`
	OAuth  *authOAuthView `json:"oauth"`
}

// TestEndpointAuth drives authenticated endpoints through the API: an
// endpoint with a client certificate and a CA bundle receives signed
// webhooks from a receiver that requires mutual TLS, one with OAuth client
// credentials receives them with a bearer token fetched once; the client
// key and secret are never returned; invalid material is a 422 naming the
// field; a wrong certificate or an unreachable token server is a failed
// attempt that says why, retried, and a PATCH takes effect at once.
func TestEndpointAuth(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "200ms,200ms,200ms"})
	serverCA, clientCA, otherCA := authNewCA(t, "server CA"), authNewCA(t, "client CA"), authNewCA(t, "other CA")
	mtls := authNewMTLSReceiver(t, serverCA, clientCA)
	clientCert, clientKey := clientCA.issue(t, "hookd-client", false)
	wrongCert, wrongKey := otherCA.issue(t, "intruder", false)
	const clientSecret = "client-secret-0123456789-abcdef"
	ts := authNewTokenServer(t, "hookd", clientSecret, "webhooks:write", "https://receiver.example")
	oauthRecv := ts.receiver(t)

	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	eps := "/v1/apps/" + appID + "/endpoints"
	goodTLS := map[string]any{"client_certificate": clientCert, "client_key": clientKey, "ca_bundle": serverCA.pem}
	oauth := map[string]any{
		"token_url": ts.URL + "/token", "client_id": "hookd", "client_secret": clientSecret,
		"scopes": []string{"webhooks:write"}, "audience": "https://receiver.example",
	}
	var mep, oep authEndpoint
	r := accMust(t, h, http.MethodPost, eps, adminKey, map[string]any{"url": mtls.URL + "/hook", "tls": goodTLS}, http.StatusCreated, &mep)
	noSecretShown := func(what string, body []byte) {
		t.Helper()
		for _, bad := range []string{clientSecret, strings.Split(clientKey, "\n")[1][:20]} {
			if strings.Contains(string(body), bad) {
				t.Errorf("%s shows %q", what, bad)
			}
		}
	}
	noSecretShown("create (mTLS)", r.body)
	if strings.Contains(string(r.body), "PRIVATE KEY") {
		t.Error("create shows a private key")
	}
	if mep.TLS == nil || !mep.TLS.ClientKeySet || mep.TLS.ClientCertificateSubject == nil || *mep.TLS.ClientCertificateSubject != "CN=hookd-client,O=Acme" ||
		mep.TLS.ClientCertificateExpiresAt == nil || mep.TLS.CABundle == nil || *mep.TLS.CABundle != serverCA.pem || mep.OAuth != nil {
		t.Errorf("created endpoint shows tls %s, oauth %s; want the certificate's subject and expiry, the key set, the CA bundle, no oauth", conJSON(mep.TLS), conJSON(mep.OAuth))
	}
	r = accMust(t, h, http.MethodPost, eps, adminKey, map[string]any{"url": oauthRecv.URL + "/hook", "oauth": oauth}, http.StatusCreated, &oep)
	noSecretShown("create (OAuth)", r.body)
	if oep.OAuth == nil || !oep.OAuth.ClientSecretSet || oep.OAuth.ClientID != "hookd" || oep.OAuth.TokenURL != ts.URL+"/token" ||
		len(oep.OAuth.Scopes) != 1 || oep.OAuth.Audience != "https://receiver.example" || oep.TLS != nil {
		t.Errorf("created endpoint shows oauth %s, tls %s", conJSON(oep.OAuth), conJSON(oep.TLS))
	}
	noSecretShown("get (mTLS)", accMust(t, h, http.MethodGet, eps+"/"+mep.ID, adminKey, nil, http.StatusOK, nil).body)
	noSecretShown("get (OAuth)", accMust(t, h, http.MethodGet, eps+"/"+oep.ID, adminKey, nil, http.StatusOK, nil).body)
	var list accList[authEndpoint]
	noSecretShown("list", accMust(t, h, http.MethodGet, eps, adminKey, nil, http.StatusOK, &list).body)
	for _, ep := range list.Data {
		if ep.ID == mep.ID && (ep.TLS == nil || !ep.TLS.ClientKeySet) || ep.ID == oep.ID && (ep.OAuth == nil || !ep.OAuth.ClientSecretSet) {
			t.Errorf("listed endpoint %s shows tls %s, oauth %s", ep.ID, conJSON(ep.TLS), conJSON(ep.OAuth))
		}
	}

	publish := func(n int) string {
		t.Helper()
		return h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": n}}).ID
	}
	for n := range 3 {
		id := publish(n)
		if err := accVerify(t, mep.Secret, accWebhook(t, mtls.receiver, id)); err != nil {
			t.Errorf("webhook over mutual TLS does not verify: %v", err)
		}
		w := accWebhook(t, oauthRecv, id)
		if err := accVerify(t, oep.Secret, w); err != nil {
			t.Errorf("webhook with OAuth does not verify: %v", err)
		}
		if !strings.HasPrefix(w.header.Get("Authorization"), "Bearer access-") {
			t.Errorf("webhook Authorization %q, want a bearer token", w.header.Get("Authorization"))
		}
	}
	if n := mtls.clients.Load(); n != 3 {
		t.Errorf("%d webhooks came with a verified client certificate, want 3", n)
	}
	if n := ts.requests.Load(); n != 1 {
		t.Errorf("%d token requests for 3 deliveries, want 1 (cached)", n)
	}

	t.Run("Invalid", func(t *testing.T) {
		garbage := "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
		for _, tc := range []struct {
			name  string
			body  map[string]any
			field string
		}{
			// (A PATCH may leave the key out: it keeps the current one.)
			{"CertificateNotPEM", map[string]any{"tls": map[string]any{"client_certificate": "hello", "client_key": clientKey}}, "tls.client_certificate"},
			{"CertificateGarbage", map[string]any{"tls": map[string]any{"client_certificate": garbage, "client_key": clientKey}}, "tls.client_certificate"},
			{"KeyGivenAsCertificate", map[string]any{"tls": map[string]any{"client_certificate": clientKey, "client_key": clientKey}}, "tls.client_certificate"},
			{"CertificateMissing", map[string]any{"tls": map[string]any{"client_key": clientKey}}, "tls.client_certificate"},
			{"KeyMismatch", map[string]any{"tls": map[string]any{"client_certificate": clientCert, "client_key": wrongKey}}, "tls.client_key"},
			{"KeyNotPEM", map[string]any{"tls": map[string]any{"client_certificate": clientCert, "client_key": "secret"}}, "tls.client_key"},
			{"CABundleEmpty", map[string]any{"tls": map[string]any{"ca_bundle": "no certificate here"}}, "tls.ca_bundle"},
			{"CABundleTrailing", map[string]any{"tls": map[string]any{"ca_bundle": serverCA.pem + "junk"}}, "tls.ca_bundle"},
			{"TokenURLRelative", map[string]any{"oauth": map[string]any{"token_url": "/token", "client_id": "a", "client_secret": "b"}}, "oauth.token_url"},
			{"TokenURLScheme", map[string]any{"oauth": map[string]any{"token_url": "ftp://127.0.0.1/token", "client_id": "a", "client_secret": "b"}}, "oauth.token_url"},
			{"TokenURLCredentials", map[string]any{"oauth": map[string]any{"token_url": "http://u:p@127.0.0.1/token", "client_id": "a", "client_secret": "b"}}, "oauth.token_url"},
			{"ScopeWithSpace", map[string]any{"oauth": map[string]any{"token_url": ts.URL, "client_id": "a", "client_secret": "b", "scopes": []string{"a b"}}}, "oauth.scopes"},
		} {
			body := map[string]any{"url": mtls.URL}
			for k, v := range tc.body {
				body[k] = v
			}
			r := accDo(t, h, http.MethodPost, eps, adminKey, body)
			accCheckProblem(t, tc.name, r, http.StatusUnprocessableEntity, tc.field)
			noSecretShown(tc.name, r.body)
			// The same refusal on a PATCH of an endpoint.
			delete(body, "url")
			accCheckProblem(t, tc.name+"Patch", accDo(t, h, http.MethodPatch, eps+"/"+mep.ID, adminKey, body), http.StatusUnprocessableEntity, tc.field)
		}
		accCheckProblem(t, "KeyMissing", accDo(t, h, http.MethodPost, eps, adminKey,
			map[string]any{"url": mtls.URL, "tls": map[string]any{"client_certificate": clientCert}}), http.StatusUnprocessableEntity, "tls.client_key")
		accCheckProblem(t, "SecretMissing", accDo(t, h, http.MethodPost, eps, adminKey,
			map[string]any{"url": mtls.URL, "oauth": map[string]any{"token_url": ts.URL, "client_id": "a"}}), http.StatusUnprocessableEntity, "")
		// A PATCH may leave the secret out only when there is one.
		accCheckProblem(t, "SecretMissingPatch", accDo(t, h, http.MethodPatch, eps+"/"+mep.ID, adminKey,
			map[string]any{"oauth": map[string]any{"token_url": ts.URL, "client_id": "a"}}), http.StatusUnprocessableEntity, "oauth.client_secret")
		// A certificate over the size limit is refused before it is read.
		huge := map[string]any{"url": mtls.URL, "tls": map[string]any{"ca_bundle": strings.Repeat(serverCA.pem, 70<<10/len(serverCA.pem))}}
		if r := accDo(t, h, http.MethodPost, eps, adminKey, huge); r.code != http.StatusUnprocessableEntity {
			t.Errorf("a 70 KiB CA bundle: %s, want 422", r)
		}
	})
	if t.Failed() {
		return
	}

	// attempts waits for delivery of event id to endpoint epID to have at
	// least n attempts and returns them.
	attempts := func(id, epID string, n int) []dlvAttempt {
		t.Helper()
		dlvID := dlvDeliveryID(h, id, epID)
		var d dlvDelivery
		waitFor(t, fmt.Sprintf("%d attempts of %s", n, dlvID), func() bool {
			d = dlvGet(h, appID, dlvID)
			return len(d.Attempts) >= n
		})
		return d.Attempts
	}

	t.Run("WrongCertificateThenRight", func(t *testing.T) {
		accMust(t, h, http.MethodPatch, eps+"/"+mep.ID, adminKey,
			map[string]any{"tls": map[string]any{"client_certificate": wrongCert, "client_key": wrongKey, "ca_bundle": serverCA.pem}}, http.StatusOK, nil)
		id := publish(10)
		for i, a := range attempts(id, mep.ID, 2) {
			if a.ErrorClass != "tls_error" || a.StatusCode != nil || a.Error == nil ||
				!strings.Contains(*a.Error, "tls: the endpoint refused the handshake") || strings.Contains(*a.Error, "127.0.0.1") {
				t.Errorf("attempt %d with a wrong certificate: %s %q, want a tls_error that says why", i, a.ErrorClass, dlvDeref(a.Error))
			}
		}
		// The right certificate again, its key left out: the key kept
		// must match it. The retries of the delivery then succeed.
		var ep authEndpoint
		accMust(t, h, http.MethodPatch, eps+"/"+mep.ID, adminKey,
			map[string]any{"tls": map[string]any{"client_certificate": clientCert, "ca_bundle": serverCA.pem}}, http.StatusUnprocessableEntity, nil)
		accMust(t, h, http.MethodPatch, eps+"/"+mep.ID, adminKey, map[string]any{"tls": goodTLS}, http.StatusOK, &ep)
		if ep.TLS == nil || !ep.TLS.ClientKeySet || *ep.TLS.ClientCertificateSubject != "CN=hookd-client,O=Acme" {
			t.Errorf("after the PATCH: tls %s", conJSON(ep.TLS))
		}
		if err := accVerify(t, mep.Secret, accWebhook(t, mtls.receiver, publish(11))); err != nil {
			t.Errorf("webhook after the certificate was put right: %v", err)
		}
		// A PATCH of the CA bundle alone keeps the key: the certificate
		// is given again, the key left out.
		accMust(t, h, http.MethodPatch, eps+"/"+mep.ID, adminKey,
			map[string]any{"tls": map[string]any{"client_certificate": clientCert, "ca_bundle": serverCA.pem + otherCA.pem}}, http.StatusOK, &ep)
		if !ep.TLS.ClientKeySet {
			t.Error("the key left out of a PATCH was dropped")
		}
		if err := accVerify(t, mep.Secret, accWebhook(t, mtls.receiver, publish(12))); err != nil {
			t.Errorf("webhook after a PATCH that kept the key: %v", err)
		}
	})

	t.Run("WithoutCABundle", func(t *testing.T) {
		accMust(t, h, http.MethodPatch, eps+"/"+mep.ID, adminKey,
			map[string]any{"tls": map[string]any{"client_certificate": clientCert, "client_key": clientKey}}, http.StatusOK, nil)
		a := attempts(publish(20), mep.ID, 1)[0]
		if a.ErrorClass != "tls_error" || a.Error == nil || !strings.Contains(*a.Error, "certificate signed by unknown authority") {
			t.Errorf("attempt without the CA bundle: %s %q, want the server's certificate refused", a.ErrorClass, dlvDeref(a.Error))
		}
		var ep authEndpoint
		accMust(t, h, http.MethodPatch, eps+"/"+mep.ID, adminKey, map[string]any{"tls": nil}, http.StatusOK, &ep)
		if ep.TLS != nil {
			t.Errorf("after tls null: tls %s, want null", conJSON(ep.TLS))
		}
	})

	t.Run("OAuthChanges", func(t *testing.T) {
		// New scopes, the secret left out: it is kept, and a new token
		// is fetched for the new scopes.
		ts.expect(clientSecret, "webhooks:write orders")
		var ep authEndpoint
		accMust(t, h, http.MethodPatch, eps+"/"+oep.ID, adminKey, map[string]any{"oauth": map[string]any{
			"token_url": ts.URL + "/token", "client_id": "hookd", "scopes": []string{"webhooks:write", "orders"}, "audience": "https://receiver.example",
		}}, http.StatusOK, &ep)
		if ep.OAuth == nil || !ep.OAuth.ClientSecretSet || len(ep.OAuth.Scopes) != 2 {
			t.Errorf("after the PATCH: oauth %s", conJSON(ep.OAuth))
		}
		before := ts.requests.Load()
		if err := accVerify(t, oep.Secret, accWebhook(t, oauthRecv, publish(30))); err != nil {
			t.Errorf("webhook after the scopes changed: %v", err)
		}
		if n := ts.requests.Load() - before; n != 1 {
			t.Errorf("%d token requests after the scopes changed, want 1", n)
		}
		// Another token URL or client ID with the secret left out: refused,
		// so that the stored secret cannot be sent to another server.
		for name, o := range map[string]map[string]any{
			"OtherTokenURL": {"token_url": ts.URL + "/elsewhere", "client_id": "hookd"},
			"OtherClientID": {"token_url": ts.URL + "/token", "client_id": "someone-else"},
		} {
			accCheckProblem(t, name, accDo(t, h, http.MethodPatch, eps+"/"+oep.ID, adminKey, map[string]any{"oauth": o}),
				http.StatusUnprocessableEntity, "oauth.client_secret")
		}

		// The token server refuses the secret: failed attempts that say so.
		ts.expect("another-secret", "webhooks:write orders")
		ts.mu.Lock()
		clear(ts.issued)
		ts.mu.Unlock()
		for i, a := range attempts(publish(31), oep.ID, 2) {
			if a.ErrorClass != "oauth_error" || a.Error == nil || !strings.HasPrefix(*a.Error, "oauth token: ") ||
				!strings.Contains(*a.Error, "HTTP 401") || strings.Contains(*a.Error, clientSecret) {
				t.Errorf("attempt %d refused by the token server: %s %q", i, a.ErrorClass, dlvDeref(a.Error))
			}
		}

		// The token server is down.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		down := "http://" + ln.Addr().String() + "/token"
		_ = ln.Close()
		accMust(t, h, http.MethodPatch, eps+"/"+oep.ID, adminKey, map[string]any{"oauth": map[string]any{
			"token_url": down, "client_id": "hookd", "client_secret": clientSecret,
		}}, http.StatusOK, nil)
		a := attempts(publish(32), oep.ID, 1)[0]
		if a.ErrorClass != "oauth_error" || a.Error == nil || !strings.Contains(*a.Error, "oauth token: dial tcp: connect: connection refused") {
			t.Errorf("attempt with the token server down: %s %q", a.ErrorClass, dlvDeref(a.Error))
		}

		accMust(t, h, http.MethodPatch, eps+"/"+oep.ID, adminKey, map[string]any{"oauth": nil}, http.StatusOK, &ep)
		if ep.OAuth != nil {
			t.Errorf("after oauth null: oauth %s, want null", conJSON(ep.OAuth))
		}
	})
}

func dlvDeref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
