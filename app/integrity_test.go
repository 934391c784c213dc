package app_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks/signature"
)

// The integrity tests check that payloads arrive exactly as published and
// that inputs get a defined answer. Their helpers carry an itg prefix so
// that they cannot clash with other tests of the package.

// itgCompact returns the JSON text s without insignificant whitespace,
// escapes and characters untouched (json.Compact escapes nothing).
func itgCompact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("compact %s: %v", s, err)
	}
	return b.String()
}

// itgData returns the data member of a webhook body, as its bytes.
func itgData(t *testing.T, body []byte) string {
	t.Helper()
	var w struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		t.Fatalf("decode webhook %s: %v", body, err)
	}
	return string(w.Data)
}

// itgPlantEndpoint writes an endpoint of appID for url, with headers and a
// signing secret, straight into Postgres, as an endpoint stored by an
// earlier hookd or a changed DNS answer would leave it: no check of the
// API applies. It returns the endpoint's ID.
func itgPlantEndpoint(h *harness, appID, url string, headers map[string]string) string {
	h.t.Helper()
	if headers == nil {
		headers = map[string]string{}
	}
	hdrs, err := json.Marshal(headers)
	if err != nil {
		h.t.Fatal(err)
	}
	id := outbox.NewID("ep")
	if _, err := h.db.NewRaw(`INSERT INTO endpoints (id, app_id, url, headers) VALUES (?, ?, ?, ?::jsonb)`,
		id, appID, url, string(hdrs)).Exec(h.t.Context()); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.db.NewRaw(`INSERT INTO endpoint_secrets (endpoint_id, secret) VALUES (?, ?)`,
		id, signature.NewSecret()).Exec(h.t.Context()); err != nil {
		h.t.Fatal(err)
	}
	return id
}

// TestPayloadArrivesAsPublished publishes, through the API, a payload
// holding a NUL, HTML characters, line separators, escapes and non-ASCII
// text: the webhook's data and the API's event are that payload, less its
// insignificant whitespace, on the first attempt and on the retry, and the
// signature verifies. A click's link.clicked keeps the & and < of its URL
// and user agent.
func TestPayloadArrivesAsPublished(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, func(n int) int {
		if n == 0 {
			return http.StatusInternalServerError // the retry must carry the same bytes
		}
		return http.StatusNoContent
	})
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	ep := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL + "/hook"})

	payload := "{ \"nul\": \"a\\u0000b\", \"literal\": \"\\\\u0000\", \"html\": \"<a href=\\\"/x?a=1&b=2\\\">&amp;</a>\",\n" +
		"  \"escaped\": \"\\u003c\\u0026\\/\", \"ls\": \"\u2028\u2029\", \"text\": \"żółw 🐢\" }"
	want := itgCompact(t, payload)
	code, b, _ := resDo(h, http.MethodPost, "/v1/apps/"+appID+"/events", `{"type":"order.paid","payload":`+payload+`}`)
	if code != http.StatusCreated {
		t.Fatalf("publish = %d %s, want 201", code, b)
	}
	var ev struct {
		ID      string          `json:"id"`
		Payload json.RawMessage `json:"payload"`
	}
	resDecode(t, b, &ev)
	if string(ev.Payload) != want {
		t.Errorf("published event's payload = %s, want %s", ev.Payload, want)
	}

	waitFor(t, "the event's retry", func() bool { return len(recv.got()) == 2 })
	got := recv.got()
	for i, w := range got {
		if data := itgData(t, w.body); data != want {
			t.Errorf("webhook %d: data = %s, want %s", i, data, want)
		}
		if err := accVerify(t, ep.Secret, w); err != nil {
			t.Errorf("webhook %d: signature: %v", i, err)
		}
	}
	if !bytes.Equal(got[0].body, got[1].body) {
		t.Errorf("the retry's body differs:\n%s\n%s", got[0].body, got[1].body)
	}
	resMust(h, http.MethodGet, "/v1/apps/"+appID+"/events/"+ev.ID, "", http.StatusOK, &ev)
	if string(ev.Payload) != want {
		t.Errorf("GET event: payload = %s, want %s", ev.Payload, want)
	}

	link := h.mustCreate("/v1/apps/"+appID+"/links", map[string]any{"url": "https://example.com/search?q=a&b=%3C"})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, h.base+"/r/"+link.Code, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "agent <1.0> & co")
	resp, err := h.noRedir.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	waitFor(t, "the link.clicked webhook", func() bool { return len(recv.got()) == 3 })
	click := recv.got()[2]
	for _, s := range []string{`"url":"https://example.com/search?q=a&b=%3C"`, `"user_agent":"agent <1.0> & co"`} {
		if !bytes.Contains(click.body, []byte(s)) {
			t.Errorf("link.clicked body %s lacks %s", click.body, s)
		}
	}
	if err := accVerify(t, ep.Secret, click); err != nil {
		t.Errorf("link.clicked signature: %v", err)
	}
}

