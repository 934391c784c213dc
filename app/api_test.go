package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// raw sends a request as given, without following redirects, and returns
// the status, the decoded JSON body and the headers.
func (h *harness) raw(method, path, auth, contentType, body string) (int, map[string]any, http.Header) {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.base+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := h.noRedir.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

func TestAPIAuthentication(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	for name, auth := range map[string]string{
		"NoKey":       "",
		"WrongKey":    "Bearer not-the-key",
		"NotBearer":   "Basic " + adminKey,
		"EmptyBearer": "Bearer ",
	} {
		code, p, hdr := h.raw(http.MethodPost, "/v1/apps", auth, "application/json", `{"name":"x"}`)
		if code != http.StatusUnauthorized || hdr.Get("Content-Type") != "application/problem+json" || p["status"] != float64(401) {
			t.Errorf("%s: POST /v1/apps = %d %s %v, want 401 problem+json", name, code, hdr.Get("Content-Type"), p)
		}
	}
	if n := h.count(`SELECT count(*) FROM applications`); n != 0 {
		t.Errorf("unauthorized requests created %d apps", n)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		code, body, _ := h.raw(http.MethodGet, path, "", "", "")
		if code != http.StatusOK {
			t.Errorf("GET %s = %d %v, want 200", path, code, body)
		}
	}
	code, body, _ := h.raw(http.MethodGet, "/readyz", "", "", "")
	if checks, _ := body["checks"].(map[string]any); code != http.StatusOK || checks["postgres"] != "ok" || checks["redis"] != "ok" {
		t.Errorf("GET /readyz = %d %v, want postgres and redis ok", code, body)
	}
}

// missingApp is a well-formed application ID that names no application.
const missingApp = "app_00000000000000000000000000"

func TestAPIRejectsBadInput(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	auth := "Bearer " + adminKey
	for _, tc := range []struct {
		name, path, contentType, body string
		status                        int
		field                         string
	}{
		{"UnknownField", "/v1/apps", "application/json", `{"name":"a","nmae":"b"}`, 422, "nmae"},
		{"WrongType", "/v1/apps", "application/json", `{"name":42}`, 422, "name"},
		{"NotJSON", "/v1/apps", "application/json", `{"name":`, 400, ""},
		{"Empty", "/v1/apps", "application/json", ``, 400, ""},
		{"Trailing", "/v1/apps", "application/json", `{"name":"a"} {}`, 400, ""},
		{"FormEncoded", "/v1/apps", "application/x-www-form-urlencoded", `name=a`, 415, ""},
		{"TooLarge", "/v1/apps", "application/json", `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, 413, ""},
		{"BlankName", "/v1/apps", "application/json", `{"name":"  "}`, 422, "name"},
		{"RelativeURL", "/v1/apps/" + appID + "/endpoints", "", `{"url":"/hook"}`, 422, "url"},
		{"FTPURL", "/v1/apps/" + appID + "/endpoints", "", `{"url":"ftp://127.0.0.1/"}`, 422, "url"},
		{"Credentials", "/v1/apps/" + appID + "/endpoints", "", `{"url":"http://u:p@127.0.0.1:9/"}`, 422, "url"},
		{"BadEventType", "/v1/apps/" + appID + "/endpoints", "", `{"url":"http://127.0.0.1:9/","event_types":["a b"]}`, 422, "event_types"},
		{"EndpointOfMissingApp", "/v1/apps/" + missingApp + "/endpoints", "", `{"url":"http://127.0.0.1:9/"}`, 404, ""},
		{"LinkOfMissingApp", "/v1/apps/" + missingApp + "/links", "", `{"url":"https://example.com/"}`, 404, ""},
		{"MalformedAppID", "/v1/apps/app!missing/endpoints", "", `{"url":"http://127.0.0.1:9/"}`, 422, "app_id"},
		{"UnknownAppUID", "/v1/apps/app_missing/endpoints", "", `{"url":"http://127.0.0.1:9/"}`, 404, ""},
		{"LinkBadCode", "/v1/apps/" + appID + "/links", "", `{"url":"https://example.com/","code":"a/b"}`, 422, "code"},
		{"LinkBadURL", "/v1/apps/" + appID + "/links", "", `{"url":"javascript:alert(1)"}`, 422, "url"},
		{"NULInName", "/v1/apps", "", `{"name":"a\u0000b"}`, 422, "name"},
		{"NULInDescription", "/v1/apps/" + appID + "/endpoints", "", `{"url":"http://127.0.0.1:9/","description":"a\u0000"}`, 422, "description"},
		{"NULInEventType", "/v1/apps/" + appID + "/endpoints", "", `{"url":"http://127.0.0.1:9/","event_types":["a\u0000"]}`, 422, "event_types"},
		{"NULInLinkURL", "/v1/apps/" + appID + "/links", "", `{"url":"https://example.com/\u0000"}`, 422, "url"},
		{"NULInAppID", "/v1/apps/app%00/links", "", `{"url":"https://example.com/"}`, 404, ""},
	} {
		code, p, hdr := h.raw(http.MethodPost, tc.path, auth, tc.contentType, tc.body)
		if code != tc.status || hdr.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: status %d %s %v, want %d problem+json", tc.name, code, hdr.Get("Content-Type"), p, tc.status)
			continue
		}
		if p["type"] == "" || p["detail"] == "" || p["status"] != float64(tc.status) {
			t.Errorf("%s: incomplete problem %v", tc.name, p)
		}
		if tc.field != "" && p["field"] != tc.field {
			t.Errorf("%s: field = %v, want %s", tc.name, p["field"], tc.field)
		}
	}
	if n := h.count(`SELECT count(*) FROM applications`); n != 1 {
		t.Errorf("%d apps after bad requests, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM endpoints`) + h.count(`SELECT count(*) FROM links`); n != 0 {
		t.Errorf("bad requests created %d endpoints and links", n)
	}

	// A taken code is a conflict.
	h.mustCreate("/v1/apps/"+appID+"/links", map[string]any{"url": "https://example.com", "code": "taken"})
	if code, p, _ := h.raw(http.MethodPost, "/v1/apps/"+appID+"/links", auth, "", `{"url":"https://example.com","code":"taken"}`); code != http.StatusConflict {
		t.Errorf("duplicate code = %d %v, want 409", code, p)
	}
	if code, p, _ := h.raw(http.MethodGet, "/v1/apps/app!missing", auth, "", ""); code != http.StatusUnprocessableEntity || p["field"] != "app_id" {
		t.Errorf("GET /v1/apps/app!missing = %d %v, want 422 on app_id", code, p)
	}
	// app_missing is no app ID, but may be a uid: none has it.
	for _, path := range []string{"/v1/apps/" + missingApp, "/v1/apps/app_missing", "/v1/apps/%00", "/r/%00", "/r/a%0Ab"} {
		if code, _, _ := h.raw(http.MethodGet, path, auth, "", ""); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, code)
		}
	}
}

