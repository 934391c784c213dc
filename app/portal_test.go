package app_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// portalLink is the API's answer to POST /v1/apps/{app_id}/portal-sessions.
type portalLink struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (h *harness) openPortal(appID string, body any) portalLink {
	h.t.Helper()
	var l portalLink
	if code := h.do(http.MethodPost, "/v1/apps/"+appID+"/portal-sessions", body, &l); code != http.StatusCreated {
		h.t.Fatalf("POST portal-sessions of %s = %d, want 201", appID, code)
	}
	return l
}

// portalClient is a browser-like client of the portal: it keeps cookies
// and says, as a browser does, that its requests come from the portal's
// own pages.
type portalClient struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

// foreign finds what a page loads or links to off its own origin.
var foreign = regexp.MustCompile(`(?i)(src|href|action)="(https?:)?//`)

var csrfInput = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// login opens link and keeps the session cookie and the CSRF token of the
// page it lands on.
func login(t *testing.T, base, link string) (*portalClient, *http.Response, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	pc := &portalClient{t: t, base: base, c: &http.Client{Jar: jar}}
	resp, page := pc.get(strings.TrimPrefix(link, base))
	if m := csrfInput.FindStringSubmatch(page); m != nil {
		pc.csrf = m[1]
	}
	return pc, resp, page
}

