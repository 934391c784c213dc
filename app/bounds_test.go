package app_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookd/hookd/app/filter"
)

// The bounds tests check the limits that keep one tenant's input from
// costing hookd unbounded work: endpoints per app, filter steps, schema
// complexity, payload nesting and live signing secrets. Their helpers carry
// a bnd prefix so that they cannot clash with other tests of the package.

// TestFilterOverBudgetDoesNotMatch publishes an event on which an
// endpoint's filter runs out of steps: the endpoint does not receive it,
// the others do, and hookd counts and logs it.
func TestFilterOverBudgetDoesNotMatch(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_MAX_EVENT_BYTES": strconv.Itoa(4 << 20)})
	filtered, all := newReceiver(t, nil), newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	eps := "/v1/apps/" + appID + "/endpoints"
	filteredID := h.mustCreate(eps, map[string]any{"url": filtered.URL, "filter": map[string]any{"a": map[string]any{"$contains": 1}}}).ID
	allID := h.mustCreate(eps, map[string]any{"url": all.URL}).ID
	// A filter stored before $contains was limited to 4 still applies,
	// within the budget.
	storedID := h.mustCreate(eps, map[string]any{"url": filtered.URL}).ID
	stored := `{"$or":[` + strings.TrimSuffix(strings.Repeat(`{"a":{"$contains":1}},`, 6), ",") + `]}`
	if _, err := h.db.ExecContext(t.Context(), `UPDATE endpoints SET filter = ?::json WHERE id = ?`, stored, storedID); err != nil {
		t.Fatal(err)
	}

	// The element that matches comes after more elements than the budget
	// has steps.
	costly := h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "list.sent", "payload": map[string]any{
		"a": json.RawMessage("[" + strings.Repeat("0,", filter.DefaultBudget) + "1]"),
	}}).ID
	cheap := h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "list.sent", "payload": map[string]any{"a": []int{0, 1}}}).ID
	waitFor(t, "both events delivered to the unfiltered endpoint", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'succeeded'`, allID) == 2
	})
	// Each event's deliveries are created together: the fan-out is done.
	for _, id := range []string{filteredID, storedID} {
		var got []string
		if err := h.db.NewRaw(`SELECT event_id FROM deliveries WHERE endpoint_id = ?`, id).Scan(t.Context(), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != cheap {
			t.Errorf("filtered endpoint %s has deliveries of %v, want only %s (not %s, over budget)", id, got, cheap, costly)
		}
	}
	if n := h.metricValue("hookd_filter_budget_exceeded_total", nil); n != 2 {
		t.Errorf("hookd_filter_budget_exceeded_total = %v, want 2", n)
	}
	if !h.logs.contains("filter over its step budget") || !h.logs.contains(filteredID) {
		t.Error("the filter over its budget was not logged with its endpoint")
	}
}

// bndNest returns n objects nested in one another: {"a":{"a":...1}}.
func bndNest(n int) string {
	return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n)
}

// TestPayloadNesting publishes payloads at and past MaxPayloadDepth (64):
// the deepest accepted one is delivered, deeper ones are refused with a
// 422 on payload, and nothing is written for them.
func TestPayloadNesting(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	epID := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL}).ID
	publish := func(payload string) (int, []byte, http.Header) {
		return resDo(h, http.MethodPost, "/v1/apps/"+appID+"/events", `{"type":"deep.thing","payload":`+payload+`}`)
	}
	for _, depth := range []int{65, 100, 9999} {
		code, b, hdr := publish(bndNest(depth))
		resCheckProblem(t, fmt.Sprintf("Depth%d", depth), code, b, hdr, http.StatusUnprocessableEntity, "payload")
		if !strings.Contains(string(b), "64 levels") {
			t.Errorf("depth %d: detail %s does not name the limit", depth, b)
		}
	}
	// Brackets in strings do not count.
	code, b, _ := publish(`{"s":"` + strings.Repeat("[{", 200) + `"}`)
	if code != http.StatusCreated {
		t.Errorf("brackets in a string: %d %s, want 201", code, b)
	}
	var ev struct {
		ID string `json:"id"`
	}
	resMust(h, http.MethodPost, "/v1/apps/"+appID+"/events", `{"type":"deep.thing","payload":`+bndNest(64)+`}`, http.StatusCreated, &ev)
	if n := h.count(`SELECT count(*) FROM outbox_events WHERE tenant = ?`, appID); n != 2 {
		t.Errorf("%d events written, want the 2 accepted", n)
	}
	waitFor(t, "the delivery of the payload nested 64 levels", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE event_id = ? AND endpoint_id = ? AND status = 'succeeded'`, ev.ID, epID) == 1
	})
}