// TestPrivateTargetsRefusedUnlessAllowed: with private targets disallowed,
// an endpoint on a loopback, private, link-local or unspecified address is
// refused and nothing is written; with them allowed, the loopback ones are
// accepted. (Which addresses count as public is TestIsPublic's, in
// tasks/delivery: no test creates an endpoint off loopback.)
func TestPrivateTargetsRefusedUnlessAllowed(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_ALLOW_PRIVATE_TARGETS": "false"})
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	auth := "Bearer " + adminKey
	loopback := []string{
		"http://127.0.0.1:9000/hook",
		"http://localhost/hook",
		"http://[::1]/",
	}
	for _, u := range append([]string{
		"http://10.1.2.3/",
		"http://192.168.0.1/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[fd00:ec2::254]/",
		"http://0.0.0.0/",
	}, loopback...) {
		code, p, _ := h.raw(http.MethodPost, "/v1/apps/"+appID+"/endpoints", auth, "", `{"url":"`+u+`"}`)
		if detail, _ := p["detail"].(string); code != http.StatusUnprocessableEntity || p["field"] != "url" || !strings.Contains(detail, "target not allowed") {
			t.Errorf("endpoint %s = %d %v, want 422 on url, target not allowed", u, code, p)
		}
	}
	if n := h.count(`SELECT count(*) FROM endpoints`); n != 0 {
		t.Errorf("refused targets created %d endpoints", n)
	}

	allowed := start(t, nil) // the harness allows private targets
	appID = allowed.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	for _, u := range loopback {
		allowed.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": u})
	}
}
