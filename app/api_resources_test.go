package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The resource tests drive the /v1 API of a running hookd: applications,
// endpoints, event types, events and deliveries. Their helpers carry a res
// prefix so that they cannot clash with other tests of the package.

type resApp struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Metadata  map[string]string `json:"metadata"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

type resEndpoint struct {
	ID             string            `json:"id"`
	AppID          string            `json:"app_id"`
	URL            string            `json:"url"`
	Description    string            `json:"description"`
	EventTypes     []string          `json:"event_types"`
	Filter         any               `json:"filter"`
	Headers        map[string]string `json:"headers"`
	RateLimit      *int              `json:"rate_limit"`
	Disabled       bool              `json:"disabled"`
	DisabledReason *string           `json:"disabled_reason"`
	DisabledAt     *time.Time        `json:"disabled_at"`
	Metadata       map[string]string `json:"metadata"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
	// Secret is only in the response to a creation.
	Secret string `json:"secret"`
}

type resEventType struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Schema      any       `json:"schema"`
	Archived    bool      `json:"archived"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

type resEvent struct {
	ID         string          `json:"id"`
	AppID      string          `json:"app_id"`
	Type       string          `json:"type"`
	Payload    json.RawMessage `json:"payload"`
	CreatedAt  time.Time       `json:"created_at"`
	Deliveries *struct {
		Pending   int `json:"pending"`
		Succeeded int `json:"succeeded"`
		Failed    int `json:"failed"`
	} `json:"deliveries"`
}

type resDelivery struct {
	ID             string     `json:"id"`
	AppID          string     `json:"app_id"`
	EventID        string     `json:"event_id"`
	EventType      string     `json:"event_type"`
	EndpointID     string     `json:"endpoint_id"`
	Status         string     `json:"status"`
	AttemptCount   int        `json:"attempt_count"`
	LastStatusCode *int       `json:"last_status_code"`
	LastError      *string    `json:"last_error"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	SucceededAt    *time.Time `json:"succeeded_at"`
	FailedAt       *time.Time `json:"failed_at"`
	Attempts       []struct {
		AttemptedAt  time.Time `json:"attempted_at"`
		DurationMS   float64   `json:"duration_ms"`
		StatusCode   *int      `json:"status_code"`
		ResponseBody *string   `json:"response_body"`
		Error        *string   `json:"error"`
	} `json:"attempts"`
}

// resPage is one page of a list.
type resPage[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

// resKeyed is a list item named by its id, or (event types) its name.
type resKeyed struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type resProblem struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
}

// resDo sends body (raw JSON; "" for none) with the admin key and returns
// the status, the raw response body and the response headers.
func resDo(h *harness, method, path, body string) (int, []byte, http.Header) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read response: %v", method, path, err)
	}
	return resp.StatusCode, b, resp.Header
}

