package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestPortalInChromium drives the consumer portal in a headless Chromium
// that reaches loopback only, as an application's customer would: open the
// link the API made, add an endpoint, reveal its secret, see a delivery
// arrive and fail, retry it once the endpoint is fixed and see it succeed,
// send a test event, and read the event catalog. Screenshots go to the test
// artifacts.
func TestPortalInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a headless Chromium; skipped with -short")
	}
	t.Parallel()
	browserPath := chromium(t)

	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms"})
	// The receiver fails, with a body the portal shows, until ok.
	var ok atomic.Bool
	recv := newReceiver(t, nil)
	recv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		recv.mu.Lock()
		recv.requests = append(recv.requests, received{header: r.Header.Clone(), body: body})
		recv.mu.Unlock()
		if !ok.Load() {
			http.Error(w, "upstream database unavailable", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "Acme Shop"}).ID
	h.mustCreate("/v1/event-types", map[string]any{
		"name": "order.paid", "description": "An order was paid.",
		"schema": map[string]any{
			"type": "object", "required": []string{"order_id", "amount"},
			"properties": map[string]any{
				"order_id": map[string]any{"type": "string", "examples": []string{"ord_1042"}},
				"amount":   map[string]any{"type": "integer", "minimum": 1},
				"currency": map[string]any{"enum": []string{"EUR", "USD"}},
			},
		},
	})
	link := h.openPortal(appID, map[string]any{"expires_in_seconds": 600})

	ctx, offLoopback := offlineBrowser(t, browserPath, 2*time.Minute)
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Logf("page when %s failed:\n%.6000s", what, html)
			saveScreenshot(t, ctx, "portal-failed.png")
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}

	step("open the link",
		chromedp.Navigate(link.URL),
		chromedp.WaitVisible(`//h1[normalize-space(.)="Endpoints"]`),
		chromedp.WaitVisible(`//*[contains(@class,"brand")]//*[normalize-space(.)="Acme Shop"]`))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); strings.Contains(loc, "token") {
		t.Errorf("the portal's address keeps the token: %s", loc)
	}

	step("add an endpoint",
		chromedp.SetValue(`#add-endpoint input[name="url"]`, recv.URL+"/hooks"),
		chromedp.SetValue(`#add-endpoint input[name="description"]`, "Order webhooks"),
		chromedp.Click(`#add-endpoint input[value="order.paid"]`),
		chromedp.Click(`#add-endpoint button[type="submit"]`),
		chromedp.WaitVisible(`//p[contains(@class,"notice")][contains(., "The endpoint was added.")]`))
	var endpointID string
	if err := h.db.NewSelect().Table("endpoints").Column("id").Where("app_id = ?", appID).Scan(t.Context(), &endpointID); err != nil {
		t.Fatalf("the endpoint added in the portal: %v", err)
	}
	var ep struct {
		URL        string   `json:"url"`
		EventTypes []string `json:"event_types"`
	}
	if code := h.do(http.MethodGet, "/v1/apps/"+appID+"/endpoints/"+endpointID, nil, &ep); code != http.StatusOK ||
		ep.URL != recv.URL+"/hooks" || len(ep.EventTypes) != 1 || ep.EventTypes[0] != "order.paid" {
		t.Fatalf("the endpoint the portal made: %d %+v", code, ep)
	}

	step("reveal its secret",
		chromedp.Click(`#reveal-secret`),
		chromedp.WaitVisible(`#secret`))
	var secret struct {
		Secret string `json:"secret"`
	}
	h.do(http.MethodGet, "/v1/apps/"+appID+"/endpoints/"+endpointID+"/secret", nil, &secret)
	if got := text(`#secret`); got != secret.Secret || !strings.HasPrefix(got, "whsec_") {
		t.Errorf("revealed secret %q, want the API's %q", got, secret.Secret)
	}

	// An event published through the API fails at the endpoint: the
	// endpoint's page, which polls, shows the delivery arrive and fail.
	h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"order_id": "ord_1", "amount": 5}})
	failedRow := `//tbody[@id="delivery-rows"]/tr[td/span[contains(@class,"failed")]]`
	step("see the delivery arrive and fail", chromedp.WaitVisible(failedRow))
	step("open the failed delivery",
		chromedp.Click(failedRow+`/td[1]/a`),
		chromedp.WaitVisible(`#retry`),
		chromedp.WaitVisible(`//section[contains(@class,"attempt")]//span[normalize-space(.)="HTTP 503"]`),
		chromedp.WaitVisible(`//section[contains(@class,"attempt")]//pre[contains(., "upstream database unavailable")]`))
	saveScreenshot(t, ctx, "portal-delivery-failed.png")

	ok.Store(true) // the endpoint is fixed
	step("retry it",
		chromedp.Click(`#retry button`),
		chromedp.WaitVisible(`//h1/span[contains(@class,"badge")][normalize-space(.)="succeeded"]`))
	if n := len(recv.got()); n != 3 {
		t.Errorf("receiver got %d requests, want 3 (a try, a retry, the portal's)", n)
	}

	step("send a test event",
		chromedp.Click(`//a[normalize-space(.)="Endpoints"]`),
		chromedp.Click(`//a[normalize-space(.)="`+recv.URL+`/hooks"]`),
		chromedp.WaitVisible(`#test-event`),
		chromedp.Click(`#test-event button[type="submit"]`),
		chromedp.WaitVisible(`//p[contains(@class,"notice")][contains(., "Test event evt_")]`))
	step("see it delivered",
		chromedp.WaitVisible(`//tbody[@id="delivery-rows"]/tr[td[normalize-space(.)="order.paid"]][td/span[contains(@class,"succeeded")]][2]`))
	got := recv.got()
	if last := string(got[len(got)-1].body); !strings.Contains(last, `"order_id":"ord_1042"`) {
		t.Errorf("the test event carried %s, want the type's example", last)
	}
	saveScreenshot(t, ctx, "portal.png")

	step("read the event catalog",
		chromedp.Click(`//a[normalize-space(.)="Event catalog"]`),
		chromedp.WaitVisible(`//section[@id="type-order.paid"]//pre[contains(., "ord_1042")]`))
	saveScreenshot(t, ctx, "portal-catalog.png")

	if off := offLoopback(); len(off) > 0 {
		t.Errorf("the portal asked for %d URLs off loopback: %v", len(off), off)
	}
}
