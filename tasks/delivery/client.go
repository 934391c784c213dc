package delivery

import (
	"net/http"
	"sync"
	"time"

	"github.com/hookd/hookd/tasks/lru"
)

// clients keeps the HTTP clients of the endpoints that have TLS material of
// their own (ClientTLS): each needs its own transport, built like the
// shared one (guarded dialer, no proxy, timeouts) but with its certificate
// and CAs. It keeps at most max, by endpoint, the least recently used going
// first; a client is replaced when its endpoint's material changes. The
// idle connections of a client dropped either way are closed.
type clients struct {
	proto *http.Client // the shared client, whose transport is cloned

	mu    sync.Mutex
	cache *lru.Cache[endpointClient]
}

// endpointIdleConnTimeout bounds how long an endpoint's own client keeps
// an idle connection.
const endpointIdleConnTimeout = 10 * time.Second

type endpointClient struct {
	version string
	client  *http.Client
}

func newClients(proto *http.Client, max int) *clients {
	return &clients{proto: proto, cache: lru.New[endpointClient](max)}
}

// get returns the client of endpoint endpointID with material t.
func (c *clients) get(endpointID string, t *ClientTLS) *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ec, ok := c.cache.Get(endpointID); ok && ec.version == t.version {
		return ec.client
	}
	transport := c.proto.Transport.(*http.Transport).Clone()
	transport.TLSClientConfig = t.config()
	// Its own transport keeps idle connections a short while: a dropped
	// client's connections, in flight when it was dropped, close soon
	// after, so that many such endpoints do not pile them up.
	transport.IdleConnTimeout = endpointIdleConnTimeout
	client := *c.proto
	client.Transport = transport
	if old, ok := c.cache.Put(endpointID, endpointClient{version: t.version, client: &client}); ok {
		// Requests in flight on it finish; their connections then idle
		// for endpointIdleConnTimeout.
		old.client.CloseIdleConnections()
	}
	return &client
}
