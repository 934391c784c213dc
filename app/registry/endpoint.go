package registry

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/hookd/hookd/app/filter"
	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks/delivery"
	"github.com/hookd/hookd/tasks/ledger"
)

// Endpoint is a URL that receives an app's events.
type Endpoint struct {
	bun.BaseModel `bun:"table:endpoints"`

	ID          string   `bun:"id,pk" json:"id"`
	AppID       string   `bun:"app_id,notnull" json:"app_id"`
	URL         string   `bun:"url,notnull" json:"url"`
	Description string   `bun:"description,notnull" json:"description"`
	EventTypes  []string `bun:"event_types,array,notnull" json:"event_types"`
	// Filter selects, by payload, the events the endpoint receives; null
	// receives all of its event types. It is stored as validated: without
	// a type:json tag, which would make bun re-encode it (escaping HTML
	// characters, rewriting \u0000).
	Filter         json.RawMessage   `bun:"filter,nullzero" json:"filter"`
	Headers        map[string]string `bun:"headers,type:jsonb,notnull" json:"headers"`
	RateLimit      *int              `bun:"rate_limit" json:"rate_limit"`
	Disabled       bool              `bun:"disabled,notnull" json:"disabled"`
	DisabledReason *string           `bun:"disabled_reason" json:"disabled_reason"`
	DisabledAt     *time.Time        `bun:"disabled_at" json:"disabled_at"`
	// FailingSince starts the endpoint's current run of failed attempts.
	FailingSince *time.Time        `bun:"failing_since" json:"failing_since"`
	Metadata     map[string]string `bun:"metadata,type:jsonb,notnull" json:"metadata"`
	// SignatureScheme is how the endpoint's newest key signs: SchemeHMAC
	// or SchemeEd25519.
	SignatureScheme string `bun:"signature_scheme,notnull" json:"signature_scheme" enum:"hmac-sha256,ed25519" doc:"How the endpoint's newest key signs: hmac-sha256 (v1 signatures, whsec_ secret) or ed25519 (v1a signatures, whsk_ private key held by hookd)."`
	// PublicKey is the "whpk_" public key of an ed25519 endpoint's newest
	// key; nil for HMAC.
	PublicKey *string `bun:"public_key" json:"public_key" doc:"For ed25519: the public key (whpk_...) that verifies the v1a signatures of the newest key; null for hmac-sha256."`
	// Ordering is OrderingUnordered or OrderingFIFO, set at creation.
	Ordering string `bun:"ordering,notnull" json:"ordering" enum:"unordered,fifo" doc:"unordered: deliveries go out several at a time, each retried on its own. fifo: one at a time, in the order their events were committed; a failing delivery holds those behind it until it succeeds or is dead-lettered. Set at creation."`
	// TLS and OAuth are what the API shows of the stored authentication
	// columns below (AfterScanRow fills them in).
	TLS       *EndpointTLS   `bun:"-" json:"tls" doc:"The endpoint's TLS material: a client certificate for mutual TLS and CAs that verify its server; null for none. The client key is never returned."`
	OAuth     *EndpointOAuth `bun:"-" json:"oauth" doc:"The OAuth 2.0 client credentials whose bearer token each delivery carries; null for none. The client secret is never returned."`
	CreatedAt time.Time      `bun:"created_at,nullzero,notnull,default:clock_timestamp()" json:"created_at"`
	UpdatedAt time.Time      `bun:"updated_at,nullzero,notnull,default:clock_timestamp()" json:"updated_at"`

	// The authentication columns as stored: TLSClientKey and
	// OAuthClientSecret sealed (Config.Secrets).
	TLSClientCertificate *string  `bun:"tls_client_certificate" json:"-"`
	TLSClientKey         *string  `bun:"tls_client_key" json:"-"`
	TLSCABundle          *string  `bun:"tls_ca_bundle" json:"-"`
	OAuthTokenURL        *string  `bun:"oauth_token_url" json:"-"`
	OAuthClientID        *string  `bun:"oauth_client_id" json:"-"`
	OAuthClientSecret    *string  `bun:"oauth_client_secret" json:"-"`
	OAuthScopes          []string `bun:"oauth_scopes,array" json:"-"`
	OAuthAudience        *string  `bun:"oauth_audience" json:"-"`
}