func (pc *portalClient) get(path string) (*http.Response, string) {
	pc.t.Helper()
	req, _ := http.NewRequestWithContext(pc.t.Context(), http.MethodGet, pc.base+path, nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := pc.c.Do(req)
	if err != nil {
		pc.t.Fatalf("GET %s: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp, string(b)
}

// post submits form to path with the CSRF token (unless form sets
// csrf_token) and headers, and returns the status without following a
// redirect.
func (pc *portalClient) post(path string, form url.Values, headers map[string]string) (int, string) {
	pc.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf_token"]; !ok {
		form.Set("csrf_token", pc.csrf)
	}
	req, _ := http.NewRequestWithContext(pc.t.Context(), http.MethodPost, pc.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", pc.base)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	c := *pc.c
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		pc.t.Fatalf("POST %s: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, string(b)
}

// TestPortalSessions checks what guards the consumer portal: a session
// opens one application only (another's endpoints and deliveries are 404
// through every action), its link's token becomes an HttpOnly cookie,
// actions need its CSRF token and the portal's own origin, and revoked or
// expired sessions open nothing.
func TestPortalSessions(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms"})
	recv, _ := switchable(t) // fails every delivery
	appA := h.mustCreate("/v1/apps", map[string]any{"name": "alpha"}).ID
	appB := h.mustCreate("/v1/apps", map[string]any{"name": "beta"}).ID
	epB := h.mustCreate("/v1/apps/"+appB+"/endpoints", map[string]any{"url": recv.URL}).ID
	h.mustCreate("/v1/apps/"+appB+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": 1}})
	var dlvB string
	waitFor(t, "app B's delivery to fail", func() bool {
		err := h.db.NewSelect().Table("deliveries").Column("id").Where("app_id = ? AND status = 'failed'", appB).Scan(t.Context(), &dlvB)
		return err == nil
	})

	t.Run("CreateBounds", func(t *testing.T) {
		before := time.Now()
		l := h.openPortal(appA, nil)
		if !strings.HasPrefix(l.URL, h.base+"/portal/login?token=hkp_") {
			t.Errorf("url = %q, want %s/portal/login?token=hkp_...", l.URL, h.base)
		}
		if d := l.ExpiresAt.Sub(before); d < 59*time.Minute || d > 61*time.Minute {
			t.Errorf("expires_at = %v, %v from now; want an hour by default", l.ExpiresAt, d)
		}
		l = h.openPortal(appA, map[string]any{"expires_in_seconds": 120})
		if d := time.Until(l.ExpiresAt); d < 100*time.Second || d > 130*time.Second {
			t.Errorf("expires_in_seconds 120: expires_at %v from now", d)
		}
		for _, n := range []int{0, 59, 604801} {
			var p map[string]any
			if code := h.do(http.MethodPost, "/v1/apps/"+appA+"/portal-sessions", map[string]any{"expires_in_seconds": n}, &p); code != http.StatusUnprocessableEntity {
				t.Errorf("expires_in_seconds %d = %d %v, want 422", n, code, p)
			}
		}
		if code := h.do(http.MethodPost, "/v1/apps/app_00000000000000000000000000/portal-sessions", nil, nil); code != http.StatusNotFound {
			t.Errorf("a session of no app = %d, want 404", code)
		}
		var key struct {
			Key string `json:"key"`
		}
		if code := h.do(http.MethodPost, "/v1/api-keys", map[string]any{"name": "b", "app_id": appB}, &key); code != http.StatusCreated {
			t.Fatalf("create B's key = %d", code)
		}
		code, _, _ := h.raw(http.MethodPost, "/v1/apps/"+appA+"/portal-sessions", "Bearer "+key.Key, "application/json", `{}`)
		if code != http.StatusNotFound {
			t.Errorf("B's key opening A's portal = %d, want 404", code)
		}
		code, _, _ = h.raw(http.MethodPost, "/v1/apps/"+appB+"/portal-sessions", "Bearer "+key.Key, "application/json", `{}`)
		if code != http.StatusCreated {
			t.Errorf("B's key opening B's portal = %d, want 201", code)
		}
	})

	l := h.openPortal(appA, nil)
	pc, resp, page := login(t, h.base, l.URL)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/portal/endpoints" || !strings.Contains(page, "alpha") {
		t.Fatalf("opening the link = %d at %s, want the endpoints page of alpha:\n%.2000s", resp.StatusCode, resp.Request.URL, page)
	}
	if pc.csrf == "" {
		t.Fatalf("no CSRF token in the page:\n%.2000s", page)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if foreign.MatchString(page) {
		t.Errorf("the page loads from another origin:\n%s", page)
	}
	cookies := pc.c.Jar.Cookies(&url.URL{Scheme: "http", Host: strings.TrimPrefix(h.base, "http://"), Path: "/portal/"})
	if len(cookies) != 1 {
		t.Fatalf("cookies for /portal/: %v, want the session's", cookies)
	}
	if pc.c.Jar.Cookies(&url.URL{Scheme: "http", Host: strings.TrimPrefix(h.base, "http://"), Path: "/v1/"}) != nil {
		t.Error("the session cookie is sent to /v1/ too, want /portal/ only")
	}

	t.Run("AnotherAppIsNotFound", func(t *testing.T) {
		for _, path := range []string{"/portal/endpoints/" + epB, "/portal/endpoints/" + epB + "?reveal=1", "/portal/deliveries/" + dlvB} {
			if resp, _ := pc.get(path); resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s = %d, want 404", path, resp.StatusCode)
			}
		}
		if _, page := pc.get("/portal/deliveries"); strings.Contains(page, dlvB) {
			t.Error("the deliveries page lists app B's delivery")
		}
		if _, page := pc.get("/portal/deliveries?endpoint_id=" + epB); strings.Contains(page, dlvB) {
			t.Error("the deliveries page lists app B's delivery by its endpoint")
		}
		for _, path := range []string{
			"/portal/endpoints/" + epB, "/portal/endpoints/" + epB + "/disable", "/portal/endpoints/" + epB + "/enable",
			"/portal/endpoints/" + epB + "/secret/rotate", "/portal/endpoints/" + epB + "/test", "/portal/endpoints/" + epB + "/delete",
			"/portal/deliveries/" + dlvB + "/retry",
		} {
			form := url.Values{"url": {"http://127.0.0.1:9/x"}, "type": {"order.paid"}}
			if code, _ := pc.post(path, form, nil); code != http.StatusNotFound {
				t.Errorf("POST %s = %d, want 404", path, code)
			}
		}
		var ep struct {
			URL      string `json:"url"`
			Disabled bool   `json:"disabled"`
		}
		if code := h.do(http.MethodGet, "/v1/apps/"+appB+"/endpoints/"+epB, nil, &ep); code != http.StatusOK || ep.URL != recv.URL || ep.Disabled {
			t.Errorf("app B's endpoint after the portal of A tried it: %d %+v", code, ep)
		}
		if s := h.deliveryStatus(dlvB); s != "failed" {
			t.Errorf("app B's delivery is %s, want still failed", s)
		}
	})

	t.Run("ActionsNeedTheCSRFTokenAndTheOwnOrigin", func(t *testing.T) {
		form := func() url.Values { return url.Values{"url": {recv.URL}} }
		noToken := form()
		noToken.Set("csrf_token", "")
		wrong := form()
		wrong.Set("csrf_token", strings.Repeat("x", len(pc.csrf)))
		for name, tc := range map[string]struct {
			form    url.Values
			headers map[string]string
		}{
			"NoToken":    {noToken, nil},
			"WrongToken": {wrong, nil},
			"CrossSite":  {form(), map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://attacker.example"}},
		} {
			if code, _ := pc.post("/portal/endpoints", tc.form, tc.headers); code != http.StatusForbidden {
				t.Errorf("%s: POST /portal/endpoints = %d, want 403", name, code)
			}
		}
		if n := h.count("SELECT count(*) FROM endpoints WHERE app_id = ?", appA); n != 0 {
			t.Fatalf("app A has %d endpoints after refused forms", n)
		}
		// The token in a header, as htmx sends it, does as well.
		f := form()
		f.Set("csrf_token", "")
		if code, _ := pc.post("/portal/endpoints", f, map[string]string{"X-CSRF-Token": pc.csrf}); code != http.StatusSeeOther {
			t.Errorf("POST /portal/endpoints with the header token = %d, want 303", code)
		}
		if code, body := pc.post("/portal/endpoints", url.Values{"url": {"not a url"}}, nil); code != http.StatusUnprocessableEntity || !strings.Contains(body, "url") {
			t.Errorf("POST an invalid URL = %d, want 422 naming url", code)
		}
		if code, _ := pc.post("/portal/endpoints", url.Values{"url": {recv.URL}, "filter": {"{"}}, nil); code != http.StatusUnprocessableEntity {
			t.Errorf("POST a filter that is not JSON = %d, want 422", code)
		}
		if n := h.count("SELECT count(*) FROM endpoints WHERE app_id = ?", appA); n != 1 {
			t.Errorf("app A has %d endpoints, want 1", n)
		}
	})

	t.Run("TestEventBodyBounds", func(t *testing.T) {
		var epA string
		if err := h.db.NewSelect().Table("endpoints").Column("id").Where("app_id = ?", appA).Scan(t.Context(), &epA); err != nil {
			t.Fatal(err)
		}
		big := `{"s":"` + strings.Repeat("x", 100<<10) + `"}` // more than other forms take
		if code, _ := pc.post("/portal/endpoints/"+epA+"/test", url.Values{"type": {"order.paid"}, "payload": {big}}, nil); code != http.StatusSeeOther {
			t.Errorf("a 100 KiB test event = %d, want 303", code)
		}
		huge := `{"s":"` + strings.Repeat("x", 300<<10) + `"}` // past HOOKD_MAX_EVENT_BYTES
		if code, _ := pc.post("/portal/endpoints/"+epA+"/test", url.Values{"type": {"order.paid"}, "payload": {huge}}, map[string]string{"X-CSRF-Token": pc.csrf}); code != http.StatusRequestEntityTooLarge {
			t.Errorf("a 300 KiB test event = %d, want 413", code)
		}
		if code, _ := pc.post("/portal/endpoints", url.Values{"url": {recv.URL}, "description": {big}}, map[string]string{"X-CSRF-Token": pc.csrf}); code != http.StatusRequestEntityTooLarge {
			t.Errorf("a 100 KiB endpoint form = %d, want 413", code)
		}
		if code, _ := pc.post("/portal/endpoints/"+epA+"/test", url.Values{"type": {"order.paid"}, "payload": {"[1]"}}, nil); code != http.StatusUnprocessableEntity {
			t.Errorf("a test event whose payload is no object = %d, want 422", code)
		}
	})

	t.Run("RevokedAndExpiredSessionsOpenNothing", func(t *testing.T) {
		other := h.openPortal(appA, nil)
		pc2, resp, _ := login(t, h.base, other.URL)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("second session: %d", resp.StatusCode)
		}
		if code := h.do(http.MethodDelete, "/v1/apps/"+appB+"/portal-sessions/"+other.ID, nil, nil); code != http.StatusNotFound {
			t.Errorf("revoking A's session under B = %d, want 404", code)
		}
		if code := h.do(http.MethodDelete, "/v1/apps/"+appA+"/portal-sessions/"+other.ID, nil, nil); code != http.StatusNoContent {
			t.Fatalf("revoke = %d, want 204", code)
		}
		if resp, _ := pc2.get("/portal/endpoints"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a revoked session's page = %d, want 401", resp.StatusCode)
		}
		if _, resp, _ := login(t, h.base, other.URL); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a revoked session's link = %d, want 401", resp.StatusCode)
		}
		if resp, _ := pc.get("/portal/endpoints"); resp.StatusCode != http.StatusOK {
			t.Errorf("another session of the app after the revocation = %d, want 200", resp.StatusCode)
		}

		short := h.openPortal(appA, map[string]any{"expires_in_seconds": 60})
		pc3, resp, _ := login(t, h.base, short.URL)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("short session: %d", resp.StatusCode)
		}
		if _, err := h.db.NewRaw("UPDATE portal_sessions SET expires_at = clock_timestamp() - interval '1 second' WHERE id = ?", short.ID).Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
		if resp, _ := pc3.get("/portal/endpoints"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("an expired session's page = %d, want 401", resp.StatusCode)
		}

		var all struct {
			Revoked int `json:"revoked"`
		}
		if code := h.do(http.MethodDelete, "/v1/apps/"+appA+"/portal-sessions", nil, &all); code != http.StatusOK || all.Revoked < 1 {
			t.Errorf("revoke all = %d %+v, want 200 and at least the first session", code, all)
		}
		if resp, _ := pc.get("/portal/endpoints"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("after revoking all, a page = %d, want 401", resp.StatusCode)
		}
	})

	t.Run("NoSession", func(t *testing.T) {
		resp, err := http.Get(h.base + "/portal/endpoints")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET /portal/endpoints without a session = %d, want 401", resp.StatusCode)
		}
		resp, err = http.Get(h.base + "/portal/login?token=hkp_nothing")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a made-up token = %d, want 401", resp.StatusCode)
		}
	})
}

