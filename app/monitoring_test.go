package app_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/hibiken/asynq"
)

// TestAsynqmonRunsADeadLetter drives Asynqmon at /monitoring/ in a headless
// Chromium as an operator would: sign in with an admin key, find the hookd
// queues, open the archived tasks (the dead letters) of the delivery queue
// and run one again once its endpoint is fixed.
func TestAsynqmonRunsADeadLetter(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a headless Chromium; skipped with -short")
	}
	t.Parallel()
	browserPath := chromium(t)

	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms"})
	recv, ok := switchable(t)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})
	h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": 1}})

	var deliveryID string
	waitFor(t, "the delivery to fail", func() bool {
		err := h.db.NewSelect().Table("deliveries").Column("id").
			Where("app_id = ? AND status = 'failed'", appID).Scan(t.Context(), &deliveryID)
		return err == nil
	})
	ins := asynq.NewInspectorFromRedisClient(h.rdb)
	waitFor(t, "its task to be archived", func() bool {
		info, err := ins.GetTaskInfo(h.queues[1], deliveryID)
		return err == nil && info.State == asynq.TaskStateArchived
	})
	ok.Store(true)

	// Without credentials a browser gets the basic-auth prompt.
	resp, err := http.Get(h.base + "/monitoring/")
	if err != nil {
		t.Fatalf("GET /monitoring/: %v", err)
	}
	_ = resp.Body.Close()
	if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(got, "Basic ") {
		t.Fatalf("GET /monitoring/ without credentials = %d, WWW-Authenticate %q; want 401 with a Basic challenge", resp.StatusCode, got)
	}

	ctx := newBrowser(t, browserPath, time.Minute)
	// Credentials in the URL are not sent with the SPA's API requests by
	// every Chromium version: send the header with every request instead.
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("operator:"+adminKey))
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("Network.enable: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": auth},
	}); err != nil {
		t.Fatalf("Network.setExtraHTTPHeaders: %v", err)
	}

	// XPath, which chromedp's default (search) selector accepts. Queue
	// names and task IDs hold no quotes.
	queueLink := func(q string) string { return `//a[normalize-space(.)="` + q + `"]` }
	archivedTab := `//div[@role="button"][starts-with(normalize-space(.), "Archived")]`
	row := `//tr[th[contains(., "` + deliveryID + `")]]`
	actions := row + `/td[last()]//button`
	// MUI shows a button's tooltip text as its title, or, while the
	// tooltip is open, in a popper the button is described by.
	run := row + `/td[last()]//button[@title="Run" or @aria-describedby = //*[@role="tooltip"][normalize-space(.)="Run"]/@id]`

	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Logf("page when %s failed:\n%s", what, html)
			saveScreenshot(t, ctx, "asynqmon-failed.png")
			t.Fatalf("%s: %v", what, err)
		}
	}
	step("open the queues page",
		chromedp.Navigate(h.base+"/monitoring/"),
		chromedp.WaitVisible(queueLink(h.queues[0])),
		chromedp.WaitVisible(queueLink(h.queues[1])))
	step("open the delivery queue",
		chromedp.Click(queueLink(h.queues[1])),
		chromedp.WaitVisible(archivedTab))
	step("list its archived tasks",
		chromedp.Click(archivedTab),
		chromedp.WaitVisible(row))
	step("show the actions of the dead letter",
		chromedp.Click(actions),
		chromedp.WaitVisible(run))
	saveScreenshot(t, ctx, "asynqmon.png")
	step("run the dead letter",
		chromedp.Click(run),
		chromedp.WaitNotPresent(row))

	waitFor(t, "the delivery to succeed", func() bool { return h.deliveryStatus(deliveryID) == "succeeded" })
	if n := len(recv.got()); n != 3 {
		t.Errorf("receiver got %d requests, want 3 (1 try + 1 retry + the run from Asynqmon)", n)
	}
}