// EndpointInput is what a caller sets on a new endpoint.
type EndpointInput struct {
	URL         string
	Description string
	// EventTypes subscribes the endpoint to these types; empty means all.
	EventTypes []string
	// Filter is a JSON filter on the payload (package filter); empty or
	// null means none.
	Filter    json.RawMessage
	Headers   map[string]string
	RateLimit *int
	Disabled  bool
	Metadata  map[string]string
	// SignatureScheme is SchemeHMAC (the default when empty) or
	// SchemeEd25519.
	SignatureScheme string
	// Ordering is OrderingUnordered (the default when empty) or
	// OrderingFIFO.
	Ordering string
	// TLS and OAuth authenticate the deliveries; nil for none.
	TLS   *TLSInput
	OAuth *OAuthInput
}

// EndpointPatch changes the fields that are not nil. A Filter of `null` or
// `{}` removes the filter; a RateLimit of 0 removes the limit; an empty
// TLSInput or OAuthInput removes the TLS material or the OAuth
// credentials, another replaces them (keeping the current client key or
// client secret when it leaves that out).
type EndpointPatch struct {
	URL         *string
	Description *string
	EventTypes  *[]string
	Filter      json.RawMessage
	Headers     *map[string]string
	RateLimit   *int
	Metadata    *map[string]string
	TLS         *TLSInput
	OAuth       *OAuthInput
}

// Orderings of an endpoint's deliveries.
const (
	OrderingUnordered = "unordered"
	OrderingFIFO      = "fifo"
)

// validOrdering returns the ordering s names ("" is OrderingUnordered).
func validOrdering(s string) (string, error) {
	switch s {
	case "", OrderingUnordered:
		return OrderingUnordered, nil
	case OrderingFIFO:
		return s, nil
	}
	return "", resource.Invalid("ordering", "must be %s or %s", OrderingUnordered, OrderingFIFO)
}

// Endpoint limits.
const (
	maxDescription = 1000
	maxEventTypes  = 100
	maxHeaders     = 20
	maxHeaderValue = 1024
	maxRateLimit   = 100_000
)

// CreateEndpoint validates in and creates an endpoint of app appID with a new
// signing key, which it returns in its text form: a "whsec_" secret or, for
// SchemeEd25519, a "whsk_" private key (the endpoint holds its public key). An app that has
// Config.MaxEndpointsPerApp endpoints gets a *resource.QuotaError; creations
// in one app queue on the app's row, so that concurrent ones cannot pass the
// limit together.
func (r *Registry) CreateEndpoint(ctx context.Context, appID string, in EndpointInput) (Endpoint, string, error) {
	ep := Endpoint{
		ID: outbox.NewID("ep"), AppID: appID, URL: in.URL, Description: in.Description,
		Headers: orEmpty(in.Headers), RateLimit: in.RateLimit, Metadata: orEmpty(in.Metadata),
	}
	var err error
	if err = r.validateURL(ctx, "url", in.URL); err != nil {
		return Endpoint{}, "", err
	}
	if err = validDescription(in.Description); err != nil {
		return Endpoint{}, "", err
	}
	if ep.EventTypes, err = validEventTypes(in.EventTypes); err != nil {
		return Endpoint{}, "", err
	}
	if ep.Filter, err = validFilter(in.Filter); err != nil {
		return Endpoint{}, "", err
	}
	if ep.Headers, err = validHeaders(ep.Headers); err != nil {
		return Endpoint{}, "", err
	}
	if err = validRateLimit(in.RateLimit); err != nil {
		return Endpoint{}, "", err
	}
	if err = validMetadata(in.Metadata); err != nil {
		return Endpoint{}, "", err
	}
	if in.Disabled {
		ep.Disabled, ep.DisabledReason = true, ptr("disabled on creation")
	}
	if ep.SignatureScheme, err = validScheme(in.SignatureScheme); err != nil {
		return Endpoint{}, "", err
	}
	if ep.Ordering, err = validOrdering(in.Ordering); err != nil {
		return Endpoint{}, "", err
	}
	if err = r.setTLS(&ep, in.TLS, ""); err != nil {
		return Endpoint{}, "", err
	}
	if err = r.setOAuth(ctx, &ep, in.OAuth, ""); err != nil {
		return Endpoint{}, "", err
	}
	secret, pub := newKey(ep.SignatureScheme)
	ep.PublicKey = pub
	err = r.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := r.reserveEndpoint(ctx, tx, appID); err != nil {
			return err
		}
		ins := tx.NewInsert().Model(&ep)
		if ep.Disabled {
			ins.Value("disabled_at", "clock_timestamp()")
		}
		if _, err := ins.Returning("created_at, updated_at, disabled_at").Exec(ctx); err != nil {
			if resource.SQLState(err) == resource.CodeForeignKeyViolation {
				return fmt.Errorf("app %s: %w", appID, resource.ErrNotFound)
			}
			return err
		}
		_, err := r.insertSecret(ctx, tx, ep.ID, secret)
		return err
	})
	if err != nil {
		return Endpoint{}, "", fmt.Errorf("create endpoint: %w", err)
	}
	_ = ep.AfterScanRow(ctx)
	return ep, secret, nil
}