// TestPortalFraming checks the headers that let a portal be embedded, or
// not: by default no page may frame it and its cookie is SameSite=Lax; with
// HOOKD_PORTAL_FRAME_ANCESTORS and an https HOOKD_PUBLIC_URL the CSP names
// the ancestors and the cookie is SameSite=None, Secure and Partitioned,
// which a frame on another site needs.
func TestPortalFraming(t *testing.T) {
	t.Parallel()
	loginHeaders := func(h *harness) http.Header {
		t.Helper()
		appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
		l := h.openPortal(appID, nil)
		u, err := url.Parse(l.URL)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.base+u.RequestURI(), nil)
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/portal/endpoints" {
			t.Fatalf("GET the link = %d to %q, want 303 to /portal/endpoints", resp.StatusCode, resp.Header.Get("Location"))
		}
		return resp.Header
	}

	t.Run("Default", func(t *testing.T) {
		t.Parallel()
		h := start(t, nil)
		hdr := loginHeaders(h)
		cookie := hdr.Get("Set-Cookie")
		for _, want := range []string{"hookd_portal=hkp_", "Path=/portal/", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(cookie, want) {
				t.Errorf("Set-Cookie %q lacks %q", cookie, want)
			}
		}
		if strings.Contains(cookie, "Secure") {
			t.Errorf("Set-Cookie %q: Secure over plain HTTP would not be kept", cookie)
		}
		if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || hdr.Get("X-Frame-Options") != "DENY" {
			t.Errorf("CSP %q, X-Frame-Options %q: want no framing", csp, hdr.Get("X-Frame-Options"))
		}
	})
	t.Run("Embedded", func(t *testing.T) {
		t.Parallel()
		h := start(t, map[string]string{
			"HOOKD_PUBLIC_URL":             "https://127.0.0.1:8443",
			"HOOKD_PORTAL_FRAME_ANCESTORS": "'self' https://127.0.0.1:3000",
		})
		appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
		if l := h.openPortal(appID, nil); !strings.HasPrefix(l.URL, "https://127.0.0.1:8443/portal/login?token=") {
			t.Errorf("url = %q, want it under HOOKD_PUBLIC_URL", l.URL)
		}
		hdr := loginHeaders(h)
		cookie := hdr.Get("Set-Cookie")
		for _, want := range []string{"HttpOnly", "Secure", "SameSite=None", "Partitioned"} {
			if !strings.Contains(cookie, want) {
				t.Errorf("Set-Cookie %q lacks %q", cookie, want)
			}
		}
		if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'self' https://127.0.0.1:3000;") || hdr.Get("X-Frame-Options") != "" {
			t.Errorf("CSP %q, X-Frame-Options %q: want frame-ancestors from HOOKD_PORTAL_FRAME_ANCESTORS", csp, hdr.Get("X-Frame-Options"))
		}
	})
}