// resDecode decodes a JSON response body into out.
func resDecode(t *testing.T, b []byte, out any) {
	t.Helper()
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// resMust sends body and fails unless hookd answers want; it decodes the
// response into out when out is not nil.
func resMust(h *harness, method, path, body string, want int, out any) {
	h.t.Helper()
	code, b, _ := resDo(h, method, path, body)
	if code != want {
		h.t.Fatalf("%s %s = %d %s, want %d", method, path, code, b, want)
	}
	if out != nil {
		resDecode(h.t, b, out)
	}
}

// resCheckProblem reports unless a response is an RFC 9457 problem with
// status whose field is field ("" for none).
func resCheckProblem(t *testing.T, name string, code int, body []byte, hdr http.Header, status int, field string) {
	t.Helper()
	var p resProblem
	_ = json.Unmarshal(body, &p)
	if code != status || hdr.Get("Content-Type") != "application/problem+json" || p.Status != status ||
		!strings.HasPrefix(p.Type, "urn:hookd:problem:") || p.Detail == "" {
		t.Errorf("%s: %d %s %s, want a %d problem", name, code, hdr.Get("Content-Type"), body, status)
		return
	}
	if p.Field != field {
		t.Errorf("%s: problem field = %q, want %q (%s)", name, p.Field, field, body)
	}
}

// resAllPages follows next_cursor from path and returns the keys (id or
// name) of the items of each page.
func resAllPages(h *harness, path string) [][]string {
	h.t.Helper()
	var pages [][]string
	cursor := ""
	for range 50 {
		p := path
		if cursor != "" {
			sep := "?"
			if strings.Contains(p, "?") {
				sep = "&"
			}
			p += sep + "cursor=" + url.QueryEscape(cursor)
		}
		var page resPage[resKeyed]
		resMust(h, http.MethodGet, p, "", http.StatusOK, &page)
		if page.Data == nil {
			h.t.Fatalf("GET %s: data is null, want an array", p)
		}
		keys := []string{}
		for _, it := range page.Data {
			keys = append(keys, resFirst(it.ID, it.Name))
		}
		pages = append(pages, keys)
		if page.NextCursor == nil {
			return pages
		}
		if len(page.Data) == 0 || *page.NextCursor == "" {
			h.t.Fatalf("GET %s: empty page or cursor with a next_cursor %v", p, page.NextCursor)
		}
		cursor = *page.NextCursor
	}
	h.t.Fatalf("GET %s: more than 50 pages", path)
	return nil
}

// resKeys lists all the keys of path, across pages.
func resKeys(h *harness, path string) []string {
	h.t.Helper()
	keys := slices.Concat(resAllPages(h, path)...)
	if keys == nil {
		keys = []string{}
	}
	return keys
}

func resFirst(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// resNextMilli waits until the clock has passed the current millisecond,
// so that the next ID hookd generates sorts after those made so far (IDs
// made within one millisecond sort randomly).
func resNextMilli() {
	ms := time.Now().UnixMilli()
	for time.Now().UnixMilli() == ms {
		time.Sleep(100 * time.Microsecond)
	}
}

// resQueryTime formats t for a since/until query parameter: RFC 3339 with
// a "+02:00" offset, which must be URL-encoded.
func resQueryTime(t time.Time) string {
	return url.QueryEscape(t.In(time.FixedZone("", 2*60*60)).Format(time.RFC3339Nano))
}

// resJSONValue decodes a JSON literal, to compare documents by value.
func resJSONValue(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return v
}

// resManyKeys returns a JSON object of n string pairs, with keys named
// prefix0, prefix1, ...
func resManyKeys(prefix string, n int) string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("%s%d", prefix, i)] = "v"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func resReversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// resNewestFirst sorts IDs as lists return them: newest, that is greatest,
// first.
func resNewestFirst(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	slices.Reverse(out)
	if out == nil {
		out = []string{}
	}
	return out
}

func resPtr[T any](v T) *T { return &v }

func TestApplicationsCRUD(t *testing.T) {
	t.Parallel()
	h := start(t, nil)

	// Create.
	meta := map[string]string{"plan": "pro", "region": "eu-west"}
	var a resApp
	resMust(h, http.MethodPost, "/v1/apps", `{"name":"  acme  ","metadata":{"plan":"pro","region":"eu-west"}}`, http.StatusCreated, &a)
	if !strings.HasPrefix(a.ID, "app_") || a.Name != "acme" || !maps.Equal(a.Metadata, meta) || a.CreatedAt.IsZero() || a.UpdatedAt.IsZero() {
		t.Errorf("created app = %+v, want the trimmed name and the metadata echoed", a)
	}

	// Get.
	var got resApp
	resMust(h, http.MethodGet, "/v1/apps/"+a.ID, "", http.StatusOK, &got)
	if d := cmp.Diff(a, got); d != "" {
		t.Errorf("GET differs from the creation response (-created +got):\n%s", d)
	}

	// List, newest first, with cursor pagination.
	ids := []string{a.ID}
	for i := range 4 {
		resNextMilli()
		ids = append(ids, h.mustCreate("/v1/apps", map[string]any{"name": fmt.Sprintf("app %d", i)}).ID)
	}
	var bare resApp
	resMust(h, http.MethodGet, "/v1/apps/"+ids[1], "", http.StatusOK, &bare)
	if bare.Metadata == nil || len(bare.Metadata) != 0 {
		t.Errorf("app created without metadata has metadata %v, want {}", bare.Metadata)
	}
	pages := resAllPages(h, "/v1/apps?limit=2")
	if want := [][]string{{ids[4], ids[3]}, {ids[2], ids[1]}, {ids[0]}}; !cmp.Equal(pages, want) {
		t.Errorf("pages of 2 = %v, want %v", pages, want)
	}
	if all := resKeys(h, "/v1/apps"); !cmp.Equal(all, resReversed(ids)) {
		t.Errorf("default page = %v, want %v", all, resReversed(ids))
	}
	if p := resAllPages(h, "/v1/apps?limit=250"); len(p) != 1 || len(p[0]) != 5 {
		t.Errorf("limit=250 = %v, want one page of 5", p)
	}
	for _, tc := range []struct{ name, query, field string }{
		{"GarbageCursor", "cursor=garbage", "cursor"},
		{"NotBase64Cursor", "cursor=%21%21%21", "cursor"},
		{"ControlCursor", "cursor=AQID", "cursor"},     // base64 of 1, 2, 3
		{"InvalidUTF8Cursor", "cursor=__5B", "cursor"}, // base64 of ff fe 41
		{"ZeroLimit", "limit=0", "limit"},
		{"LimitOverMax", "limit=251", "limit"},
		{"NegativeLimit", "limit=-1", "limit"},
		{"LimitNotANumber", "limit=ten", "limit"},
	} {
		code, b, hdr := resDo(h, http.MethodGet, "/v1/apps?"+tc.query, "")
		resCheckProblem(t, tc.name, code, b, hdr, http.StatusUnprocessableEntity, tc.field)
	}

	// Patch: only the given fields change, and updated_at moves.
	before := got
	for _, tc := range []struct {
		name, body string
		apply      func(*resApp)
	}{
		{"Name", `{"name":"acme corp"}`, func(a *resApp) { a.Name = "acme corp" }},
		{"Metadata", `{"metadata":{"plan":"enterprise"}}`, func(a *resApp) { a.Metadata = map[string]string{"plan": "enterprise"} }},
		{"Both", `{"name":"acme inc","metadata":{}}`, func(a *resApp) { a.Name, a.Metadata = "acme inc", map[string]string{} }},
		{"Nothing", `{}`, func(*resApp) {}},
	} {
		var patched, after resApp
		resMust(h, http.MethodPatch, "/v1/apps/"+a.ID, tc.body, http.StatusOK, &patched)
		resMust(h, http.MethodGet, "/v1/apps/"+a.ID, "", http.StatusOK, &after)
		if d := cmp.Diff(patched, after); d != "" {
			t.Errorf("%s: GET differs from the PATCH response (-patch +get):\n%s", tc.name, d)
		}
		want := before
		tc.apply(&want)
		if d := cmp.Diff(want, after, cmpopts.IgnoreFields(resApp{}, "UpdatedAt")); d != "" {
			t.Errorf("%s: app after PATCH (-want +got):\n%s", tc.name, d)
		}
		if !after.UpdatedAt.After(before.UpdatedAt) {
			t.Errorf("%s: updated_at %v did not move from %v", tc.name, after.UpdatedAt, before.UpdatedAt)
		}
		before = after
	}
	for _, tc := range []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"BlankName", "/v1/apps/" + a.ID, `{"name":" "}`, 422, "name"},
		{"TooManyMetadataKeys", "/v1/apps/" + a.ID, `{"metadata":` + resManyKeys("k", 51) + `}`, 422, "metadata"},
		{"UnknownField", "/v1/apps/" + a.ID, `{"nmae":"x"}`, 422, "nmae"},
		{"MissingApp", "/v1/apps/" + missingApp, `{"name":"x"}`, 404, ""},
		{"MalformedID", "/v1/apps/app!nope", `{"name":"x"}`, 422, "app_id"},
		{"UnknownUID", "/v1/apps/app_nope", `{"name":"x"}`, 404, ""},
	} {
		code, b, hdr := resDo(h, http.MethodPatch, tc.path, tc.body)
		resCheckProblem(t, tc.name, code, b, hdr, tc.status, tc.field)
	}
	var unchanged resApp
	resMust(h, http.MethodGet, "/v1/apps/"+a.ID, "", http.StatusOK, &unchanged)
	if d := cmp.Diff(before, unchanged); d != "" {
		t.Errorf("refused PATCHes changed the app (-before +after):\n%s", d)
	}

	// Delete: the app goes with its endpoints and their secrets.
	victim := ids[2]
	ep := h.mustCreate("/v1/apps/"+victim+"/endpoints", map[string]any{"url": "http://127.0.0.1:9/hook"})
	resMust(h, http.MethodDelete, "/v1/apps/"+victim, "", http.StatusNoContent, nil)
	code, b, hdr := resDo(h, http.MethodGet, "/v1/apps/"+victim, "")
	resCheckProblem(t, "GetDeleted", code, b, hdr, http.StatusNotFound, "")
	if n := h.count(`SELECT count(*) FROM endpoints WHERE app_id = ?`, victim); n != 0 {
		t.Errorf("%d endpoints of the deleted app remain", n)
	}
	if n := h.count(`SELECT count(*) FROM endpoint_secrets WHERE endpoint_id = ?`, ep.ID); n != 0 {
		t.Errorf("%d secrets of the deleted app's endpoint remain", n)
	}
	code, b, hdr = resDo(h, http.MethodDelete, "/v1/apps/"+victim, "")
	resCheckProblem(t, "DeleteTwice", code, b, hdr, http.StatusNotFound, "")
	if all, want := resKeys(h, "/v1/apps"), resReversed(slices.Delete(slices.Clone(ids), 2, 3)); !cmp.Equal(all, want) {
		t.Errorf("apps after delete = %v, want %v", all, want)
	}
	if n := h.count(`SELECT count(*) FROM applications`); n != 4 {
		t.Errorf("%d apps in the database, want 4", n)
	}
}