// bndChain returns a schema whose $defs d0 ... dn each apply the next one
// twice to the same value through anyOf: validating a value evaluates
// about 2^(n+2) subschemas. At n = 21 (1,371 bytes) it took 11.9 s of CPU
// per publish.
func bndChain(n int) string {
	var b strings.Builder
	b.WriteString(`{"$ref":"#/$defs/d0","$defs":{`)
	for i := range n {
		fmt.Fprintf(&b, `"d%d":{"anyOf":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d"}]},`, i, i+1, i+1)
	}
	fmt.Fprintf(&b, `"d%d":{"type":"string"}}}`, n)
	return b.String()
}

// TestSchemaBounds checks the bounds on event type schemas: costly schemas
// are refused (422 on schema) when created or updated, and a costly schema
// stored before these bounds stops within its budget at publish (422 on
// payload), as do numbers too large to validate.
func TestSchemaBounds(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	publish := func(typ, payload string) (int, []byte, http.Header) {
		return resDo(h, http.MethodPost, "/v1/apps/"+appID+"/events", `{"type":"`+typ+`","payload":`+payload+`}`)
	}
	resMust(h, http.MethodPost, "/v1/event-types", `{"name":"order.placed","schema":{"type":"object"}}`, http.StatusCreated, nil)

	types := h.count(`SELECT count(*) FROM event_types`)
	deep := strings.Repeat(`{"not":`, 65) + "{}" + strings.Repeat("}", 65)
	for _, tc := range []struct{ name, schema, detail string }{
		{"Chain", bndChain(21), "more than 256 subschemas"},
		{"ChainOfSeven", bndChain(7), "more than 256 subschemas"},
		{"MembersDoubling", `{"allOf":[{"properties":{"a":{"$ref":"#"}}},{"properties":{"a":{"$ref":"#"}}}]}`, "more than 256 subschemas"},
		{"Nested", deep, "64 levels"},
		{"InPlaceCycle", `{"anyOf":[{"type":"string"},{"$ref":"#"}]}`, "applies itself"},
		{"DynamicRef", `{"$dynamicAnchor":"n","properties":{"a":{"$dynamicRef":"#n"}}}`, "$dynamicRef"},
	} {
		code, b, hdr := resDo(h, http.MethodPost, "/v1/event-types", `{"name":"costly.one","schema":`+tc.schema+`}`)
		resCheckProblem(t, "Create"+tc.name, code, b, hdr, http.StatusUnprocessableEntity, "schema")
		if !strings.Contains(string(b), tc.detail) {
			t.Errorf("Create%s: detail %s, want one with %q", tc.name, b, tc.detail)
		}
		code, b, hdr = resDo(h, http.MethodPatch, "/v1/event-types/order.placed", `{"schema":`+tc.schema+`}`)
		resCheckProblem(t, "Update"+tc.name, code, b, hdr, http.StatusUnprocessableEntity, "schema")
	}
	if n := h.count(`SELECT count(*) FROM event_types`); n != types {
		t.Errorf("%d event types after refused creations, want %d", n, types)
	}
	if n := h.count(`SELECT count(*) FROM event_types WHERE name = 'order.placed' AND schema = '{"type":"object"}'::jsonb`); n != 1 {
		t.Error("a refused update changed the schema")
	}
	// The costliest chain accepted validates within its budget (its
	// strings-only leaf refuses any object).
	resMust(h, http.MethodPost, "/v1/event-types", `{"name":"costly.ok","schema":`+bndChain(6)+`}`, http.StatusCreated, nil)
	if code, b, _ := publish("costly.ok", `{"a":1}`); code != http.StatusUnprocessableEntity || !strings.Contains(string(b), "does not match") {
		t.Errorf("publish costly.ok = %d %s, want 422: does not match the schema", code, b)
	}

	// A costly schema stored before the bounds: each publish stops within
	// its budget and writes nothing.
	if _, err := h.db.ExecContext(t.Context(), `INSERT INTO event_types (name, schema) VALUES ('costly.stored', ?::jsonb)`, bndChain(21)); err != nil {
		t.Fatal(err)
	}
	events := h.count(`SELECT count(*) FROM outbox_events`)
	for range 2 { // compiled, then from the cache
		code, b, hdr := publish("costly.stored", `{"a":1}`)
		resCheckProblem(t, "PublishStored", code, b, hdr, http.StatusUnprocessableEntity, "payload")
		if !strings.Contains(string(b), "steps") {
			t.Errorf("PublishStored: detail %s does not say the budget ran out", b)
		}
	}
	code, b, hdr := publish("costly.stored", `"not an object"`)
	resCheckProblem(t, "PublishStoredNotObject", code, b, hdr, http.StatusUnprocessableEntity, "payload")
	// A stored schema whose work cannot be metered is not used.
	if _, err := h.db.ExecContext(t.Context(), `INSERT INTO event_types (name, schema) VALUES ('dynamic.stored', ?::jsonb)`,
		`{"$dynamicAnchor":"n","properties":{"a":{"$dynamicRef":"#n"}}}`); err != nil {
		t.Fatal(err)
	}
	code, b, hdr = publish("dynamic.stored", `{"a":{}}`)
	resCheckProblem(t, "PublishDynamicStored", code, b, hdr, http.StatusUnprocessableEntity, "type")

	// Numbers whose exact value would cost too much to compute (numbers
	// beyond float64's range are refused earlier, as malformed).
	resMust(h, http.MethodPost, "/v1/event-types", `{"name":"measure.taken","schema":{"properties":{"n":{"type":"integer"},"l":{"items":{"minimum":0}}}}}`, http.StatusCreated, nil)
	for _, tc := range []struct{ typ, name, payload, field string }{
		{"measure.taken", "TinyExponent", `{"n":1e-999999}`, "payload/n"},
		{"measure.taken", "InAnArray", `{"l":[1,2,3e-5000]}`, "payload/l/2"},
		{"measure.taken", "ManyDigits", `{"n":1.` + strings.Repeat("7", 1200) + `}`, "payload/n"},
		{"order.placed", "UnderAnySchema", `{"a":{"b":[1e-1001]}}`, "payload/a/b/0"},
	} {
		code, b, hdr := publish(tc.typ, tc.payload)
		resCheckProblem(t, "Publish"+tc.name, code, b, hdr, http.StatusUnprocessableEntity, tc.field)
	}
	if n := h.count(`SELECT count(*) FROM outbox_events`); n != events {
		t.Errorf("refused publishes wrote %d events", n-events)
	}
	for _, tc := range []struct{ typ, payload string }{
		{"measure.taken", `{"n":1e300,"l":[0,1.5e-300,9.` + strings.Repeat("9", 900) + `]}`},
		{"never.registered", `{"n":1e-999999}`}, // no schema reads it
	} {
		if code, b, _ := publish(tc.typ, tc.payload); code != http.StatusCreated {
			t.Errorf("publish %s %.80s = %d %s, want 201", tc.typ, tc.payload, code, b)
		}
	}
}