// TestFilterKeepsItsEscapes: an endpoint filter on a string holding a NUL
// matches the events whose payload holds that string: the filter is stored
// as it was validated.
func TestFilterKeepsItsEscapes(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	code, b, _ := resDo(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints",
		`{"url":"`+recv.URL+`","filter":{"s":"a\u0000b","t":"<&>"}}`)
	if code != http.StatusCreated {
		t.Fatalf("create endpoint = %d %s", code, b)
	}
	var ep struct {
		Filter json.RawMessage `json:"filter"`
	}
	resDecode(t, b, &ep)
	if want := `{"s":"a\u0000b","t":"<&>"}`; string(ep.Filter) != want {
		t.Errorf("filter = %s, want %s", ep.Filter, want)
	}
	miss := h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "t", "payload": map[string]any{"s": `a\u0000b`, "t": "<&>"}}).ID
	hit := h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "t", "payload": map[string]any{"s": "a\x00b", "t": "<&>"}}).ID
	w := accWebhook(t, recv, hit)
	if !strings.Contains(string(w.body), `"s":"a\u0000b"`) {
		t.Errorf("webhook %s lacks the NUL escape", w.body)
	}
	waitFor(t, "the fan-out of "+miss, func() bool {
		return h.count(`SELECT count(*) FROM outbox_events WHERE id = ? AND fanned_out_at IS NOT NULL`, miss) == 1
	})
	if n := h.count(`SELECT count(*) FROM deliveries WHERE event_id = ?`, miss); n != 0 {
		t.Errorf("the event whose string is a\\u0000b as text matched the filter (%d deliveries)", n)
	}
}

