package delivery

import (
	"context"
	"crypto/ed25519"
	"errors"

	"github.com/hookd/hookd/tasks/signature"
)

// Endpoint is what the deliverer needs to know of an endpoint.
type Endpoint struct {
	ID    string
	AppID string
	URL   string
	// Headers are sent with every delivery, before hookd's own.
	Headers map[string]string
	// Keys (HMAC secrets, v1) and Ed25519Keys (v1a) sign each delivery;
	// more than one while a secret is rotated, of both kinds while a
	// rotation switches the endpoint's scheme.
	Keys        [][]byte
	Ed25519Keys []ed25519.PrivateKey
	Disabled    bool
	// RateLimit caps deliveries per second to the endpoint (0: none).
	RateLimit int
	// Failing tells that the endpoint's failing streak runs: a success
	// must end it (EndpointHealth.Succeeded).
	Failing bool
	// EventTypes are the types the endpoint subscribes to (none: every
	// type): a FIFO head waits only for earlier events of these.
	EventTypes []string
	// TLS, when set, is the endpoint's client certificate and CAs: its
	// deliveries go through a client of its own.
	TLS *ClientTLS
	// OAuth, when set, gets the bearer token of each delivery.
	OAuth *OAuth
}

// signingKeys returns the keys that sign the endpoint's deliveries.
func (e Endpoint) signingKeys() signature.Keys {
	return signature.Keys{HMAC: e.Keys, Ed25519: e.Ed25519Keys}
}

// EndpointHealth hears the outcome of every attempt: it disables endpoints
// that answer 410 Gone or that fail for too long.
type EndpointHealth interface {
	// Succeeded ends the endpoint's failing streak.
	Succeeded(ctx context.Context, endpointID string) error
	// Failed extends the streak (gone: the endpoint answered 410) and
	// reports whether the endpoint is now disabled.
	Failed(ctx context.Context, endpointID string, gone bool, reason string) (disabled bool, err error)
}

// ErrEndpointGone is returned by an EndpointFunc for an endpoint that no
// longer exists.
var ErrEndpointGone = errors.New("endpoint gone")

// EndpointFunc returns an endpoint by ID, or an error wrapping
// ErrEndpointGone.
type EndpointFunc func(ctx context.Context, id string) (Endpoint, error)