// TestSecretLimits checks the rule of overlapping rotations: each retired
// secret keeps the grace period of its own rotation, and at most three
// secrets sign (the newest and the two most recent others), whatever the
// rotations, and whatever Postgres holds.
func TestSecretLimits(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, nil)
	// endpoint is an endpoint of an app of its own: its events reach it
	// alone.
	type endpoint struct{ appID, id, secret string }
	newEndpoint := func() endpoint {
		t.Helper()
		appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
		var ep struct {
			ID     string `json:"id"`
			Secret string `json:"secret"`
		}
		resMust(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints", `{"url":"`+recv.URL+`"}`, http.StatusCreated, &ep)
		return endpoint{appID: appID, id: ep.ID, secret: ep.Secret}
	}
	deliver := func(ep endpoint) received {
		t.Helper()
		id := h.mustCreate("/v1/apps/"+ep.appID+"/events", map[string]any{"type": "order.created", "payload": map[string]any{"n": 1}}).ID
		return accWebhook(t, recv, id)
	}
	rotate := func(ep endpoint, grace int) string {
		t.Helper()
		var s struct {
			Secret string `json:"secret"`
		}
		resMust(h, http.MethodPost, "/v1/apps/"+ep.appID+"/endpoints/"+ep.id+"/secret/rotate", fmt.Sprintf(`{"grace_period_seconds":%d}`, grace), http.StatusOK, &s)
		return s.Secret
	}
	live := func(ep endpoint) int {
		return h.count(`SELECT count(*) FROM endpoint_secrets WHERE endpoint_id = ? AND (expires_at IS NULL OR expires_at > clock_timestamp())`, ep.id)
	}
	// signedBy checks that w carries one signature per secret of want, and
	// none by the secrets of not.
	signedBy := func(name string, w received, want, not []string) {
		t.Helper()
		if sigs := strings.Fields(w.header.Get("webhook-signature")); len(sigs) != len(want) {
			t.Errorf("%s: %d signatures (%d bytes), want %d", name, len(sigs), len(w.header.Get("webhook-signature")), len(want))
		}
		for i, s := range want {
			if err := accVerify(t, s, w); err != nil {
				t.Errorf("%s: secret %d of the live ones does not verify: %v", name, i, err)
			}
		}
		for i, s := range not {
			if err := accVerify(t, s, w); err == nil {
				t.Errorf("%s: retired secret %d still verifies", name, i)
			}
		}
	}

	t.Run("GraceSurvivesALaterRotation", func(t *testing.T) {
		ep := newEndpoint()
		s0 := ep.secret
		s1 := rotate(ep, 3600)
		var before time.Time
		if err := h.db.NewRaw(`SELECT expires_at FROM endpoint_secrets WHERE secret = ?`, s0).Scan(t.Context(), &before); err != nil {
			t.Fatal(err)
		}
		s2 := rotate(ep, 0) // ends s1 at once, not s0
		var after time.Time
		if err := h.db.NewRaw(`SELECT expires_at FROM endpoint_secrets WHERE secret = ?`, s0).Scan(t.Context(), &after); err != nil {
			t.Fatal(err)
		}
		if !after.Equal(before) {
			t.Errorf("the second rotation moved the first one's expiry from %v to %v", before, after)
		}
		signedBy("AfterTwoRotations", deliver(ep), []string{s2, s0}, []string{s1})
	})

	t.Run("TenRotations", func(t *testing.T) {
		ep := newEndpoint()
		secrets := []string{ep.secret}
		for range 10 {
			secrets = append(secrets, rotate(ep, 3600))
			if got := live(ep); got > 3 {
				t.Fatalf("%d live secrets after rotation %d, want at most 3", got, len(secrets)-1)
			}
		}
		if got := live(ep); got != 3 {
			t.Errorf("%d live secrets after 10 rotations, want 3", got)
		}
		if n := h.count(`SELECT count(*) FROM endpoint_secrets WHERE endpoint_id = ?`, ep.id); n != 3 {
			t.Errorf("%d secrets stored after 10 rotations, want 3", n)
		}
		signedBy("AfterTenRotations", deliver(ep), secrets[8:], secrets[:8])
	})

	t.Run("MoreStored", func(t *testing.T) {
		// Secrets stored before the limit: the newest three sign.
		ep := newEndpoint()
		secrets := []string{ep.secret}
		for range 9 {
			s := "whsec_" + base64.StdEncoding.EncodeToString([]byte(rand.Text()[:24]))
			if _, err := h.db.ExecContext(t.Context(), `INSERT INTO endpoint_secrets (endpoint_id, secret, expires_at) VALUES (?, ?, clock_timestamp() + interval '1 hour')`, ep.id, s); err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, s)
		}
		signedBy("WithTenStored", deliver(ep), secrets[7:], secrets[:7])
	})
}