// reserveEndpoint locks app appID's row for the rest of tx and checks that
// it may have one more endpoint.
func (r *Registry) reserveEndpoint(ctx context.Context, tx bun.Tx, appID string) error {
	var id string
	err := tx.NewSelect().Model((*App)(nil)).Column("id").Where("id = ?", appID).For("NO KEY UPDATE").Scan(ctx, &id)
	if err != nil {
		return fmt.Errorf("lock app %s: %w", appID, resource.NotFound(err))
	}
	n, err := tx.NewSelect().Model((*Endpoint)(nil)).Where("app_id = ?", appID).Count(ctx)
	if err != nil {
		return fmt.Errorf("count endpoints of app %s: %w", appID, err)
	}
	if limit := r.cfg.MaxEndpointsPerApp; int(n) >= limit {
		return &resource.QuotaError{Detail: fmt.Sprintf("an app may have at most %d endpoints (HOOKD_MAX_ENDPOINTS_PER_APP)", limit)}
	}
	return nil
}

// Endpoint returns endpoint id of app appID.
func (r *Registry) Endpoint(ctx context.Context, appID, id string) (Endpoint, error) {
	var ep Endpoint
	if err := r.db.NewSelect().Model(&ep).Where("app_id = ? AND id = ?", appID, id).Scan(ctx); err != nil {
		return Endpoint{}, fmt.Errorf("get endpoint %s: %w", id, resource.NotFound(err))
	}
	return ep, nil
}

// Endpoints lists the endpoints of app appID, newest first. It returns
// resource.ErrNotFound when the app does not exist.
func (r *Registry) Endpoints(ctx context.Context, appID string, q resource.PageQuery) (resource.Page[Endpoint], error) {
	after, err := q.Key()
	if err != nil {
		return resource.Page[Endpoint]{}, err
	}
	if err := r.appExists(ctx, appID); err != nil {
		return resource.Page[Endpoint]{}, err
	}
	var eps []Endpoint
	sel := r.db.NewSelect().Model(&eps).Where("app_id = ?", appID).OrderExpr("id DESC").Limit(q.Fetch())
	if after != "" {
		sel.Where("id < ?", after)
	}
	if err := sel.Scan(ctx); err != nil {
		return resource.Page[Endpoint]{}, fmt.Errorf("list endpoints: %w", err)
	}
	return resource.NewPage(q, eps, func(e Endpoint) string { return e.ID }), nil
}

