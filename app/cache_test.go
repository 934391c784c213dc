package app_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/uptrace/bun"
)

// TestEndpointChangesReachWorkersAtOnce: workers keep endpoints and
// subscriptions in memory (for a minute at most), so every change must
// reach them through Postgres notifications before the next event: a new
// URL, a rotated secret, a secret's expiry, new subscriptions.
func TestEndpointChangesReachWorkersAtOnce(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	a, b := newReceiver(t, nil), newReceiver(t, nil)
	appID := dlvApp(h)
	var ep struct{ ID, Secret string }
	dlvMust(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints", `{"url":"`+a.URL+`","event_types":["order.paid"]}`, http.StatusCreated, &ep)
	published := 0
	publish := func(typ string) string {
		published++
		return dlvPublish(h, appID, typ)
	}
	// verify checks that the n-th request of r came with a signature each
	// of valid verifies, and none of invalid.
	verify := func(r *receiver, n int, valid, invalid []string) {
		t.Helper()
		waitFor(t, "delivery", func() bool { return len(r.got()) > n })
		got := r.got()[n]
		for _, s := range valid {
			wh, _ := standardwebhooks.NewWebhook(s)
			if err := wh.Verify(got.body, got.header); err != nil {
				t.Errorf("request %d: not signed with %s: %v", n, s, err)
			}
		}
		for _, s := range invalid {
			wh, _ := standardwebhooks.NewWebhook(s)
			if err := wh.Verify(got.body, got.header); err == nil {
				t.Errorf("request %d: still signed with %s", n, s)
			}
		}
	}
	rotate := func(grace int) string {
		t.Helper()
		var sec struct{ Secret string }
		dlvMust(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints/"+ep.ID+"/secret/rotate",
			`{"grace_period_seconds":`+strconv.Itoa(grace)+`}`, http.StatusOK, &sec)
		return sec.Secret
	}

	publish("order.paid")
	verify(a, 0, []string{ep.Secret}, nil)

	dlvMust(h, http.MethodPatch, "/v1/apps/"+appID+"/endpoints/"+ep.ID, `{"url":"`+b.URL+`"}`, http.StatusOK, nil)
	publish("order.paid")
	verify(b, 0, []string{ep.Secret}, nil)

	second := rotate(0)
	publish("order.paid")
	verify(b, 1, []string{second}, []string{ep.Secret})

	// A grace period of 3s: the delivery must go out within it, on a loaded
	// CI machine too.
	third := rotate(3)
	graceFrom := time.Now()
	publish("order.paid")
	verify(b, 2, []string{second, third}, nil)
	time.Sleep(time.Until(graceFrom.Add(3100 * time.Millisecond))) // the grace period ends: no notification, only time
	publish("order.paid")
	verify(b, 3, []string{third}, []string{second})

	dlvMust(h, http.MethodPatch, "/v1/apps/"+appID+"/endpoints/"+ep.ID, `{"event_types":["order.refunded"]}`, http.StatusOK, nil)
	ignored := publish("order.paid")
	waitFor(t, "every fan-out", func() bool { return h.metricValue("hookd_fanout_events_total", nil) == float64(published) })
	if n := h.count(`SELECT count(*) FROM deliveries WHERE event_id = ?`, ignored); n != 0 {
		t.Errorf("an event of a type the endpoint left got %d deliveries", n)
	}
	publish("order.refunded")
	verify(b, 4, []string{third}, nil)

	if n := len(a.got()); n != 1 {
		t.Errorf("the old URL got %d requests, want 1", n)
	}
}

// TestEndpointCacheBypassedWhileListenIsDown: notifications sent while the
// worker's LISTEN connection is gone are lost, so the cache must empty and
// step aside until it is back; an endpoint changed meanwhile is read from
// Postgres.
func TestEndpointCacheBypassedWhileListenIsDown(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	a, b := newReceiver(t, nil), newReceiver(t, nil)
	appID := dlvApp(h)
	epID := dlvAddEndpoint(h, appID, a.URL)
	dlvPublish(h, appID, "order.paid")
	waitFor(t, "the first delivery", func() bool { return len(a.got()) == 1 })

	// Cut this test's endpoint-cache listener (its sessions carry its
	// schema's name; another test's worker, cut off, could miss a change
	// of its own), and change the endpoint before it is back.
	var listeners []struct {
		PID int  `bun:"pid"`
		Cut bool `bun:"cut"`
	}
	// In the select list, pg_terminate_backend runs for the selected rows
	// only (in WHERE, the planner may run it on any).
	err := h.db.NewRaw(`SELECT pid, pg_terminate_backend(pid) AS cut FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = current_setting('application_name')
			AND query = 'LISTEN "hookd_endpoints"'`).Scan(h.t.Context(), &listeners)
	var cut []int
	for _, l := range listeners {
		if l.Cut {
			cut = append(cut, l.PID)
		}
	}
	if err != nil || len(cut) == 0 {
		t.Fatalf("terminated listeners %v: %v", listeners, err)
	}
	// Once the backends are gone, the workers read end-of-file at once.
	waitFor(t, "the listeners to go", func() bool {
		return h.count(`SELECT count(*) FROM pg_stat_activity WHERE pid IN (?)`, bun.In(cut)) == 0
	})
	// The worker learns it from its read; until then, a loaded machine
	// could run the next delivery from the cache.
	waitFor(t, "the worker to see its listener gone", func() bool {
		return h.logs.contains("cache: notifications lost")
	})
	dlvMust(h, http.MethodPatch, "/v1/apps/"+appID+"/endpoints/"+epID, `{"url":"`+b.URL+`"}`, http.StatusOK, nil)
	dlvPublish(h, appID, "order.paid")
	waitFor(t, "the delivery to the new URL", func() bool { return len(b.got()) == 1 })
	if n := len(a.got()); n != 1 {
		t.Errorf("the old URL got %d requests, want 1", n)
	}
}

// TestPublishChecksChangeAtOnce: the api keeps what a publish checks (the
// app, the event type with its schema) in memory. A change made through
// it applies to the very next publish, without waiting for the
// notification (disabled here); one made elsewhere as soon as the
// notification arrives.
func TestPublishChecksChangeAtOnce(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := dlvApp(h)
	publish := func(appID, payload string) (int, []byte, http.Header) {
		h.t.Helper()
		return resDo(h, http.MethodPost, "/v1/apps/"+appID+"/events", `{"type":"invoice.paid","payload":`+payload+`}`)
	}
	exec := func(query string, args ...any) {
		t.Helper()
		if _, err := h.db.ExecContext(t.Context(), query, args...); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	for range 2 {
		if code, b, _ := publish(appID, `{}`); code != http.StatusCreated {
			t.Fatalf("publish = %d %s", code, b)
		}
	}

	exec(`ALTER TABLE applications DISABLE TRIGGER applications_notify`)
	exec(`ALTER TABLE event_types DISABLE TRIGGER event_types_notify`)
	resMust(h, http.MethodPost, "/v1/event-types", `{"name":"invoice.paid","schema":{"type":"object","required":["amount"]}}`, http.StatusCreated, nil)
	code, b, hdr := publish(appID, `{}`)
	resCheckProblem(t, "PublishAfterSchema", code, b, hdr, http.StatusUnprocessableEntity, "payload")
	resMust(h, http.MethodPatch, "/v1/event-types/invoice.paid", `{"schema":null}`, http.StatusOK, nil)
	if code, b, _ := publish(appID, `{}`); code != http.StatusCreated {
		t.Errorf("publish after the schema's removal = %d %s", code, b)
	}
	resMust(h, http.MethodPost, "/v1/event-types/invoice.paid/archive", "", http.StatusOK, nil)
	code, b, hdr = publish(appID, `{}`)
	resCheckProblem(t, "PublishAfterArchive", code, b, hdr, http.StatusUnprocessableEntity, "type")
	resMust(h, http.MethodDelete, "/v1/apps/"+appID, "", http.StatusNoContent, nil)
	code, b, hdr = publish(appID, `{}`)
	resCheckProblem(t, "PublishAfterDelete", code, b, hdr, http.StatusNotFound, "")

	// Elsewhere: here, in SQL on another connection.
	exec(`ALTER TABLE applications ENABLE TRIGGER applications_notify`)
	exec(`ALTER TABLE event_types ENABLE TRIGGER event_types_notify`)
	other := dlvApp(h)
	exec(`UPDATE event_types SET archived = false WHERE name = 'invoice.paid'`)
	waitFor(t, "the restored type", func() bool { code, _, _ := publish(other, `{}`); return code == http.StatusCreated })
	exec(`DELETE FROM applications WHERE id = ?`, other)
	waitFor(t, "the deletion", func() bool { code, _, _ := publish(other, `{}`); return code == http.StatusNotFound })
}
