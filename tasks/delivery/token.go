package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/hookd/hookd/tasks/lru"
)

// tokenEarlyExpiry is how long before its expiry a cached token is fetched
// again, so that it does not expire on the way (oauth2's own margin).
const tokenEarlyExpiry = 10 * time.Second

// maxTokenErrorText bounds what an attempt records of a token server's
// error_description.
const maxTokenErrorText = 200

// tokens keeps the OAuth 2.0 access token of each endpoint with client
// credentials, until it expires, at most max endpoints' (the least recently
// used go first). Token requests go through the client their caller gives
// (the shared one, whose guarded dialer makes the token URL obey the
// target rules of endpoint URLs).
type tokens struct {
	mu    sync.Mutex
	cache *lru.Cache[*tokenSource]
}

func newTokens(max int) *tokens {
	return &tokens{cache: lru.New[*tokenSource](max)}
}

// source returns the token source of endpoint endpointID with credentials
// o, a new one when they changed.
func (t *tokens) source(endpointID string, o *OAuth) *tokenSource {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.cache.Get(endpointID); ok && s.creds.equal(o) {
		return s
	}
	creds := *o
	s := &tokenSource{
		creds: &creds,
		conf: &clientcredentials.Config{
			ClientID: o.ClientID, ClientSecret: o.ClientSecret, TokenURL: o.TokenURL, Scopes: o.Scopes,
		},
		fetching: make(chan struct{}, 1),
	}
	if o.Audience != "" {
		s.conf.EndpointParams = url.Values{"audience": {o.Audience}}
	}
	t.cache.Put(endpointID, s)
	return s
}

// tokenSource is one endpoint's cached token: what oauth2.ReuseTokenSource
// does, with the context of each call (its deadline bounds the token
// request), and at most one token request at a time.
type tokenSource struct {
	creds *OAuth
	conf  *clientcredentials.Config // keeps the auth style it detects

	fetching chan struct{} // holds a value while a token request runs

	mu  sync.Mutex
	tok *oauth2.Token
}

// token returns the cached token if it is valid for tokenEarlyExpiry yet
// and is not stale, or else fetches a new one with client. Concurrent calls
// wait for one request.
func (s *tokenSource) token(ctx context.Context, client *http.Client, stale *oauth2.Token) (*oauth2.Token, error) {
	if tok := s.cached(stale); tok != nil {
		return tok, nil
	}
	select {
	case s.fetching <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.fetching }()
	if tok := s.cached(stale); tok != nil {
		return tok, nil // fetched while this call waited
	}
	tok, err := s.conf.Token(context.WithValue(ctx, oauth2.HTTPClient, client))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.tok = tok
	s.mu.Unlock()
	return tok, nil
}

// cached returns the cached token unless it is missing, stale or expires
// within tokenEarlyExpiry.
func (s *tokenSource) cached(stale *oauth2.Token) *oauth2.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == nil || s.tok == stale || !s.tok.Expiry.IsZero() && time.Until(s.tok.Expiry) <= tokenEarlyExpiry {
		return nil
	}
	return s.tok
}

// tokenError is what an attempt records of a failed token request: the
// token server's status and OAuth error code, or the network error as
// attemptError tells it (no resolved address, no URL); never the token
// server's body, which may echo what it was sent.
func tokenError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		msg := fmt.Sprintf("oauth token: the token server answered HTTP %d", re.Response.StatusCode)
		if re.ErrorCode != "" {
			msg += ": " + printable(re.ErrorCode, maxTokenErrorText)
			if re.ErrorDescription != "" {
				msg += " (" + printable(re.ErrorDescription, maxTokenErrorText) + ")"
			}
		}
		return msg
	}
	err = withoutDialAddress(err)
	if isTimeout(err) {
		return "oauth token: no token within the attempt's timeout: " + attemptError(err)
	}
	return "oauth token: " + attemptError(err)
}

// withoutDialAddress drops the address a failed dial names: the token
// server's host may resolve to an address of the operator's network.
func withoutDialAddress(err error) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" && (opErr.Addr != nil || opErr.Source != nil) {
		return &net.OpError{Op: opErr.Op, Net: opErr.Net, Err: opErr.Err}
	}
	return err
}

// printable returns s without control characters, cut to max bytes.
func printable(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	return s
}
