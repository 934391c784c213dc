package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// ErrForbiddenTarget is returned when an endpoint's address is loopback,
// private, link-local or otherwise not on the public internet while private
// targets are not allowed.
var ErrForbiddenTarget = errors.New("forbidden target address")

// nonPublic lists ranges that IsPublic refuses beyond what netip classifies.
var nonPublic = [...]netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this" network
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("fd00:ec2::/32"),  // cloud metadata (inside fc00::/7 too)
	netip.MustParsePrefix("2001:db8::/32"),  // documentation
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("::/96"),          // IPv4-compatible (deprecated)
	netip.MustParsePrefix("fec0::/10"),      // site-local (deprecated)
}

// IPv6 ranges that carry an IPv4 address, which must be public too: NAT64
// (in the last 32 bits) and 6to4 (in bits 16 to 48).
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// IsPublic reports whether addr may be a webhook target when private targets
// are not allowed: it refuses loopback, private, link-local (which holds the
// cloud metadata address 169.254.169.254), multicast, unspecified and
// reserved addresses.
func IsPublic(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.IsLoopback() || addr.IsPrivate() || addr.IsUnspecified() ||
		addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() ||
		addr.IsInterfaceLocalMulticast() || addr.IsMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(addr) {
			return false
		}
	}
	b := addr.As16()
	switch {
	case nat64.Contains(addr):
		return IsPublic(netip.AddrFrom4([4]byte(b[12:16])))
	case sixToFour.Contains(addr):
		return IsPublic(netip.AddrFrom4([4]byte(b[2:6])))
	}
	return true
}

// guardedDialer returns a dialer that refuses non-public addresses after DNS
// resolution, at the moment of connecting, so that a hostname resolving to
// 127.0.0.1 (or re-resolving to it later) is refused as well.
func guardedDialer(timeout time.Duration, allowPrivate bool) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrForbiddenTarget, address)
			}
			if !IsPublic(ap.Addr()) {
				return fmt.Errorf("%w: %s", ErrForbiddenTarget, ap.Addr())
			}
			return nil
		}
	}
	return d
}
