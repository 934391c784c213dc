package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestIsPublic(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"93.184.215.14":        true,
		"2606:4700::1111":      true,
		"127.0.0.1":            false,
		"127.1.2.3":            false,
		"::1":                  false,
		"10.0.0.1":             false,
		"172.16.5.4":           false,
		"192.168.1.1":          false,
		"169.254.169.254":      false, // cloud metadata
		"fd00:ec2::254":        false, // cloud metadata, IPv6
		"fe80::1":              false,
		"0.0.0.0":              false,
		"::":                   false,
		"224.0.0.1":            false,
		"ff02::1":              false,
		"100.64.0.1":           false,
		"255.255.255.255":      false,
		"::ffff:127.0.0.1":     false, // IPv4-mapped loopback
		"::ffff:93.184.215.14": true,
		"64:ff9b::a9fe:a9fe":   false, // metadata through NAT64
		"64:ff9b::5db8:d70e":   true,  // 93.184.215.14 through NAT64
		"2002:7f00:1::1":       false, // 6to4 of 127.0.0.1
		"::7f00:1":             false, // IPv4-compatible 127.0.0.1
		"fec0::1":              false, // site-local
	} {
		if got := IsPublic(netip.MustParseAddr(addr)); got != want {
			t.Errorf("IsPublic(%s) = %v, want %v", addr, got, want)
		}
	}
}

// TestGuardedDialerRefusesAfterResolution dials a live loopback server by
// name and by address: the guard must refuse both, and allow them when
// private targets are allowed.
func TestGuardedDialerRefusesAfterResolution(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	for _, host := range []string{"127.0.0.1", "localhost"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := guardedDialer(time.Second, false).DialContext(ctx, "tcp", net.JoinHostPort(host, port))
		cancel()
		if !errors.Is(err, ErrForbiddenTarget) {
			t.Errorf("dial %s with private targets refused = %v, want ErrForbiddenTarget", host, err)
		}
	}
	conn, err := guardedDialer(time.Second, true).DialContext(t.Context(), "tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatalf("dial with private targets allowed: %v", err)
	}
	_ = conn.Close()
}

// TestAttemptErrorNamesNoAddress: what an attempt records of a failed
// request, which its app reads, names neither the address a refused
// target resolved to nor the resolver's.
func TestAttemptErrorNamesNoAddress(t *testing.T) {
	t.Parallel()
	asURLError := func(err error) error {
		return &url.Error{Op: "Post", URL: "https://hooks.example/secret-token", Err: err}
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"ForbiddenTarget", asURLError(&net.OpError{Op: "dial", Net: "tcp",
			Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 443},
			Err:  fmt.Errorf("%w: 10.1.2.3", ErrForbiddenTarget)}),
			"target not allowed: the host's address is not public (private targets are not allowed)"},
		{"ForbiddenTargetIPv6", &net.OpError{Op: "dial", Net: "tcp6",
			Addr: &net.TCPAddr{IP: net.ParseIP("fd00:ec2::254"), Port: 80},
			Err:  fmt.Errorf("%w: fd00:ec2::254", ErrForbiddenTarget)},
			"target not allowed: the host's address is not public (private targets are not allowed)"},
		{"DNSServer", asURLError(&net.OpError{Op: "dial", Net: "tcp",
			Err: &net.DNSError{Err: "no such host", Name: "hooks.internal", Server: "10.255.255.53:53", IsNotFound: true}}),
			"dial tcp: lookup hooks.internal: no such host"},
		{"DNSServerAlone", &net.DNSError{Err: "server misbehaving", Name: "hooks.example", Server: "[fd00::53]:53", IsTemporary: true},
			"lookup hooks.example: server misbehaving"},
		{"Refused", asURLError(&net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 443},
			Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}),
			"dial tcp 203.0.113.7:443: connect: connection refused"},
		{"Generic", asURLError(errors.New("EOF")), "EOF"},
	} {
		if got := attemptError(tc.err); got != tc.want {
			t.Errorf("%s: attemptError(%v) = %q, want %q", tc.name, tc.err, got, tc.want)
		}
	}
}
