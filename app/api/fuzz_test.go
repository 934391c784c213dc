package api_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/app/api"
	"github.com/hookd/hookd/app/events"
	"github.com/hookd/hookd/app/links"
	"github.com/hookd/hookd/app/registry"
	"github.com/hookd/hookd/outbox/outboxtest"
)

const fuzzKey = "fuzz-admin-key-0123456789"

// FuzzRequestDecoding sends arbitrary bodies to every operation that takes
// one: whatever the bytes, the answer is a success or a 4xx problem, never
// a 5xx and never a panic.
func FuzzRequestDecoding(f *testing.F) {
	db, _ := outboxtest.Schema(f)
	log := slog.New(slog.DiscardHandler)
	if err := app.Migrate(f.Context(), db, log); err != nil {
		f.Fatal(err)
	}
	reg := registry.New(db, registry.Config{AllowPrivateTargets: true})
	h := api.New(reg, events.NewStore(db), links.NewService(db), nil, log, api.Config{AdminAPIKey: fuzzKey, MaxEventBytes: 4096}).Handler()

	a, err := reg.CreateApp(f.Context(), registry.AppInput{Name: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	ep, _, err := reg.CreateEndpoint(f.Context(), a.ID, registry.EndpointInput{URL: "http://127.0.0.1:9/hook"})
	if err != nil {
		f.Fatal(err)
	}
	routes := []struct {
		method, path string
		endpointURL  bool // the body may set an endpoint's URL
	}{
		{http.MethodPost, "/v1/apps", false},
		{http.MethodPatch, "/v1/apps/" + a.ID, false},
		{http.MethodPost, "/v1/apps/" + a.ID + "/endpoints", true},
		{http.MethodPatch, "/v1/apps/" + a.ID + "/endpoints/" + ep.ID, true},
		{http.MethodPost, "/v1/apps/" + a.ID + "/endpoints/" + ep.ID + "/disable", false},
		{http.MethodPost, "/v1/apps/" + a.ID + "/endpoints/" + ep.ID + "/secret/rotate", false},
		{http.MethodPost, "/v1/apps/" + a.ID + "/events", false},
		{http.MethodPost, "/v1/event-types", false},
		{http.MethodPost, "/v1/api-keys", false},
		{http.MethodPost, "/v1/apps/" + a.ID + "/links", false},
	}
	for i, body := range []string{
		`{"name":"acme","metadata":{"k":"v"}}`,
		`{"name":"acme"}`,
		`{"url":"http://127.0.0.1:9/h","event_types":["a.b"],"filter":{"amount":{"$gte":10}},"headers":{"X-A":"b"},"rate_limit":5}`,
		`{"filter":null,"rate_limit":0,"headers":{}}`,
		`{"reason":"maintenance"}`,
		`{"grace_period_seconds":0}`,
		`{"type":"invoice.paid","payload":{"amount":10,"nested":{"a":[1,2,{"b":null}]}}}`,
		`{"name":"invoice.paid","schema":{"type":"object","properties":{"amount":{"type":"integer"}}}}`,
		`{"name":"ci","app_id":"` + a.ID + `"}`,
		`{"url":"https://example.com","code":"abc"}`,
	} {
		f.Add(uint8(i), []byte(body))
	}
	f.Add(uint8(6), []byte(`{"type":"x","payload":[1]}`))
	f.Add(uint8(2), []byte(`{"url":"http://[::1"}`))
	f.Add(uint8(0), []byte(`{"name":"\u0000"}`))
	f.Add(uint8(7), []byte(`{"name":"t","schema":{"$ref":"file:///etc/passwd"}}`))
	f.Add(uint8(3), []byte(`{"filter":{"$or":[]}}`))

	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := routes[int(route)%len(routes)]
		if r.endpointURL && !fuzzLoopbackOnly(body) {
			t.Skip("endpoints are created at loopback URLs only")
		}
		req := httptest.NewRequestWithContext(t.Context(), r.method, r.path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+fuzzKey)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s with %q = %d: %s", r.method, r.path, body, rec.Code, rec.Body)
		}
		if rec.Code < 400 {
			return
		}
		var p struct {
			Type   string `json:"type"`
			Status int    `json:"status"`
			Detail string `json:"detail"`
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%s %s with %q = %d with Content-Type %q, want a problem", r.method, r.path, body, rec.Code, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code || !strings.HasPrefix(p.Type, "urn:hookd:problem:") || p.Detail == "" {
			t.Fatalf("%s %s with %q = %d with problem %s (%v)", r.method, r.path, body, rec.Code, rec.Body, err)
		}
	})
}

// fuzzLoopbackOnly reports whether body, were it accepted, would give an
// endpoint no URL off loopback: every "url" member (in any case, as
// encoding/json matches fields) that parses as a URL with a host names
// localhost or a loopback address. A body that is not JSON is refused and
// creates nothing.
func fuzzLoopbackOnly(body []byte) bool {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return true
	}
	for k, v := range m {
		s, ok := v.(string)
		if !ok || !strings.EqualFold(k, "url") {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			continue
		}
		host := u.Hostname()
		if addr, err := netip.ParseAddr(host); (err != nil || !addr.IsLoopback()) && !strings.EqualFold(host, "localhost") {
			return false
		}
	}
	return true
}
