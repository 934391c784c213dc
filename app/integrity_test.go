package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// The integrity tests check that payloads arrive exactly as published and
// that inputs get a defined answer. Their helpers carry an itg prefix so
// that they cannot clash with other tests of the package.

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
