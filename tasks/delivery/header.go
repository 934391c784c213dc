package delivery

import (
	"net/http"
	"strings"
)

// refusedHeaders may not be custom headers of an endpoint, beside the
// refusedPrefixes: hop-by-hop and connection-specific headers, request
// control, and the User-Agent hookd sets. Names are canonical.
var refusedHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true,
	"Upgrade": true, "Http2-Settings": true,
	"Host": true, "Expect": true, "Max-Forwards": true,
	"User-Agent": true,
}

// refusedPrefixes start the names of headers that may not be custom
// headers: Content- (the body's framing and representation, hookd's to
// say), Proxy- (hop-by-hop) and Webhook- (the Standard Webhooks headers).
var refusedPrefixes = [...]string{"Content-", "Proxy-", "Webhook-"}

// CustomHeaderAllowed reports whether an endpoint may send a custom header
// named name (in any case) with its deliveries: any header but those that
// frame the body or the connection, control the request, or that hookd
// sets itself. The registry refuses the others when an endpoint is written,
// and a delivery leaves out any stored before they were refused.
func CustomHeaderAllowed(name string) bool {
	canon := http.CanonicalHeaderKey(name)
	if refusedHeaders[canon] {
		return false
	}
	for _, p := range refusedPrefixes {
		if strings.HasPrefix(canon, p) {
			return false
		}
	}
	return true
}