// UpdateEndpoint applies p to endpoint id of app appID.
func (r *Registry) UpdateEndpoint(ctx context.Context, appID, id string, p EndpointPatch) (Endpoint, error) {
	upd := r.db.NewUpdate().Model((*Endpoint)(nil)).Where("app_id = ? AND id = ?", appID, id).Set("updated_at = clock_timestamp()")
	if p.URL != nil {
		if err := r.validateURL(ctx, "url", *p.URL); err != nil {
			return Endpoint{}, err
		}
		upd.Set("url = ?", *p.URL)
	}
	if p.Description != nil {
		if err := validDescription(*p.Description); err != nil {
			return Endpoint{}, err
		}
		upd.Set("description = ?", *p.Description)
	}
	if p.EventTypes != nil {
		types, err := validEventTypes(*p.EventTypes)
		if err != nil {
			return Endpoint{}, err
		}
		upd.Set("event_types = ?", pgdialect.Array(types))
	}
	if p.Filter != nil {
		f, err := validFilter(p.Filter)
		if err != nil {
			return Endpoint{}, err
		}
		if f == nil {
			upd.Set("filter = NULL")
		} else {
			upd.Set("filter = ?::json", string(f))
		}
	}
	if p.Headers != nil {
		h, err := validHeaders(orEmpty(*p.Headers))
		if err != nil {
			return Endpoint{}, err
		}
		upd.Set("headers = ?", h)
	}
	if p.RateLimit != nil {
		if *p.RateLimit == 0 {
			upd.Set("rate_limit = NULL")
		} else if err := validRateLimit(p.RateLimit); err != nil {
			return Endpoint{}, err
		} else {
			upd.Set("rate_limit = ?", *p.RateLimit)
		}
	}
	if p.Metadata != nil {
		if err := validMetadata(*p.Metadata); err != nil {
			return Endpoint{}, err
		}
		upd.Set("metadata = ?", orEmpty(*p.Metadata))
	}
	if p.TLS != nil || p.OAuth != nil {
		if err := r.patchAuth(ctx, appID, id, p, upd); err != nil {
			return Endpoint{}, err
		}
	}
	var ep Endpoint
	if err := upd.Returning("*").Scan(ctx, &ep); err != nil {
		return Endpoint{}, fmt.Errorf("update endpoint %s: %w", id, resource.NotFound(err))
	}
	return ep, nil
}

// SetEndpointDisabled disables (with reason) or enables endpoint id of app
// appID. A disabled endpoint gets no new deliveries; its queued ones fail
// and can be retried from the dead letters once it is enabled again. A
// change of state (enabled to disabled or back) is told to
// Config.EndpointChanged in the same transaction.
func (r *Registry) SetEndpointDisabled(ctx context.Context, appID, id string, disabled bool, reason string) (Endpoint, error) {
	if disabled && (len(reason) > maxDescription || strings.ContainsRune(reason, 0)) {
		return Endpoint{}, resource.Invalid("reason", "must be at most %d characters, without NUL", maxDescription)
	}
	var ep Endpoint
	err := r.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var before Endpoint
		err := tx.NewSelect().Model(&before).Column("disabled", "failing_since").
			Where("app_id = ? AND id = ?", appID, id).For("UPDATE").Scan(ctx)
		if err != nil {
			return resource.NotFound(err)
		}
		upd := tx.NewUpdate().Model((*Endpoint)(nil)).Where("app_id = ? AND id = ?", appID, id).
			Set("updated_at = clock_timestamp()").Set("disabled = ?", disabled)
		if disabled {
			upd.Set("disabled_reason = ?", cmp.Or(reason, "disabled by the API")).
				Set("disabled_at = coalesce(disabled_at, clock_timestamp())")
		} else {
			// A fresh start: the failing streak that may have disabled it is over.
			upd.Set("disabled_reason = NULL").Set("disabled_at = NULL").Set("failing_since = NULL")
		}
		if err := upd.Returning("*").Scan(ctx, &ep); err != nil {
			return err
		}
		if before.Disabled == disabled {
			return nil
		}
		c := EndpointChange{Kind: ChangeEnabled, AppID: appID, EndpointID: id, Manual: true, FailingSince: before.FailingSince, At: ep.UpdatedAt}
		if disabled {
			c.Kind, c.Reason = ChangeDisabled, *ep.DisabledReason
		}
		return r.changed(ctx, tx, c)
	})
	if err != nil {
		return Endpoint{}, fmt.Errorf("set endpoint %s disabled=%t: %w", id, disabled, err)
	}
	return ep, nil
}

// DeleteEndpoint deletes endpoint id of app appID with its secrets and its
// deliveries; deliveries still queued are dropped.
func (r *Registry) DeleteEndpoint(ctx context.Context, appID, id string) error {
	return r.runInTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*Endpoint)(nil)).Where("app_id = ? AND id = ?", appID, id).Exec(ctx)
		if err != nil {
			return fmt.Errorf("delete endpoint %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("delete endpoint %s: %w", id, resource.ErrNotFound)
		}
		return ledger.DeleteOfEndpoint(ctx, tx, id)
	})
}

