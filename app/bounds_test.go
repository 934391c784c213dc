package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

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
	var got []string
	if err := h.db.NewRaw(`SELECT event_id FROM deliveries WHERE endpoint_id = ?`, filteredID).Scan(t.Context(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != cheap {
		t.Errorf("the filtered endpoint has deliveries of %v, want only %s (not %s, over budget)", got, cheap, costly)
	}
	if n := h.metricValue("hookd_filter_budget_exceeded_total", nil); n != 1 {
		t.Errorf("hookd_filter_budget_exceeded_total = %v, want 1", n)
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