// TestBodyLimitsAreInclusive: a body of exactly the limit is read (262,144
// bytes for events and for an endpoint's creation or update, which may
// carry PEM certificates and a key, 131,072 for event types, 65,536 for the
// other routes),
// one byte more is a 413 problem naming the limit.
func TestBodyLimitsAreInclusive(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	// padded returns the JSON object head+tail with a string member of
	// padding making it n bytes long.
	padded := func(head, tail string, n int) string {
		return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
	}
	for _, tc := range []struct {
		name, path string
		limit      int
		body       func(n int) string
		created    int
	}{
		{"Event", "/v1/apps/" + appID + "/events", 262144, func(n int) string {
			return padded(`{"type":"order.paid","payload":{"pad":"`, `"}}`, n)
		}, http.StatusCreated},
		{"App", "/v1/apps", 65536, func(n int) string {
			// Whitespace after the object: the body's size alone counts.
			b := `{"name":"acme"}`
			return b + strings.Repeat(" ", n-len(b))
		}, http.StatusCreated},
		{"EventType", "/v1/event-types", 131072, func(n int) string {
			b := `{"name":"order.padded"}`
			return b + strings.Repeat("\n", n-len(b))
		}, http.StatusCreated},
		{"Endpoint", "/v1/apps/" + appID + "/endpoints", 262144, func(n int) string {
			b := `{"url":"http://127.0.0.1:9/hook"}`
			return b + strings.Repeat(" ", n-len(b))
		}, http.StatusCreated},
	} {
		body := tc.body(tc.limit)
		if len(body) != tc.limit {
			t.Fatalf("%s: body of %d bytes, want %d", tc.name, len(body), tc.limit)
		}
		code, b, _ := resDo(h, http.MethodPost, tc.path, body)
		if code == http.StatusRequestEntityTooLarge {
			t.Errorf("%s: a body of exactly %d bytes = %d %s, want it read", tc.name, tc.limit, code, b)
		} else if code != tc.created {
			t.Errorf("%s: a body of exactly %d bytes = %d %s, want %d", tc.name, tc.limit, code, b, tc.created)
		}
		code, b, hdr := resDo(h, http.MethodPost, tc.path, tc.body(tc.limit+1))
		resCheckProblem(t, tc.name+"OneByteOver", code, b, hdr, http.StatusRequestEntityTooLarge, "")
		var p resProblem
		_ = json.Unmarshal(b, &p)
		if p.Type != "urn:hookd:problem:too-large" || !strings.Contains(p.Detail, strconv.Itoa(tc.limit)+" bytes") {
			t.Errorf("%s: one byte over: problem %s, want too-large naming the limit of %d bytes", tc.name, b, tc.limit)
		}
	}
}

// TestFilterParametersRefused: a list filter that Postgres cannot compare
// (a NUL or invalid UTF-8 in a name or ID, a time before year 1 in UTC) is
// a 422 problem on its parameter, in a query or in a bulk retry's body, and
// logs no error.
func TestFilterParametersRefused(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	events, deliveries := "/v1/apps/"+appID+"/events", "/v1/apps/"+appID+"/deliveries"
	const year0 = "0000-01-01T00:00:00Z"
	for _, tc := range []struct {
		name, method, path, body, field string
	}{
		{"EventsTypeNUL", http.MethodGet, events + "?type=a%00b", "", "type"},
		{"EventsTypeInvalidUTF8", http.MethodGet, events + "?type=%FF", "", "type"},
		{"EventsSinceYear0", http.MethodGet, events + "?since=" + year0, "", "since"},
		{"EventsUntilYear0", http.MethodGet, events + "?until=" + year0, "", "until"},
		{"DeliveriesEndpointNUL", http.MethodGet, deliveries + "?endpoint_id=%00", "", "endpoint_id"},
		{"DeliveriesEventNUL", http.MethodGet, deliveries + "?event_id=evt_%00", "", "event_id"},
		{"DeliveriesEventTypeNUL", http.MethodGet, deliveries + "?event_type=%00", "", "event_type"},
		{"DeliveriesEventTypeInvalidUTF8", http.MethodGet, deliveries + "?event_type=a%C3", "", "event_type"},
		{"DeliveriesSinceYear0", http.MethodGet, deliveries + "?since=" + year0, "", "since"},
		// Year 1 at +01:00 is year 0 in UTC.
		{"DeliveriesUntilYear0InUTC", http.MethodGet, deliveries + "?until=0001-01-01T00:30:00%2B01:00", "", "until"},
		{"DeadLettersEndpointNUL", http.MethodGet, "/v1/dead-letters?endpoint_id=%00", "", "endpoint_id"},
		{"DeadLettersEventTypeNUL", http.MethodGet, "/v1/dead-letters?event_type=%00", "", "event_type"},
		{"DeadLettersSinceYear0", http.MethodGet, "/v1/dead-letters?since=" + year0, "", "since"},
		{"DeadLettersUntilYear0", http.MethodGet, "/v1/dead-letters?until=" + year0, "", "until"},
		{"BulkRetryEndpointNUL", http.MethodPost, "/v1/dead-letters/retry", `{"endpoint_id":"a\u0000"}`, "endpoint_id"},
		{"BulkRetryEventTypeNUL", http.MethodPost, "/v1/dead-letters/retry", `{"event_type":"\u0000"}`, "event_type"},
		{"BulkRetrySinceYear0", http.MethodPost, "/v1/dead-letters/retry", `{"since":"` + year0 + `"}`, "since"},
	} {
		code, b, hdr := resDo(h, tc.method, tc.path, tc.body)
		resCheckProblem(t, tc.name, code, b, hdr, http.StatusUnprocessableEntity, tc.field)
	}
	if n := h.count(`SELECT count(*) FROM dead_letter_retries`); n != 0 {
		t.Errorf("refused bulk retries started %d jobs", n)
	}
	// The bounds themselves are fine.
	for _, path := range []string{
		events + "?since=0001-01-01T00:00:01Z&until=9999-12-31T23:59:59Z&type=order.paid",
		deliveries + "?since=0001-01-01T00:00:00.5Z&endpoint_id=ep_x&event_type=é",
		"/v1/dead-letters?since=0001-01-01T00:00:01Z",
	} {
		if code, b, _ := resDo(h, http.MethodGet, path, ""); code != http.StatusOK {
			t.Errorf("GET %s = %d %s, want 200", path, code, b)
		}
	}
	if h.logs.contains("level=ERROR") {
		t.Errorf("refused filters logged an error")
	}
}