func (r *Registry) appExists(ctx context.Context, appID string) error {
	ok, err := r.db.NewSelect().Model((*App)(nil)).Where("id = ?", appID).Exists(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("find app %s: %w", appID, err)
	case !ok:
		return fmt.Errorf("app %s: %w", appID, resource.ErrNotFound)
	}
	return nil
}

// validateURL accepts absolute http(s) URLs without credentials whose host,
// unless private targets are allowed, is not (and does not resolve to) a
// loopback, private or link-local address. A host that does not resolve now
// is accepted: the deliverer checks addresses again when it connects.
func (r *Registry) validateURL(ctx context.Context, field, raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return resource.Invalid(field, "not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return resource.Invalid(field, "scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		return resource.Invalid(field, "must be absolute, with a host")
	case u.User != nil:
		return resource.Invalid(field, "must not carry credentials")
	case len(raw) > 2048:
		return resource.Invalid(field, "must be at most 2048 characters")
	case r.cfg.AllowPrivateTargets:
		return nil
	}
	// A refusal names no address: what a host resolves to would map the
	// operator's network for the tenant.
	host := u.Hostname()
	if addr, err := netip.ParseAddr(host); err == nil {
		if !delivery.IsPublic(addr) {
			return resource.Invalid(field, "target not allowed: the host is not a public address (private targets are not allowed)")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := r.cfg.Resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if !delivery.IsPublic(a) {
			return resource.Invalid(field, "target not allowed: the host does not resolve to public addresses only (private targets are not allowed)")
		}
	}
	return nil
}

func validDescription(d string) error {
	if len(d) > maxDescription || strings.ContainsRune(d, 0) {
		return resource.Invalid("description", "must be at most %d characters, without NUL", maxDescription)
	}
	return nil
}

func validEventTypes(in []string) ([]string, error) {
	if len(in) > maxEventTypes {
		return nil, resource.Invalid("event_types", "must list at most %d types", maxEventTypes)
	}
	types := make([]string, 0, len(in))
	for _, t := range in {
		if t == "" || len(t) > 200 || strings.ContainsFunc(t, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			return nil, resource.Invalid("event_types", "%q is not an event type name", t)
		}
		types = append(types, t)
	}
	return types, nil
}

// validFilter parses a filter and returns it compacted, or nil for none.
func validFilter(raw json.RawMessage) (json.RawMessage, error) {
	if !utf8.Valid(raw) {
		return nil, resource.Invalid("filter", "must be valid UTF-8")
	}
	f, err := filter.Parse(raw)
	if err != nil {
		return nil, resource.Invalid("filter", "%v", err)
	}
	if f == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, resource.Invalid("filter", "%v", err)
	}
	return buf.Bytes(), nil
}

// validHeaders checks custom headers and returns them with canonical names:
// valid names that delivery.CustomHeaderAllowed allows, with values free of
// control characters.
func validHeaders(in map[string]string) (map[string]string, error) {
	if len(in) > maxHeaders {
		return nil, resource.Invalid("headers", "must have at most %d headers", maxHeaders)
	}
	out := make(map[string]string, len(in))
	for name, value := range in {
		canon := http.CanonicalHeaderKey(name)
		switch {
		case !validHeaderName(name):
			return nil, resource.Invalid("headers", "%q is not a valid header name", name)
		case !delivery.CustomHeaderAllowed(canon):
			return nil, resource.Invalid("headers", "%s is not allowed: Content-*, Proxy-*, Webhook-*, hop-by-hop headers, "+
				"Host, Expect, Max-Forwards and User-Agent are refused", canon)
		case len(value) > maxHeaderValue || strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }):
			return nil, resource.Invalid("headers", "value of %s must be at most %d characters, without control characters", canon, maxHeaderValue)
		}
		if _, dup := out[canon]; dup {
			return nil, resource.Invalid("headers", "%s is given twice", canon)
		}
		out[canon] = value
	}
	return out, nil
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func validRateLimit(n *int) error {
	if n != nil && (*n < 1 || *n > maxRateLimit) {
		return resource.Invalid("rate_limit", "must be between 1 and %d deliveries per second", maxRateLimit)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
