package portal_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/hookd/hookd/app/portal"
)

func TestCheckFrameAncestors(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"'none'", "'self'", "https://app.example.com", "'self' https://a.example.com https://*.b.example.com:8443"} {
		if err := portal.CheckFrameAncestors(ok); err != nil {
			t.Errorf("CheckFrameAncestors(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "  ", "'none' 'self'", "https://a.example.com; script-src *", "https://a.example.com,https://b.example.com",
		"'unsafe-inline'", "\"https://a.example.com\"", "https://a.example.com\n", "https://é.example.com"} {
		if err := portal.CheckFrameAncestors(bad); err == nil {
			t.Errorf("CheckFrameAncestors(%q) = nil, want an error", bad)
		}
	}
}

// TestHandlerWithoutSession: without a session the portal answers 401
// with its security headers, and serves its assets to anyone.
func TestHandlerWithoutSession(t *testing.T) {
	t.Parallel()
	p, err := portal.New(portal.NewSessions(nil, "http://127.0.0.1:8080"), nil, nil, nil, nil, slog.New(slog.DiscardHandler), portal.Config{FrameAncestors: "https://app.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Handler()
	get := func(path string) *http.Response {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Result()
	}
	for _, path := range []string{"/portal/", "/portal/endpoints", "/portal/login", "/portal/login?token=not-a-token", "/portal/login?token=hkp_" + strings.Repeat("a", 1000)} {
		resp := get(path)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s = %d, want 401", path, resp.StatusCode)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors https://app.example.com;"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %q", path, csp, want)
			}
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v", path, resp.Header)
		}
	}
	css := get("/portal/static/portal.css")
	if css.StatusCode != http.StatusOK || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") {
		t.Errorf("GET portal.css = %d %s", css.StatusCode, css.Header.Get("Content-Type"))
	}
	page := get("/portal/endpoints")
	body, _ := io.ReadAll(page.Body)
	m := regexpSrc.FindStringSubmatch(string(body))
	if m == nil {
		t.Fatalf("the page loads no htmx:\n%s", body)
	}
	js := get(m[1])
	if js.StatusCode != http.StatusOK || !strings.Contains(js.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("GET %s = %d, Cache-Control %q", m[1], js.StatusCode, js.Header.Get("Cache-Control"))
	}
	if resp := get("/portal/assets/0.0.0/htmx.min.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET another version's htmx = %d, want 404", resp.StatusCode)
	}
}

var regexpSrc = regexp.MustCompile(`<script src="(/portal/assets/[^"]+)" integrity="sha384-`)
