package delivery

import "testing"

func TestCustomHeaderAllowed(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"Authorization":   true,
		"X-Api-Key":       true,
		"x-tenant":        true,
		"Cookie":          true,
		"Accept":          true,
		"Idempotency-Key": true,
		"Contents":        true, // not the Content- prefix
		"X-Content-Type":  true,
		"Webhook":         true,
		// The body's framing and representation: the whole Content- prefix.
		"Content-Type":        false,
		"Content-Length":      false,
		"Content-Encoding":    false,
		"Content-Range":       false,
		"Content-Disposition": false,
		"Content-Language":    false,
		"Content-Location":    false,
		"content-md5":         false,
		"CONTENT-X":           false,
		// Hop-by-hop and connection-specific.
		"Connection":          false,
		"Keep-Alive":          false,
		"Te":                  false,
		"Trailer":             false,
		"Transfer-Encoding":   false,
		"Upgrade":             false,
		"Http2-Settings":      false,
		"HTTP2-Settings":      false,
		"Proxy-Authorization": false,
		"Proxy-Authenticate":  false,
		"Proxy-Connection":    false,
		"proxy-anything":      false,
		// Request control.
		"Host":         false,
		"Expect":       false,
		"Max-Forwards": false,
		// Set by hookd.
		"User-Agent":        false,
		"Webhook-Id":        false,
		"webhook-signature": false,
		"Webhook-Timestamp": false,
	} {
		if got := CustomHeaderAllowed(name); got != want {
			t.Errorf("CustomHeaderAllowed(%q) = %v, want %v", name, got, want)
		}
	}
}