// TestAsynqmonRefusesCrossSiteActions checks that Asynqmon's actions refuse
// the requests another site's page can make a browser send, with the basic
// credentials it keeps for hookd, and that nothing changes: a body-less
// POST used to pause a queue. Asynqmon's own pages, and clients that are
// not browsers (no Origin, no Sec-Fetch-Site), keep working.
func TestAsynqmonRefusesCrossSiteActions(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	// A published event makes the fan-out queue known to asynq.
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": 1}})
	queue := h.queues[0]
	ins := asynq.NewInspectorFromRedisClient(h.rdb)
	waitFor(t, "the fan-out queue to exist", func() bool {
		_, err := ins.GetQueueInfo(queue)
		return err == nil
	})
	paused := func() bool {
		t.Helper()
		info, err := ins.GetQueueInfo(queue)
		if err != nil {
			t.Fatalf("queue %s: %v", queue, err)
		}
		return info.Paused
	}
	pause := func(headers map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.base+"/monitoring/api/queues/"+queue+":pause", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("operator", adminKey)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST pause: %v", err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Content-Type")
	}

	self := h.base // http://127.0.0.1:port, Asynqmon's own origin
	for name, headers := range map[string]map[string]string{
		"CrossSite":         {"Sec-Fetch-Site": "cross-site", "Origin": "https://attacker.example"},
		"SameSite":          {"Sec-Fetch-Site": "same-site", "Origin": "http://other.127.0.0.1.example"},
		"CrossSiteNoOrigin": {"Sec-Fetch-Site": "cross-site"},
		"ForeignOrigin":     {"Origin": "https://attacker.example"}, // a browser without Sec-Fetch-Site
		"NullOrigin":        {"Origin": "null"},                     // a sandboxed frame
	} {
		code, ctype := pause(headers)
		if code != http.StatusForbidden || ctype != "application/problem+json" {
			t.Errorf("%s: POST pause = %d %s, want 403 application/problem+json", name, code, ctype)
		}
		if paused() {
			t.Fatalf("%s: the queue was paused by a cross-site request", name)
		}
	}
	for name, headers := range map[string]map[string]string{
		"SameOrigin":  {"Sec-Fetch-Site": "same-origin", "Origin": self},
		"OwnOrigin":   {"Origin": self}, // a browser without Sec-Fetch-Site
		"NotABrowser": nil,
	} {
		if code, _ := pause(headers); code != http.StatusNoContent {
			t.Errorf("%s: POST pause = %d, want 204", name, code)
		}
		if !paused() {
			t.Errorf("%s: the queue is not paused", name)
		}
		if err := ins.UnpauseQueue(queue); err != nil {
			t.Fatalf("unpause %s: %v", queue, err)
		}
	}
}

// chromium returns the path of a Chromium, installed by deploy/chromium.sh
// when missing. It skips the test where none can be installed.
func chromium(t *testing.T) string {
	t.Helper()
	return testTool(t, "chromium.sh", "Chromium", false)
}

// newBrowser starts a headless Chromium whose first tab lives at most
// timeout, and closes it when the test ends; extra adds options.
func newBrowser(t *testing.T, path string, timeout time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root, where Chromium's sandbox refuses to start
		chromedp.WindowSize(1600, 1000),
	)
	opts = append(opts, extra...)
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for Chromium to exit
		cancelTimeout()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium %s: %v", path, err)
	}
	return ctx
}

// saveScreenshot writes a PNG of the whole page to the test's artifacts
// (HOOKD_TEST_ARTIFACTS, or a temporary directory) and to
// /tmp/hookd-artifacts, where a person can look at it.
func saveScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	dir := os.Getenv("HOOKD_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	for _, d := range []string{dir, filepath.Join(os.TempDir(), "hookd-artifacts")} {
		p := filepath.Join(d, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Errorf("screenshot %s: %v", name, err)
			continue
		}
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Errorf("screenshot %s: %v", name, err)
			continue
		}
		t.Logf("screenshot: %s", p)
	}
}