// TestEndpointQuota creates endpoints up to HOOKD_MAX_ENDPOINTS_PER_APP:
// one more is a 422 quota-exceeded problem that writes nothing, also when
// creations race at the limit.
func TestEndpointQuota(t *testing.T) {
	t.Parallel()
	const limit = 3
	h := start(t, map[string]string{"HOOKD_MAX_ENDPOINTS_PER_APP": strconv.Itoa(limit)})
	const wantDetail = "an app may have at most 3 endpoints (HOOKD_MAX_ENDPOINTS_PER_APP)"
	newApp := func() string { return h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID }
	create := func(appID string) (int, []byte, http.Header) {
		return resDo(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints", `{"url":"http://127.0.0.1:9/hook"}`)
	}
	checkQuota := func(name string, code int, b []byte, hdr http.Header) {
		t.Helper()
		resCheckProblem(t, name, code, b, hdr, http.StatusUnprocessableEntity, "")
		var p resProblem
		_ = json.Unmarshal(b, &p)
		if p.Type != "urn:hookd:problem:quota-exceeded" || p.Detail != wantDetail {
			t.Errorf("%s: problem %s, want type urn:hookd:problem:quota-exceeded with detail %q", name, b, wantDetail)
		}
	}
	endpoints := func(appID string) int { return h.count(`SELECT count(*) FROM endpoints WHERE app_id = ?`, appID) }

	appID := newApp()
	var first string
	for i := range limit {
		var ep struct {
			ID string `json:"id"`
		}
		resMust(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints", `{"url":"http://127.0.0.1:9/hook"}`, http.StatusCreated, &ep)
		if i == 0 {
			first = ep.ID
		}
	}
	secrets := h.count(`SELECT count(*) FROM endpoint_secrets s JOIN endpoints e ON e.id = s.endpoint_id WHERE e.app_id = ?`, appID)
	for range 2 {
		code, b, hdr := create(appID)
		checkQuota("PastTheLimit", code, b, hdr)
	}
	if n := endpoints(appID); n != limit {
		t.Errorf("%d endpoints, want %d", n, limit)
	}
	if n := h.count(`SELECT count(*) FROM endpoint_secrets s JOIN endpoints e ON e.id = s.endpoint_id WHERE e.app_id = ?`, appID); n != secrets {
		t.Errorf("refused creations wrote %d secrets", n-secrets)
	}
	// The limit is per app; a deleted endpoint makes room.
	if code, b, _ := create(newApp()); code != http.StatusCreated {
		t.Errorf("another app's endpoint = %d %s, want 201", code, b)
	}
	resMust(h, http.MethodDelete, "/v1/apps/"+appID+"/endpoints/"+first, "", http.StatusNoContent, nil)
	if code, b, _ := create(appID); code != http.StatusCreated {
		t.Errorf("after a delete = %d %s, want 201", code, b)
	}
	code, b, hdr := create(appID)
	checkQuota("PastTheLimitAgain", code, b, hdr)
	code, b, hdr = create(missingApp)
	resCheckProblem(t, "MissingApp", code, b, hdr, http.StatusNotFound, "")

	// Creations racing for the last place: one wins.
	const racers = 8
	for round := range 5 {
		appID := newApp()
		for range limit - 1 {
			resMust(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints", `{"url":"http://127.0.0.1:9/hook"}`, http.StatusCreated, nil)
		}
		codes := make(chan int, racers)
		for range racers {
			go func() {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.base+"/v1/apps/"+appID+"/endpoints", strings.NewReader(`{"url":"http://127.0.0.1:9/hook"}`))
				if err != nil {
					codes <- 0
					return
				}
				req.Header.Set("Authorization", "Bearer "+adminKey)
				req.Header.Set("Content-Type", "application/json")
				resp, err := h.client.Do(req)
				if err != nil {
					codes <- 0
					return
				}
				_ = resp.Body.Close()
				codes <- resp.StatusCode
			}()
		}
		won := 0
		for range racers {
			switch code := <-codes; code {
			case http.StatusCreated:
				won++
			case http.StatusUnprocessableEntity:
			default:
				t.Errorf("round %d: a racing creation answered %d", round, code)
			}
		}
		if won != 1 || endpoints(appID) != limit {
			t.Errorf("round %d: %d of %d racing creations won, %d endpoints; want 1 and %d", round, won, racers, endpoints(appID), limit)
		}
	}

	// The document says so.
	doc := bndGet(t, h.base+"/openapi.json")
	if !strings.Contains(doc, "urn:hookd:problem:quota-exceeded") || !strings.Contains(doc, "HOOKD_MAX_ENDPOINTS_PER_APP") {
		t.Error("/openapi.json does not document the endpoint quota")
	}
}

// bndGet returns the body of a GET of url.
func bndGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, %v", url, resp.StatusCode, err)
	}
	return string(b)
}