// TestEndpointHeadersAllowList: an endpoint's custom headers may be any
// header but those the README refuses (the Content- prefix, hop-by-hop and
// connection headers, request control, hookd's own), on creation and on
// update; one stored before it was refused is not sent.
func TestEndpointHeadersAllowList(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	base := "/v1/apps/" + appID + "/endpoints"
	ep := h.mustCreate(base, map[string]any{"url": recv.URL})
	for _, name := range []string{
		"Content-Range", "Content-Disposition", "Content-Language", "content-location", "Content-Type",
		"Expect", "Http2-Settings", "HTTP2-Settings", "Max-Forwards", "Host",
		"Connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Authorization",
		"User-Agent", "webhook-id",
	} {
		headers := `{"headers":{"X-Fine":"1",` + strconv.Quote(name) + `:"v"}}`
		code, b, hdr := resDo(h, http.MethodPost, base, `{"url":"`+recv.URL+`",`+headers[1:])
		resCheckProblem(t, "Create"+name, code, b, hdr, http.StatusUnprocessableEntity, "headers")
		code, b, hdr = resDo(h, http.MethodPatch, base+"/"+ep.ID, headers)
		resCheckProblem(t, "Update"+name, code, b, hdr, http.StatusUnprocessableEntity, "headers")
	}
	if n := h.count(`SELECT count(*) FROM endpoints WHERE app_id = ?`, appID); n != 1 {
		t.Errorf("%d endpoints after refused creations, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM endpoints WHERE headers <> '{}'`); n != 0 {
		t.Errorf("refused updates wrote headers to %d endpoints", n)
	}
	allowed := `{"headers":{"Authorization":"Bearer t","X-Api-Key":"k","Idempotency-Key":"i","Accept":"application/json"}}`
	if code, b, _ := resDo(h, http.MethodPatch, base+"/"+ep.ID, allowed); code != http.StatusOK {
		t.Errorf("PATCH with allowed headers = %d %s, want 200", code, b)
	}

	// Stored before the rule: sent without the refused headers.
	planted := newReceiver(t, nil)
	itgPlantEndpoint(h, appID, planted.URL, map[string]string{"Content-Language": "fr", "Expect": "100-continue", "X-Kept": "yes"})
	id := dlvPublish(h, appID, "order.paid")
	w := accWebhook(t, planted, id)
	if w.header.Get("X-Kept") != "yes" || w.header.Get("Content-Language") != "" || w.header.Get("Expect") != "" {
		t.Errorf("planted endpoint got headers %v, want X-Kept and neither Content-Language nor Expect", w.header)
	}
}