// TestRetentionDeletesEndedPortalSessions: the reconciler deletes portal
// sessions a day after they ended, expired or revoked, and keeps the
// others.
func TestRetentionDeletesEndedPortalSessions(t *testing.T) {
	t.Parallel()
	h := start(t, reconcileFast)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	ids := map[string]string{}
	for _, name := range []string{"expired", "revoked", "recentlyExpired", "live"} {
		ids[name] = h.openPortal(appID, nil).ID
	}
	for name, set := range map[string]string{
		"expired":         "expires_at = clock_timestamp() - interval '25 hours'",
		"revoked":         "revoked_at = clock_timestamp() - interval '25 hours'",
		"recentlyExpired": "expires_at = clock_timestamp() - interval '23 hours'",
	} {
		if _, err := h.db.ExecContext(t.Context(), "UPDATE portal_sessions SET "+set+" WHERE id = ?", ids[name]); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the sessions ended a day ago to go", func() bool {
		return h.count(`SELECT count(*) FROM portal_sessions WHERE id IN (?, ?)`, ids["expired"], ids["revoked"]) == 0
	})
	if n := h.count(`SELECT count(*) FROM portal_sessions WHERE id IN (?, ?)`, ids["recentlyExpired"], ids["live"]); n != 2 {
		t.Errorf("%d of the recently ended and the live session left, want 2", n)
	}
}

