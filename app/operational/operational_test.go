package operational

import (
	"strings"
	"testing"
)

func TestScrub(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"HTTP 500", "HTTP 500"},
		{"dial tcp 127.0.0.1:34567: connect: connection refused", "dial tcp [address]: connect: connection refused"},
		{"dial tcp [::1]:443: connect: connection refused", "dial tcp [address]: connect: connection refused"},
		{"read tcp 10.0.0.7:51234->203.0.113.9:443: read: connection reset by peer", "read tcp [address]->[address]: read: connection reset by peer"},
		{"lookup hooks.example.com: no such host", "lookup hooks.example.com: no such host"},
		{"every attempt failed since 2026-12-07T09:00:00Z (last: dial tcp 192.0.2.1:80: i/o timeout)", "every attempt failed since 2026-12-07T09:00:00Z (last: dial tcp [address]: i/o timeout)"},
	} {
		if got := scrub(tc.in); got != tc.want {
			t.Errorf("scrub(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := scrub(strings.Repeat("x", 10*maxErrorBytes)); len(got) > maxErrorBytes+len("…") {
		t.Errorf("scrub kept %d bytes, want at most %d", len(got), maxErrorBytes)
	}
}
