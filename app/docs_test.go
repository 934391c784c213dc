package app_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// offlineBrowser starts a headless Chromium that reaches loopback only:
// every other host name resolves to nothing, and every request that is not
// to loopback goes to a proxy that does not exist. It returns the tab and
// a func listing the URLs the page asked for off loopback (each one
// failed).
func offlineBrowser(t *testing.T, path string, timeout time.Duration) (context.Context, func() []string) {
	t.Helper()
	ctx := newBrowser(t, path, timeout,
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.ProxyServer("http://127.0.0.1:9"), // discard: nothing listens
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	var mu sync.Mutex
	var off []string
	if err := chromedp.Listen(ctx, func(ev any) {
		e, ok := ev.(*network.EventRequestWillBeSent)
		if !ok {
			return
		}
		u, err := url.Parse(e.Request.URL)
		if err != nil || u.Scheme == "data" || u.Scheme == "blob" || u.Scheme == "about" {
			return
		}
		if h := u.Hostname(); h != "127.0.0.1" && h != "::1" && h != "localhost" {
			mu.Lock()
			off = append(off, e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("listen to the browser: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("Network.enable: %v", err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), off...)
	}
}

// TestDocsRenderOffline opens /docs in a headless Chromium that can reach
// nothing but loopback, and finds the API's operations listed: the page
// needs no CDN.
func TestDocsRenderOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a headless Chromium; skipped with -short")
	}
	t.Parallel()
	browserPath := chromium(t)
	h := start(t, nil)

	resp, err := http.Get(h.base + "/docs")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if strings.Contains(string(page), "https://") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "https:") {
		t.Errorf("GET /docs: CSP %q and a page that loads from elsewhere:\n%s", csp, page)
	}

	ctx, offLoopback := offlineBrowser(t, browserPath, time.Minute)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The sidebar lists the operations of a tag once it is opened.
	err = chromedp.Do(sctx,
		chromedp.Navigate(h.base+"/docs"),
		chromedp.Click(`//div[@title="Endpoints"]`),
		chromedp.WaitVisible(`//div[@title="Create an endpoint"]`),
		chromedp.Click(`//div[@title="Create an endpoint"]`),
		chromedp.WaitVisible(`//h1[normalize-space(.)="Create an endpoint"]`),
		chromedp.Click(`//div[@title="Events"]`),
		chromedp.WaitVisible(`//div[@title="Publish an event"]`),
	)
	if err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Logf("page:\n%.4000s", html)
		saveScreenshot(t, ctx, "docs-failed.png")
		t.Fatalf("the operations are not listed: %v", err)
	}
	saveScreenshot(t, ctx, "docs.png")
	if off := offLoopback(); len(off) > 0 {
		t.Errorf("the page asked for %d URLs off loopback: %v", len(off), off)
	}
}