// TestPortalRecover: the portal's recover form counts (dry run) and sends
// an endpoint the events it missed while disabled, within the session's
// app only, and refuses a bad form with a 422 naming the field.
func TestPortalRecover(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, nil)
	appA := h.mustCreate("/v1/apps", map[string]any{"name": "alpha"}).ID
	appB := h.mustCreate("/v1/apps", map[string]any{"name": "beta"}).ID
	ep := h.mustCreate("/v1/apps/"+appA+"/endpoints", map[string]any{"url": recv.URL}).ID
	epB := h.mustCreate("/v1/apps/"+appB+"/endpoints", map[string]any{"url": recv.URL}).ID
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	if code := h.do(http.MethodPost, "/v1/apps/"+appA+"/endpoints/"+ep+"/disable", nil, nil); code != http.StatusOK {
		t.Fatalf("disable = %d", code)
	}
	for n := range 3 {
		h.mustCreate("/v1/apps/"+appA+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": n}})
	}
	pc, _, _ := login(t, h.base, h.openPortal(appA, nil).URL)
	path := "/portal/endpoints/" + ep + "/recover"

	if code, page := pc.post(path, url.Values{"since": {since}}, nil); code != http.StatusConflict {
		t.Errorf("recover a disabled endpoint = %d, want 409:\n%.500s", code, page)
	}
	if code, page := pc.post(path, url.Values{"since": {since}, "dry_run": {"1"}}, nil); code != http.StatusOK || !strings.Contains(page, "Dry run: 3 missed events would be sent") {
		t.Errorf("dry run = %d, want 200 counting 3:\n%.3000s", code, page)
	}
	if code := h.do(http.MethodPost, "/v1/apps/"+appA+"/endpoints/"+ep+"/enable", nil, nil); code != http.StatusOK {
		t.Fatalf("enable = %d", code)
	}
	for _, bad := range []struct {
		form  url.Values
		field string
	}{
		{url.Values{}, "since"},
		{url.Values{"since": {"yesterday"}}, "since"},
		{url.Values{"since": {since}, "until": {"2000-01-01T00:00"}}, "until"},
		{url.Values{"since": {since}, "rate": {"0"}}, "rate"},
	} {
		if code, page := pc.post(path, bad.form, nil); code != http.StatusUnprocessableEntity || !strings.Contains(page, bad.field+":") {
			t.Errorf("recover %v = %d, want 422 on %s:\n%.500s", bad.form, code, bad.field, page)
		}
	}
	if code, _ := pc.post("/portal/endpoints/"+epB+"/recover", url.Values{"since": {since}}, nil); code != http.StatusNotFound {
		t.Errorf("recover another app's endpoint = %d, want 404", code)
	}
	if n := len(recv.got()); n != 0 {
		t.Fatalf("%d deliveries before the recovery, want 0", n)
	}
	if code, page := pc.post(path, url.Values{"since": {strings.TrimSuffix(since, "Z")[:16]}, "rate": {"50"}}, nil); code != http.StatusOK || !strings.Contains(page, "started") {
		t.Fatalf("recover = %d, want 200 started:\n%.3000s", code, page)
	}
	waitFor(t, "the 3 missed events", func() bool { return len(recv.got()) == 3 })
}