func TestEndpointsCRUD(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	base := "/v1/apps/" + appID + "/endpoints"

	// Create with every field and read them back.
	var full resEndpoint
	resMust(h, http.MethodPost, base, `{
		"url": "http://127.0.0.1:9/hooks/full",
		"description": "primary",
		"event_types": ["invoice.paid", "link.clicked"],
		"filter": {"amount": {"$gte": 100}, "currency": "EUR"},
		"headers": {"x-api-key": "k1", "X-TEAM": "ops", "authorization": "Bearer t0ken"},
		"rate_limit": 10,
		"disabled": true,
		"metadata": {"env": "prod", "owner": "billing"}
	}`, http.StatusCreated, &full)
	wantFull := resEndpoint{
		AppID: appID, URL: "http://127.0.0.1:9/hooks/full", Description: "primary",
		EventTypes: []string{"invoice.paid", "link.clicked"},
		Filter:     resJSONValue(t, `{"amount":{"$gte":100},"currency":"EUR"}`),
		Headers:    map[string]string{"X-Api-Key": "k1", "X-Team": "ops", "Authorization": "Bearer t0ken"},
		RateLimit:  resPtr(10), Disabled: true, DisabledReason: resPtr("disabled on creation"),
		Metadata: map[string]string{"env": "prod", "owner": "billing"},
	}
	ignore := cmpopts.IgnoreFields(resEndpoint{}, "ID", "CreatedAt", "UpdatedAt", "DisabledAt", "Secret")
	if d := cmp.Diff(wantFull, full, ignore); d != "" {
		t.Errorf("created endpoint (-want +got):\n%s", d)
	}
	if !strings.HasPrefix(full.ID, "ep_") || !strings.HasPrefix(full.Secret, "whsec_") || full.CreatedAt.IsZero() {
		t.Errorf("created endpoint id %q, secret %q, created_at %v", full.ID, full.Secret, full.CreatedAt)
	}
	if full.DisabledAt == nil {
		t.Errorf("endpoint created disabled has no disabled_at")
	}
	var got resEndpoint
	resMust(h, http.MethodGet, base+"/"+full.ID, "", http.StatusOK, &got)
	if d := cmp.Diff(full, got, cmpopts.IgnoreFields(resEndpoint{}, "Secret")); d != "" {
		t.Errorf("GET differs from the creation response (-created +got):\n%s", d)
	}
	if got.Secret != "" {
		t.Errorf("GET of an endpoint reveals its secret")
	}

	// The defaults of a minimal endpoint.
	resNextMilli()
	var minimal resEndpoint
	resMust(h, http.MethodPost, base, `{"url":"http://127.0.0.1:9/hooks/min"}`, http.StatusCreated, &minimal)
	wantMin := resEndpoint{
		AppID: appID, URL: "http://127.0.0.1:9/hooks/min", EventTypes: []string{},
		Headers: map[string]string{}, Metadata: map[string]string{},
	}
	if d := cmp.Diff(wantMin, minimal, ignore); d != "" || minimal.DisabledAt != nil {
		t.Errorf("minimal endpoint (-want +got):\n%s\ndisabled_at %v", d, minimal.DisabledAt)
	}

	// List, newest first, with pagination.
	resNextMilli()
	third := h.mustCreate(base, map[string]any{"url": "http://127.0.0.1:9/hooks/third"}).ID
	if pages, want := resAllPages(h, base+"?limit=2"), [][]string{{third, minimal.ID}, {full.ID}}; !cmp.Equal(pages, want) {
		t.Errorf("pages of 2 = %v, want %v", pages, want)
	}
	var page resPage[resEndpoint]
	resMust(h, http.MethodGet, base, "", http.StatusOK, &page)
	if len(page.Data) != 3 || page.NextCursor != nil {
		t.Fatalf("list = %d endpoints, next %v; want 3 and no next page", len(page.Data), page.NextCursor)
	}
	if d := cmp.Diff(got, page.Data[2]); d != "" {
		t.Errorf("listed endpoint differs from GET (-get +list):\n%s", d)
	}
	code, b, hdr := resDo(h, http.MethodGet, base+"?cursor=garbage", "")
	resCheckProblem(t, "GarbageCursor", code, b, hdr, http.StatusUnprocessableEntity, "cursor")
	code, b, hdr = resDo(h, http.MethodGet, "/v1/apps/"+missingApp+"/endpoints", "")
	resCheckProblem(t, "ListOfMissingApp", code, b, hdr, http.StatusNotFound, "")

	// Patch each field alone: the others stay.
	before := got
	for _, tc := range []struct {
		name, body string
		apply      func(*resEndpoint)
	}{
		{"URL", `{"url":"http://[::1]:9/v2"}`, func(e *resEndpoint) { e.URL = "http://[::1]:9/v2" }},
		{"Description", `{"description":"secondary"}`, func(e *resEndpoint) { e.Description = "secondary" }},
		{"EventTypes", `{"event_types":["order.created"]}`, func(e *resEndpoint) { e.EventTypes = []string{"order.created"} }},
		{"Filter", `{"filter":{"country":"NL"}}`, func(e *resEndpoint) { e.Filter = map[string]any{"country": "NL"} }},
		{"FilterNull", `{"filter":null}`, func(e *resEndpoint) { e.Filter = nil }},
		{"FilterAgain", `{"filter":{"$or":[{"a":1},{"b":{"$in":[2,3]}}]}}`, func(e *resEndpoint) {
			e.Filter = resJSONValue(t, `{"$or":[{"a":1},{"b":{"$in":[2,3]}}]}`)
		}},
		{"FilterEmpty", `{"filter":{}}`, func(e *resEndpoint) { e.Filter = nil }},
		{"Headers", `{"headers":{"x-other":"v","accept-language":"nl"}}`, func(e *resEndpoint) {
			e.Headers = map[string]string{"X-Other": "v", "Accept-Language": "nl"}
		}},
		{"RateLimit", `{"rate_limit":50}`, func(e *resEndpoint) { e.RateLimit = resPtr(50) }},
		{"RateLimitZero", `{"rate_limit":0}`, func(e *resEndpoint) { e.RateLimit = nil }},
		{"Metadata", `{"metadata":{"env":"staging"}}`, func(e *resEndpoint) { e.Metadata = map[string]string{"env": "staging"} }},
		{"EmptyEventTypes", `{"event_types":[]}`, func(e *resEndpoint) { e.EventTypes = []string{} }},
		{"EmptyHeaders", `{"headers":{}}`, func(e *resEndpoint) { e.Headers = map[string]string{} }},
	} {
		var patched, after resEndpoint
		code, b, _ := resDo(h, http.MethodPatch, base+"/"+full.ID, tc.body)
		if code != http.StatusOK {
			t.Errorf("%s: PATCH = %d %s, want 200", tc.name, code, b)
			continue
		}
		resDecode(t, b, &patched)
		resMust(h, http.MethodGet, base+"/"+full.ID, "", http.StatusOK, &after)
		if d := cmp.Diff(patched, after); d != "" {
			t.Errorf("%s: GET differs from the PATCH response (-patch +get):\n%s", tc.name, d)
		}
		want := before
		tc.apply(&want)
		if d := cmp.Diff(want, after, cmpopts.IgnoreFields(resEndpoint{}, "UpdatedAt")); d != "" {
			t.Errorf("%s: endpoint after PATCH (-want +got):\n%s", tc.name, d)
		}
		if !after.UpdatedAt.After(before.UpdatedAt) {
			t.Errorf("%s: updated_at %v did not move from %v", tc.name, after.UpdatedAt, before.UpdatedAt)
		}
		before = after
	}

	// Refused patches change nothing.
	for _, tc := range []struct {
		name, body, field string
	}{
		{"ReservedHeader", `{"headers":{"Host":"evil.example"}}`, "headers"},
		{"NegativeRateLimit", `{"rate_limit":-1}`, "rate_limit"},
		{"RateLimitOverMax", `{"rate_limit":100001}`, "rate_limit"},
		{"BadFilter", `{"filter":{"a":{"$bogus":1}}}`, "filter"},
		{"Credentials", `{"url":"http://u:p@127.0.0.1:9/"}`, "url"},
		{"UnknownField", `{"disabled":true}`, "disabled"},
	} {
		code, b, hdr := resDo(h, http.MethodPatch, base+"/"+full.ID, tc.body)
		resCheckProblem(t, "Patch"+tc.name, code, b, hdr, http.StatusUnprocessableEntity, tc.field)
	}
	var unchanged resEndpoint
	resMust(h, http.MethodGet, base+"/"+full.ID, "", http.StatusOK, &unchanged)
	if d := cmp.Diff(before, unchanged); d != "" {
		t.Errorf("refused PATCHes changed the endpoint (-before +after):\n%s", d)
	}
	code, b, hdr = resDo(h, http.MethodPatch, base+"/ep_00000000000000000000000000", `{"description":"x"}`)
	resCheckProblem(t, "PatchMissing", code, b, hdr, http.StatusNotFound, "")
	other := h.mustCreate("/v1/apps", map[string]any{"name": "other"}).ID
	code, b, hdr = resDo(h, http.MethodPatch, "/v1/apps/"+other+"/endpoints/"+full.ID, `{"description":"x"}`)
	resCheckProblem(t, "PatchOtherAppsEndpoint", code, b, hdr, http.StatusNotFound, "")

	// Enable, disable with a reason, enable again.
	// (Fresh variables throughout: json.Unmarshal merges into maps.)
	state := func(action, body string) resEndpoint {
		t.Helper()
		var resp, got resEndpoint
		resMust(h, http.MethodPost, base+"/"+full.ID+"/"+action, body, http.StatusOK, &resp)
		resMust(h, http.MethodGet, base+"/"+full.ID, "", http.StatusOK, &got)
		if d := cmp.Diff(resp, got); d != "" {
			t.Errorf("%s: GET differs from the response (-response +get):\n%s", action, d)
		}
		want := before
		want.Disabled, want.DisabledReason, want.DisabledAt = got.Disabled, got.DisabledReason, got.DisabledAt
		if d := cmp.Diff(want, got, cmpopts.IgnoreFields(resEndpoint{}, "UpdatedAt")); d != "" {
			t.Errorf("%s changed other fields (-want +got):\n%s", action, d)
		}
		return got
	}
	if ep := state("enable", ""); ep.Disabled || ep.DisabledReason != nil || ep.DisabledAt != nil {
		t.Errorf("enabled endpoint: disabled %t, reason %v, at %v; want all cleared", ep.Disabled, ep.DisabledReason, ep.DisabledAt)
	}
	if ep := state("disable", `{"reason":"maintenance window"}`); !ep.Disabled || ep.DisabledReason == nil ||
		*ep.DisabledReason != "maintenance window" || ep.DisabledAt == nil || ep.DisabledAt.Before(ep.CreatedAt) {
		t.Errorf("disabled endpoint: %+v; want disabled with the reason and a time", ep)
	}
	if ep := state("enable", ""); ep.Disabled || ep.DisabledReason != nil || ep.DisabledAt != nil {
		t.Errorf("re-enabled endpoint: disabled %t, reason %v, at %v; want all cleared", ep.Disabled, ep.DisabledReason, ep.DisabledAt)
	}
	if ep := state("disable", ""); !ep.Disabled || ep.DisabledReason == nil || *ep.DisabledReason == "" || ep.DisabledAt == nil {
		t.Errorf("endpoint disabled without a reason: %+v; want a default reason and a time", ep)
	}
	code, b, hdr = resDo(h, http.MethodPost, base+"/"+full.ID+"/disable", `{"reason":"`+strings.Repeat("r", 1001)+`"}`)
	resCheckProblem(t, "LongReason", code, b, hdr, http.StatusUnprocessableEntity, "reason")

	// Validation: each request is refused and writes nothing.
	strict := h.mustCreate("/v1/apps", map[string]any{"name": "strict"}).ID
	sbase := "/v1/apps/" + strict + "/endpoints"
	withHeaders := func(headers string) string { return `{"url":"http://127.0.0.1:9/","headers":` + headers + `}` }
	for _, tc := range []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"ReservedHost", sbase, withHeaders(`{"Host":"evil.example"}`), 422, "headers"},
		{"ReservedContentType", sbase, withHeaders(`{"content-type":"text/plain"}`), 422, "headers"},
		{"ReservedConnection", sbase, withHeaders(`{"Connection":"close"}`), 422, "headers"},
		{"ReservedTransferEncoding", sbase, withHeaders(`{"Transfer-Encoding":"chunked"}`), 422, "headers"},
		{"ReservedWebhookSignature", sbase, withHeaders(`{"webhook-signature":"v1,forged"}`), 422, "headers"},
		{"ReservedWebhookID", sbase, withHeaders(`{"Webhook-Id":"msg_1"}`), 422, "headers"},
		{"BadHeaderName", sbase, withHeaders(`{"a b":"x"}`), 422, "headers"},
		{"EmptyHeaderName", sbase, withHeaders(`{"":"x"}`), 422, "headers"},
		{"HeaderValueCRLF", sbase, withHeaders(`{"X-Injected":"a\r\nX-Evil: 1"}`), 422, "headers"},
		{"HeaderValueLF", sbase, withHeaders(`{"X-Injected":"a\nb"}`), 422, "headers"},
		{"HeaderValueNUL", sbase, withHeaders(`{"X-Injected":"a\u0000b"}`), 422, "headers"},
		{"HeaderTwice", sbase, withHeaders(`{"x-dup":"1","X-Dup":"2"}`), 422, "headers"},
		{"TooManyHeaders", sbase, withHeaders(resManyKeys("X-H", 21)), 422, "headers"},
		{"ZeroRateLimit", sbase, `{"url":"http://127.0.0.1:9/","rate_limit":0}`, 422, "rate_limit"},
		{"RateLimitOverMax", sbase, `{"url":"http://127.0.0.1:9/","rate_limit":100001}`, 422, "rate_limit"},
		{"UnknownFilterOperator", sbase, `{"url":"http://127.0.0.1:9/","filter":{"amount":{"$bogus":1}}}`, 422, "filter"},
		{"ArrayFilter", sbase, `{"url":"http://127.0.0.1:9/","filter":[1,2]}`, 422, "filter"},
		{"StringFilter", sbase, `{"url":"http://127.0.0.1:9/","filter":"amount > 1"}`, 422, "filter"},
		{"TooManyMetadataKeys", sbase, `{"url":"http://127.0.0.1:9/","metadata":` + resManyKeys("k", 51) + `}`, 422, "metadata"},
		{"UnknownField", sbase, `{"url":"http://127.0.0.1:9/","secret":"whsec_x"}`, 422, "secret"},
		{"URLWithCredentials", sbase, `{"url":"http://user:pass@127.0.0.1:9/"}`, 422, "url"},
		{"URLWithUser", sbase, `{"url":"http://user@127.0.0.1:9/"}`, 422, "url"},
		// huma reports a missing property at "body", which names no field.
		{"MissingURL", sbase, `{"description":"no url"}`, 422, "url"},
		{"MissingApp", "/v1/apps/" + missingApp + "/endpoints", `{"url":"http://127.0.0.1:9/"}`, 404, ""},
	} {
		code, b, hdr := resDo(h, http.MethodPost, tc.path, tc.body)
		resCheckProblem(t, tc.name, code, b, hdr, tc.status, tc.field)
		if n := h.count(`SELECT count(*) FROM endpoints WHERE app_id IN (?, ?)`, strict, missingApp); n != 0 {
			t.Fatalf("%s: %d endpoints written", tc.name, n)
		}
	}
	if n := h.count(`SELECT count(*) FROM endpoint_secrets s JOIN endpoints e ON e.id = s.endpoint_id WHERE e.app_id = ?`, strict); n != 0 {
		t.Errorf("refused endpoints left %d secrets", n)
	}
	// Twenty headers are fine.
	h.mustCreate(sbase, map[string]any{"url": "http://127.0.0.1:9/", "headers": resJSONValue(t, resManyKeys("X-H", 20))})

	// Delete removes the endpoint, its secrets, its deliveries and their
	// attempts.
	recv := newReceiver(t, nil)
	delApp := h.mustCreate("/v1/apps", map[string]any{"name": "deletes"}).ID
	doomed := h.mustCreate("/v1/apps/"+delApp+"/endpoints", map[string]any{"url": recv.URL}).ID
	resMust(h, http.MethodPost, "/v1/apps/"+delApp+"/events", `{"type":"order.created","payload":{"n":1}}`, http.StatusCreated, nil)
	waitFor(t, "the delivery to the doomed endpoint", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'succeeded'`, doomed) == 1
	})
	var dlv string
	if err := h.db.NewRaw(`SELECT id FROM deliveries WHERE endpoint_id = ?`, doomed).Scan(t.Context(), &dlv); err != nil {
		t.Fatal(err)
	}
	if n := h.count(`SELECT count(*) FROM delivery_attempts WHERE delivery_id = ?`, dlv); n != 1 {
		t.Fatalf("%d attempts before the delete, want 1", n)
	}
	resMust(h, http.MethodDelete, "/v1/apps/"+delApp+"/endpoints/"+doomed, "", http.StatusNoContent, nil)
	for table, q := range map[string]string{
		"endpoints":         `SELECT count(*) FROM endpoints WHERE id = ?`,
		"endpoint_secrets":  `SELECT count(*) FROM endpoint_secrets WHERE endpoint_id = ?`,
		"deliveries":        `SELECT count(*) FROM deliveries WHERE endpoint_id = ?`,
		"delivery_attempts": `SELECT count(*) FROM delivery_attempts WHERE delivery_id = ?`,
	} {
		arg := doomed
		if table == "delivery_attempts" {
			arg = dlv
		}
		if n := h.count(q, arg); n != 0 {
			t.Errorf("%d rows of the deleted endpoint remain in %s", n, table)
		}
	}
	code, b, hdr = resDo(h, http.MethodGet, "/v1/apps/"+delApp+"/endpoints/"+doomed, "")
	resCheckProblem(t, "GetDeleted", code, b, hdr, http.StatusNotFound, "")
	code, b, hdr = resDo(h, http.MethodDelete, "/v1/apps/"+delApp+"/endpoints/"+doomed, "")
	resCheckProblem(t, "DeleteTwice", code, b, hdr, http.StatusNotFound, "")
	code, b, hdr = resDo(h, http.MethodDelete, "/v1/apps/"+other+"/endpoints/"+full.ID, "")
	resCheckProblem(t, "DeleteOtherAppsEndpoint", code, b, hdr, http.StatusNotFound, "")
	if n := h.count(`SELECT count(*) FROM endpoints WHERE id = ?`, full.ID); n != 1 {
		t.Errorf("deleting through another app removed the endpoint")
	}
}

func TestEventTypes(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	publish := func(typ, payload string) (int, []byte, http.Header) {
		return resDo(h, http.MethodPost, "/v1/apps/"+appID+"/events", `{"type":"`+typ+`","payload":`+payload+`}`)
	}

	// The migration registers link.clicked.
	var lc resEventType
	resMust(h, http.MethodGet, "/v1/event-types/link.clicked", "", http.StatusOK, &lc)
	if sch, _ := lc.Schema.(map[string]any); lc.Name != "link.clicked" || lc.Archived || lc.Description == "" ||
		sch["type"] != "object" || !cmp.Equal(sch["required"], []any{"link_id", "code", "url", "clicked_at"}) {
		t.Errorf("link.clicked = %+v, want its schema from the migration", lc)
	}
	code, b, hdr := resDo(h, http.MethodGet, "/v1/event-types/no.such.type", "")
	resCheckProblem(t, "GetMissing", code, b, hdr, http.StatusNotFound, "")

	// Create with a schema.
	const invoiceSchema = `{"type":"object","required":["amount","currency"],` +
		`"properties":{"amount":{"type":"integer","minimum":0},"currency":{"type":"string"}}}`
	var inv resEventType
	resMust(h, http.MethodPost, "/v1/event-types",
		`{"name":"invoice.paid","description":"An invoice was paid.","schema":`+invoiceSchema+`}`, http.StatusCreated, &inv)
	if inv.Name != "invoice.paid" || inv.Description != "An invoice was paid." || inv.Archived ||
		!cmp.Equal(inv.Schema, resJSONValue(t, invoiceSchema)) || inv.CreatedAt.IsZero() {
		t.Errorf("created event type = %+v", inv)
	}
	var got resEventType
	resMust(h, http.MethodGet, "/v1/event-types/invoice.paid", "", http.StatusOK, &got)
	if d := cmp.Diff(inv, got); d != "" {
		t.Errorf("GET differs from the creation response (-created +got):\n%s", d)
	}
	resMust(h, http.MethodPost, "/v1/event-types", `{"name":"audit.logged"}`, http.StatusCreated, nil)
	resMust(h, http.MethodPost, "/v1/event-types", `{"name":"zeta-done_v2","description":"last by name"}`, http.StatusCreated, nil)

	// Refused creations write nothing.
	types := h.count(`SELECT count(*) FROM event_types`)
	for _, tc := range []struct {
		name, body string
		status     int
		field      string
	}{
		{"Duplicate", `{"name":"invoice.paid"}`, 409, ""},
		{"DuplicateOfMigration", `{"name":"link.clicked"}`, 409, ""},
		{"SchemaTypeNotAString", `{"name":"bad.one","schema":{"type":12}}`, 422, "schema"},
		{"SchemaNotAnObject", `{"name":"bad.two","schema":[1]}`, 422, "schema"},
		{"ExternalRefHTTPS", `{"name":"bad.three","schema":{"$ref":"https://example.com/s.json"}}`, 422, "schema"},
		{"ExternalRefFile", `{"name":"bad.four","schema":{"$ref":"file:///etc/passwd"}}`, 422, "schema"},
		{"NestedExternalRef", `{"name":"bad.five","schema":{"properties":{"a":{"$ref":"https://example.com/s.json#/x"}}}}`, 422, "schema"},
		{"UnknownMetaSchema", `{"name":"bad.six","schema":{"$schema":"https://example.com/meta"}}`, 422, "schema"},
		{"BadName", `{"name":"a b"}`, 422, "name"},
		{"UnknownField", `{"name":"bad.seven","archived":true}`, 422, "archived"},
	} {
		code, b, hdr := resDo(h, http.MethodPost, "/v1/event-types", tc.body)
		resCheckProblem(t, tc.name, code, b, hdr, tc.status, tc.field)
	}
	if n := h.count(`SELECT count(*) FROM event_types`); n != types {
		t.Errorf("%d event types after refused creations, want %d", n, types)
	}
	if code, b, _ := resDo(h, http.MethodGet, "/v1/event-types/invoice.paid", ""); code != 200 || !bytes.Contains(b, []byte(`"description":"An invoice was paid."`)) {
		t.Errorf("a refused duplicate changed invoice.paid: %d %s", code, b)
	}

	// Payloads are validated against the schema; the field is the JSON
	// pointer of the failure under payload.
	events := h.count(`SELECT count(*) FROM outbox_events`)
	for _, tc := range []struct{ name, payload, field string }{
		{"NegativeAmount", `{"amount":-1,"currency":"EUR"}`, "payload/amount"},
		{"StringAmount", `{"amount":"12","currency":"EUR"}`, "payload/amount"},
		{"FractionalAmount", `{"amount":1.5,"currency":"EUR"}`, "payload/amount"},
		{"NumberCurrency", `{"amount":12,"currency":978}`, "payload/currency"},
		{"MissingCurrency", `{"amount":12}`, "payload"},
		{"Empty", `{}`, "payload"},
	} {
		code, b, hdr := publish("invoice.paid", tc.payload)
		resCheckProblem(t, "Publish"+tc.name, code, b, hdr, http.StatusUnprocessableEntity, tc.field)
	}
	if n := h.count(`SELECT count(*) FROM outbox_events`); n != events {
		t.Errorf("refused events wrote %d outbox rows", n-events)
	}
	if code, b, _ := publish("invoice.paid", `{"amount":12,"currency":"EUR","note":"extra properties are fine"}`); code != http.StatusCreated {
		t.Errorf("valid invoice.paid = %d %s, want 201", code, b)
	}
	if code, b, _ := publish("never.registered", `{"anything":[1,"two"]}`); code != http.StatusCreated {
		t.Errorf("unregistered type = %d %s, want 201", code, b)
	}
	if code, b, _ := publish("audit.logged", `{"free":"form"}`); code != http.StatusCreated {
		t.Errorf("type without a schema = %d %s, want 201", code, b)
	}

	// List by name; archived types only when asked.
	if got, want := resKeys(h, "/v1/event-types"), []string{"audit.logged", "invoice.paid", "link.clicked", "zeta-done_v2"}; !cmp.Equal(got, want) {
		t.Errorf("event types = %v, want %v", got, want)
	}
	if got, want := resAllPages(h, "/v1/event-types?limit=3"), [][]string{{"audit.logged", "invoice.paid", "link.clicked"}, {"zeta-done_v2"}}; !cmp.Equal(got, want) {
		t.Errorf("pages of 3 = %v, want %v", got, want)
	}

	// Patch the description, then the schema: the new schema applies at once.
	var patched resEventType
	resMust(h, http.MethodPatch, "/v1/event-types/invoice.paid", `{"description":"Paid invoices."}`, http.StatusOK, &patched)
	if patched.Description != "Paid invoices." || !cmp.Equal(patched.Schema, resJSONValue(t, invoiceSchema)) || !patched.UpdatedAt.After(inv.UpdatedAt) {
		t.Errorf("after a description PATCH: %+v", patched)
	}
	const strictSchema = `{"type":"object","required":["amount","currency","customer"],"properties":{` +
		`"amount":{"type":"integer","minimum":0},"currency":{"type":"string"},"customer":{"type":"string"},"meta/tag":{"type":"string"}}}`
	resMust(h, http.MethodPatch, "/v1/event-types/invoice.paid", `{"schema":`+strictSchema+`}`, http.StatusOK, &patched)
	if patched.Description != "Paid invoices." || !cmp.Equal(patched.Schema, resJSONValue(t, strictSchema)) {
		t.Errorf("after a schema PATCH: %+v", patched)
	}
	code, b, hdr = publish("invoice.paid", `{"amount":12,"currency":"EUR"}`)
	resCheckProblem(t, "PublishUnderNewSchema", code, b, hdr, http.StatusUnprocessableEntity, "payload")
	code, b, hdr = publish("invoice.paid", `{"amount":12,"currency":"EUR","customer":"c1","meta/tag":5}`)
	resCheckProblem(t, "PublishEscapedPointer", code, b, hdr, http.StatusUnprocessableEntity, "payload/meta~1tag")
	if code, b, _ := publish("invoice.paid", `{"amount":12,"currency":"EUR","customer":"c1"}`); code != http.StatusCreated {
		t.Errorf("valid payload under the new schema = %d %s, want 201", code, b)
	}
	for _, tc := range []struct{ name, body, field string }{
		{"BadSchema", `{"schema":{"type":12}}`, "schema"},
		{"ExternalRef", `{"schema":{"$ref":"https://example.com/s.json"}}`, "schema"},
		{"UnknownField", `{"name":"renamed"}`, "name"},
	} {
		code, b, hdr := resDo(h, http.MethodPatch, "/v1/event-types/invoice.paid", tc.body)
		resCheckProblem(t, "Patch"+tc.name, code, b, hdr, http.StatusUnprocessableEntity, tc.field)
	}
	resMust(h, http.MethodGet, "/v1/event-types/invoice.paid", "", http.StatusOK, &got)
	if d := cmp.Diff(patched, got); d != "" {
		t.Errorf("refused PATCHes changed the type (-before +after):\n%s", d)
	}
	code, b, hdr = resDo(h, http.MethodPatch, "/v1/event-types/no.such.type", `{"description":"x"}`)
	resCheckProblem(t, "PatchMissing", code, b, hdr, http.StatusNotFound, "")

	// Archive: hidden from the list, its events refused; PATCH restores it.
	var archived resEventType
	resMust(h, http.MethodPost, "/v1/event-types/invoice.paid/archive", "", http.StatusOK, &archived)
	if !archived.Archived || !cmp.Equal(archived.Schema, resJSONValue(t, strictSchema)) {
		t.Errorf("archived type = %+v", archived)
	}
	if got, want := resKeys(h, "/v1/event-types"), []string{"audit.logged", "link.clicked", "zeta-done_v2"}; !cmp.Equal(got, want) {
		t.Errorf("event types without archived = %v, want %v", got, want)
	}
	if got, want := resKeys(h, "/v1/event-types?include_archived=true"), []string{"audit.logged", "invoice.paid", "link.clicked", "zeta-done_v2"}; !cmp.Equal(got, want) {
		t.Errorf("event types with archived = %v, want %v", got, want)
	}
	events = h.count(`SELECT count(*) FROM outbox_events`)
	code, b, hdr = publish("invoice.paid", `{"amount":12,"currency":"EUR","customer":"c1"}`)
	resCheckProblem(t, "PublishArchived", code, b, hdr, http.StatusUnprocessableEntity, "type")
	if n := h.count(`SELECT count(*) FROM outbox_events`); n != events {
		t.Errorf("an event of an archived type was written")
	}
	var restored resEventType
	resMust(h, http.MethodPatch, "/v1/event-types/invoice.paid", `{"archived":false}`, http.StatusOK, &restored)
	if restored.Archived || restored.Description != "Paid invoices." || !cmp.Equal(restored.Schema, resJSONValue(t, strictSchema)) {
		t.Errorf("restored type = %+v", restored)
	}
	if code, b, _ := publish("invoice.paid", `{"amount":12,"currency":"EUR","customer":"c1"}`); code != http.StatusCreated {
		t.Errorf("event of a restored type = %d %s, want 201", code, b)
	}
	if got := resKeys(h, "/v1/event-types"); !slices.Contains(got, "invoice.paid") {
		t.Errorf("restored type is not listed: %v", got)
	}

	// A null schema removes it: any object is accepted again.
	resMust(h, http.MethodPatch, "/v1/event-types/invoice.paid", `{"schema":null}`, http.StatusOK, &patched)
	if patched.Schema != nil {
		t.Errorf("schema after PATCH null = %v, want null", patched.Schema)
	}
	if code, b, _ := publish("invoice.paid", `{"amount":"any"}`); code != http.StatusCreated {
		t.Errorf("event of a type without schema = %d %s, want 201", code, b)
	}
}

func TestEventsListAndGet(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_MAX_EVENT_BYTES": "2048"})
	recv := newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	base := "/v1/apps/" + appID + "/events"
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL, "event_types": []string{"order.paid"}})

	publish := func(typ, payload string) resEvent {
		t.Helper()
		body := `{"type":"` + typ + `","payload":` + payload + `}`
		code, b, _ := resDo(h, http.MethodPost, base, body)
		if code != http.StatusCreated {
			t.Fatalf("publish %s = %d %s, want 201", body, code, b)
		}
		var ev resEvent
		resDecode(t, b, &ev)
		if !strings.HasPrefix(ev.ID, "evt_") || ev.AppID != appID || ev.Type != typ || string(ev.Payload) != payload || ev.CreatedAt.IsZero() {
			t.Errorf("published %s, got %s", body, b)
		}
		resNextMilli() // the next event's ID sorts after this one
		return ev
	}
	const ordered = `{"z":1,"a":2,"nested":{"y":[3,1],"b":null,"A":"é"}}`
	e1 := publish("order.created", `{"n":1}`)
	e2 := publish("order.paid", ordered)
	t1 := time.Now()
	e3 := publish("order.created", `{"n":3}`)
	e4 := publish("order.paid", `{"n":4}`)
	t2 := time.Now()
	e5 := publish("order.created", `{"n":5}`)

	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"All", "", []string{e5.ID, e4.ID, e3.ID, e2.ID, e1.ID}},
		{"Type", "type=order.created", []string{e5.ID, e3.ID, e1.ID}},
		{"OtherType", "type=order.paid", []string{e4.ID, e2.ID}},
		{"UnknownType", "type=order.refunded", []string{}},
		{"Since", "since=" + resQueryTime(t1), []string{e5.ID, e4.ID, e3.ID}},
		{"Until", "until=" + resQueryTime(t1), []string{e2.ID, e1.ID}},
		{"SinceUntil", "since=" + resQueryTime(t1) + "&until=" + resQueryTime(t2), []string{e4.ID, e3.ID}},
		{"TypeSince", "type=order.paid&since=" + resQueryTime(t1), []string{e4.ID}},
		{"SinceUTC", "since=" + url.QueryEscape(t2.UTC().Format(time.RFC3339Nano)), []string{e5.ID}},
		{"Future", "since=" + resQueryTime(time.Now().Add(time.Hour)), []string{}},
	} {
		path := base
		if tc.query != "" {
			path += "?" + tc.query
		}
		if got := resKeys(h, path); !cmp.Equal(got, tc.want) {
			t.Errorf("%s: events = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got, want := resAllPages(h, base+"?limit=2"), [][]string{{e5.ID, e4.ID}, {e3.ID, e2.ID}, {e1.ID}}; !cmp.Equal(got, want) {
		t.Errorf("pages of 2 = %v, want %v", got, want)
	}
	if got, want := resAllPages(h, base+"?limit=2&type=order.created"), [][]string{{e5.ID, e3.ID}, {e1.ID}}; !cmp.Equal(got, want) {
		t.Errorf("pages of 2 of order.created = %v, want %v", got, want)
	}
	var page resPage[resEvent]
	resMust(h, http.MethodGet, base+"?type=order.paid", "", http.StatusOK, &page)
	if len(page.Data) != 2 || string(page.Data[1].Payload) != ordered || page.Data[1].Deliveries != nil {
		t.Errorf("listed order.paid events = %+v, want the payload as sent and no delivery summary", page.Data)
	}
	for _, tc := range []struct{ name, query, field string }{
		{"BadSince", "since=yesterday", "since"},
		{"DateOnlyUntil", "until=2024-01-02", "until"},
		{"ZeroLimit", "limit=0", "limit"},
		{"GarbageCursor", "cursor=garbage", "cursor"},
	} {
		code, b, hdr := resDo(h, http.MethodGet, base+"?"+tc.query, "")
		resCheckProblem(t, tc.name, code, b, hdr, http.StatusUnprocessableEntity, tc.field)
	}

	// One event: the payload byte for byte, with a delivery summary.
	var ev resEvent
	code, raw, _ := resDo(h, http.MethodGet, base+"/"+e2.ID, "")
	if code != http.StatusOK {
		t.Fatalf("GET event = %d %s", code, raw)
	}
	resDecode(t, raw, &ev)
	if string(ev.Payload) != ordered || ev.ID != e2.ID || ev.Type != "order.paid" || !ev.CreatedAt.Equal(e2.CreatedAt) || ev.Deliveries == nil {
		t.Errorf("GET event = %s, want payload %s and a delivery summary", raw, ordered)
	}
	waitFor(t, "the event's delivery to succeed", func() bool {
		var ev resEvent
		resMust(h, http.MethodGet, base+"/"+e2.ID, "", http.StatusOK, &ev)
		return ev.Deliveries != nil && ev.Deliveries.Succeeded == 1
	})
	resMust(h, http.MethodGet, base+"/"+e2.ID, "", http.StatusOK, &ev)
	if d := ev.Deliveries; d.Pending != 0 || d.Failed != 0 || d.Succeeded != 1 {
		t.Errorf("delivery summary = %+v, want 1 succeeded", *d)
	}
	delivered := false
	for _, r := range recv.got() {
		delivered = delivered || bytes.Contains(r.body, []byte(`"data":`+ordered))
	}
	if !delivered {
		t.Errorf("no webhook carries the payload as sent")
	}
	resMust(h, http.MethodGet, base+"/"+e1.ID, "", http.StatusOK, &ev)
	if d := ev.Deliveries; d == nil || d.Pending+d.Succeeded+d.Failed != 0 {
		t.Errorf("summary of an event no endpoint subscribes to = %+v, want all zero", d)
	}
	other := h.mustCreate("/v1/apps", map[string]any{"name": "other"}).ID
	for _, tc := range []struct {
		name, path string
		status     int
		field      string
	}{
		{"OtherAppsEvent", "/v1/apps/" + other + "/events/" + e2.ID, 404, ""},
		{"UnknownEvent", base + "/evt_00000000000000000000000000", 404, ""},
		{"MalformedEventID", base + "/evt_nope", 422, "event_id"},
		{"EventsOfMissingApp", "/v1/apps/" + missingApp + "/events", 404, ""},
	} {
		code, b, hdr := resDo(h, http.MethodGet, tc.path, "")
		resCheckProblem(t, tc.name, code, b, hdr, tc.status, tc.field)
	}
	if got := resKeys(h, "/v1/apps/"+other+"/events"); len(got) != 0 {
		t.Errorf("another app lists %v", got)
	}

	// Refused events write nothing.
	events := h.count(`SELECT count(*) FROM outbox_events`)
	for _, tc := range []struct {
		name, body string
		status     int
		field      string
	}{
		{"ArrayPayload", `{"type":"order.created","payload":[1,2]}`, 422, "payload"},
		{"StringPayload", `{"type":"order.created","payload":"x"}`, 422, "payload"},
		{"NumberPayload", `{"type":"order.created","payload":1}`, 422, "payload"},
		{"NullPayload", `{"type":"order.created","payload":null}`, 422, "payload"},
		{"BadType", `{"type":"order created","payload":{}}`, 422, "type"},
		{"UnknownField", `{"type":"order.created","payload":{},"data":{}}`, 422, "data"},
		{"MissingApp", `{"type":"order.created","payload":{}}`, 404, ""},
		{"TooLarge", `{"type":"order.created","payload":{"blob":"` + strings.Repeat("a", 3000-46) + `"}}`, 413, ""},
	} {
		path := base
		if tc.name == "MissingApp" {
			path = "/v1/apps/" + missingApp + "/events"
		}
		if tc.name == "TooLarge" && len(tc.body) != 3000 {
			t.Fatalf("oversized body is %d bytes, want 3000", len(tc.body))
		}
		code, b, hdr := resDo(h, http.MethodPost, path, tc.body)
		resCheckProblem(t, tc.name, code, b, hdr, tc.status, tc.field)
	}
	if n := h.count(`SELECT count(*) FROM outbox_events`); n != events {
		t.Errorf("refused events wrote %d outbox rows", n-events)
	}
	// Just under the limit is fine.
	if code, b, _ := resDo(h, http.MethodPost, base, `{"type":"order.created","payload":{"blob":"`+strings.Repeat("a", 1900)+`"}}`); code != http.StatusCreated {
		t.Errorf("event under the body limit = %d %s, want 201", code, b)
	}
}

func TestDeliveriesListAndGet(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	// flaky fails its first request with a 500 and a body, then succeeds.
	var calls atomic.Int32
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "upstream exploded")
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(flaky.Close)
	broken := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })

	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	base := "/v1/apps/" + appID + "/deliveries"
	epFlaky := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": flaky.URL}).ID
	epBroken := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": broken.URL, "event_types": []string{"order.created"}}).ID

	var ev1, ev2 resEvent
	resMust(h, http.MethodPost, "/v1/apps/"+appID+"/events", `{"type":"order.created","payload":{"n":1}}`, http.StatusCreated, &ev1)
	waitFor(t, "both deliveries of the first event to finish", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE event_id = ? AND status <> 'pending'`, ev1.ID) == 2
	})
	t1 := time.Now()
	resNextMilli()
	resMust(h, http.MethodPost, "/v1/apps/"+appID+"/events", `{"type":"order.paid","payload":{"n":2}}`, http.StatusCreated, &ev2)
	waitFor(t, "the second event's delivery to succeed", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE event_id = ? AND status = 'succeeded'`, ev2.ID) == 1
	})

	var all resPage[resDelivery]
	resMust(h, http.MethodGet, base, "", http.StatusOK, &all)
	if len(all.Data) != 3 || all.NextCursor != nil {
		t.Fatalf("deliveries = %+v, want 3", all)
	}
	var d1, d2, d3 string
	var ids []string
	for _, d := range all.Data {
		ids = append(ids, d.ID)
		switch {
		case d.EventID == ev1.ID && d.EndpointID == epFlaky:
			d1 = d.ID
		case d.EventID == ev1.ID && d.EndpointID == epBroken:
			d2 = d.ID
		case d.EventID == ev2.ID && d.EndpointID == epFlaky:
			d3 = d.ID
		}
		if d.Attempts != nil {
			t.Errorf("listed delivery %s carries attempts", d.ID)
		}
		if d.AppID != appID || !strings.HasPrefix(d.ID, "dlv_") {
			t.Errorf("listed delivery %+v", d)
		}
	}
	if d1 == "" || d2 == "" || d3 == "" {
		t.Fatalf("deliveries %+v, want one per event and subscribed endpoint", all.Data)
	}
	if want := resNewestFirst(d1, d2, d3); !cmp.Equal(ids, want) || ids[0] != d3 {
		t.Errorf("deliveries in order %v, want newest first %v", ids, want)
	}

	// The retried delivery, with its attempts oldest first.
	var d resDelivery
	resMust(h, http.MethodGet, base+"/"+d1, "", http.StatusOK, &d)
	if d.Status != "succeeded" || d.AttemptCount != 2 || d.EventType != "order.created" || d.LastStatusCode == nil || *d.LastStatusCode != 200 ||
		d.LastError != nil || d.SucceededAt == nil || d.FailedAt != nil {
		t.Errorf("retried delivery = %+v, want succeeded at the second attempt", d)
	}
	if len(d.Attempts) != 2 {
		t.Fatalf("retried delivery has %d attempts, want 2", len(d.Attempts))
	}
	first, second := d.Attempts[0], d.Attempts[1]
	if first.StatusCode == nil || *first.StatusCode != 500 || first.ResponseBody == nil || *first.ResponseBody != "upstream exploded" || first.Error != nil {
		t.Errorf("first attempt = %+v, want 500 with its body", first)
	}
	if second.StatusCode == nil || *second.StatusCode != 200 || second.Error != nil {
		t.Errorf("second attempt = %+v, want 200", second)
	}
	for i, a := range d.Attempts {
		if a.DurationMS <= 0 || a.AttemptedAt.IsZero() || a.AttemptedAt.Before(d.CreatedAt) {
			t.Errorf("attempt %d: duration %vms at %v, want a positive duration after the delivery's creation", i, a.DurationMS, a.AttemptedAt)
		}
	}
	if !second.AttemptedAt.After(first.AttemptedAt) {
		t.Errorf("attempts not oldest first: %v then %v", first.AttemptedAt, second.AttemptedAt)
	}

	// The exhausted delivery.
	resMust(h, http.MethodGet, base+"/"+d2, "", http.StatusOK, &d)
	if d.Status != "failed" || d.AttemptCount != 3 || len(d.Attempts) != 3 || d.LastStatusCode == nil || *d.LastStatusCode != 503 ||
		d.LastError == nil || d.FailedAt == nil || d.SucceededAt != nil {
		t.Errorf("exhausted delivery = %+v, want failed after 3 attempts", d)
	}
	for i, a := range d.Attempts {
		if a.StatusCode == nil || *a.StatusCode != 503 {
			t.Errorf("attempt %d of the exhausted delivery = %+v, want 503", i, a)
		}
	}

	// Another app's delivery is not this app's.
	recvB := newReceiver(t, nil)
	appB := h.mustCreate("/v1/apps", map[string]any{"name": "other"}).ID
	epB := h.mustCreate("/v1/apps/"+appB+"/endpoints", map[string]any{"url": recvB.URL}).ID
	var evB resEvent
	resMust(h, http.MethodPost, "/v1/apps/"+appB+"/events", `{"type":"order.created","payload":{"n":9}}`, http.StatusCreated, &evB)
	waitFor(t, "the other app's delivery", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE event_id = ? AND status = 'succeeded'`, evB.ID) == 1
	})
	var dB string
	if err := h.db.NewRaw(`SELECT id FROM deliveries WHERE event_id = ?`, evB.ID).Scan(t.Context(), &dB); err != nil {
		t.Fatal(err)
	}
	resMust(h, http.MethodGet, "/v1/apps/"+appB+"/deliveries/"+dB, "", http.StatusOK, &d)

	// Each filter narrows the list.
	since, until := "since="+resQueryTime(t1), "until="+resQueryTime(t1)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"status=succeeded", resNewestFirst(d1, d3)},
		{"status=failed", resNewestFirst(d2)},
		{"status=pending", resNewestFirst()},
		{"endpoint_id=" + epFlaky, resNewestFirst(d1, d3)},
		{"endpoint_id=" + epBroken, resNewestFirst(d2)},
		{"endpoint_id=" + epB, resNewestFirst()},
		{"event_type=order.created", resNewestFirst(d1, d2)},
		{"event_type=order.paid", resNewestFirst(d3)},
		{"event_id=" + ev1.ID, resNewestFirst(d1, d2)},
		{"event_id=" + ev2.ID, resNewestFirst(d3)},
		{"event_id=" + evB.ID, resNewestFirst()},
		{since, resNewestFirst(d3)},
		{until, resNewestFirst(d1, d2)},
		{"endpoint_id=" + epFlaky + "&event_type=order.created", resNewestFirst(d1)},
		{"status=failed&" + since, resNewestFirst()},
		{"status=succeeded&" + until, resNewestFirst(d1)},
	} {
		if got := resKeys(h, base+"?"+tc.query); !cmp.Equal(got, tc.want) {
			t.Errorf("?%s: deliveries = %v, want %v", tc.query, got, tc.want)
		}
	}
	if got := resAllPages(h, base+"?limit=1"); !cmp.Equal(got, [][]string{{ids[0]}, {ids[1]}, {ids[2]}}) {
		t.Errorf("pages of 1 = %v, want %v", got, ids)
	}

	for _, tc := range []struct {
		name, path string
		status     int
		field      string
	}{
		{"MalformedID", base + "/dlv_nope", 422, "delivery_id"},
		{"WrongPrefix", base + "/" + strings.Replace(d1, "dlv_", "evt_", 1), 422, "delivery_id"},
		{"UnknownID", base + "/dlv_00000000000000000000000000", 404, ""},
		{"OtherAppsDelivery", base + "/" + dB, 404, ""},
		{"DeliveriesOfMissingApp", "/v1/apps/" + missingApp + "/deliveries", 404, ""},
		{"DeliveryOfMissingApp", "/v1/apps/" + missingApp + "/deliveries/" + d1, 404, ""},
		{"BadStatus", base + "?status=bogus", 422, "status"},
		{"BadSince", base + "?since=soon", 422, "since"},
		{"GarbageCursor", base + "?cursor=garbage", 422, "cursor"},
	} {
		code, b, hdr := resDo(h, http.MethodGet, tc.path, "")
		resCheckProblem(t, tc.name, code, b, hdr, tc.status, tc.field)
	}
}
