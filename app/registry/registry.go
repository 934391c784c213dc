// Package registry owns the webhook registry: applications (tenants) and
// their endpoints, subscriptions and signing secrets. It serves the fan-out
// and the deliverer through Subscribers and DeliveryEndpoint.
package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/signature"
)

// App is a tenant: the owner of endpoints and events.
type App struct {
	bun.BaseModel `bun:"table:applications"`

	ID        string    `bun:"id,pk" json:"id"`
	Name      string    `bun:"name,notnull" json:"name"`
	CreatedAt time.Time `bun:"created_at,nullzero,notnull,default:clock_timestamp()" json:"created_at"`
	UpdatedAt time.Time `bun:"updated_at,nullzero,notnull,default:clock_timestamp()" json:"updated_at"`
}

// Endpoint is a URL that receives an app's events.
type Endpoint struct {
	bun.BaseModel `bun:"table:endpoints"`

	ID          string    `bun:"id,pk" json:"id"`
	AppID       string    `bun:"app_id,notnull" json:"app_id"`
	URL         string    `bun:"url,notnull" json:"url"`
	Description string    `bun:"description,notnull" json:"description"`
	EventTypes  []string  `bun:"event_types,array,notnull" json:"event_types"`
	Disabled    bool      `bun:"disabled,notnull" json:"disabled"`
	CreatedAt   time.Time `bun:"created_at,nullzero,notnull,default:clock_timestamp()" json:"created_at"`
	UpdatedAt   time.Time `bun:"updated_at,nullzero,notnull,default:clock_timestamp()" json:"updated_at"`
}

type endpointSecret struct {
	bun.BaseModel `bun:"table:endpoint_secrets"`

	ID         int64      `bun:"id,pk,autoincrement"`
	EndpointID string     `bun:"endpoint_id,notnull"`
	Secret     string     `bun:"secret,notnull"`
	CreatedAt  time.Time  `bun:"created_at,nullzero,notnull,default:clock_timestamp()"`
	ExpiresAt  *time.Time `bun:"expires_at"`
}

// Config tunes a Registry.
type Config struct {
	// AllowPrivateTargets accepts endpoint URLs on loopback, private and
	// link-local addresses.
	AllowPrivateTargets bool
	// Resolver resolves endpoint hosts at creation (default
	// net.DefaultResolver).
	Resolver *net.Resolver
}

// Registry stores applications and endpoints.
type Registry struct {
	db  *bun.DB
	cfg Config
}

// New returns a Registry on db.
func New(db *bun.DB, cfg Config) *Registry {
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	return &Registry{db: db, cfg: cfg}
}

// CreateApp creates an application.
func (r *Registry) CreateApp(ctx context.Context, name string) (App, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 || strings.ContainsFunc(name, unicode.IsControl) {
		return App{}, resource.Invalid("name", "must be 1 to 200 characters, without control characters")
	}
	a := App{ID: outbox.NewID("app"), Name: name}
	if _, err := r.db.NewInsert().Model(&a).Returning("created_at, updated_at").Exec(ctx); err != nil {
		return App{}, fmt.Errorf("create app: %w", err)
	}
	return a, nil
}

// App returns an application by ID.
func (r *Registry) App(ctx context.Context, id string) (App, error) {
	var a App
	if err := r.db.NewSelect().Model(&a).Where("id = ?", id).Scan(ctx); err != nil {
		return App{}, fmt.Errorf("get app %s: %w", id, notFound(err))
	}
	return a, nil
}

// EndpointInput is what a caller sets on a new endpoint.
type EndpointInput struct {
	URL         string
	Description string
	// EventTypes subscribes the endpoint to these types; empty means all.
	EventTypes []string
}

// CreateEndpoint validates in and creates an endpoint of app appID with a new
// signing secret, which it returns in its "whsec_" form.
func (r *Registry) CreateEndpoint(ctx context.Context, appID string, in EndpointInput) (Endpoint, string, error) {
	if err := r.validateURL(ctx, in.URL); err != nil {
		return Endpoint{}, "", err
	}
	if len(in.Description) > 1000 || strings.ContainsRune(in.Description, 0) {
		return Endpoint{}, "", resource.Invalid("description", "must be at most 1000 characters, without NUL")
	}
	types := make([]string, 0, len(in.EventTypes))
	for _, t := range in.EventTypes {
		if t == "" || len(t) > 200 || strings.ContainsFunc(t, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			return Endpoint{}, "", resource.Invalid("event_types", "%q is not an event type name", t)
		}
		types = append(types, t)
	}
	ep := Endpoint{ID: outbox.NewID("ep"), AppID: appID, URL: in.URL, Description: in.Description, EventTypes: types}
	secret := signature.NewSecret()
	err := r.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(&ep).Returning("created_at, updated_at").Exec(ctx); err != nil {
			if resource.SQLState(err) == resource.CodeForeignKeyViolation {
				return fmt.Errorf("app %s: %w", appID, resource.ErrNotFound)
			}
			return err
		}
		_, err := tx.NewInsert().Model(&endpointSecret{EndpointID: ep.ID, Secret: secret}).Exec(ctx)
		return err
	})
	if err != nil {
		return Endpoint{}, "", fmt.Errorf("create endpoint: %w", err)
	}
	return ep, secret, nil
}

// validateURL accepts absolute http(s) URLs without credentials whose host,
// unless private targets are allowed, is not (and does not resolve to) a
// loopback, private or link-local address. A host that does not resolve now
// is accepted: the deliverer checks addresses again when it connects.
func (r *Registry) validateURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return resource.Invalid("url", "not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return resource.Invalid("url", "scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		return resource.Invalid("url", "must be absolute, with a host")
	case u.User != nil:
		return resource.Invalid("url", "must not carry credentials")
	case len(raw) > 2048:
		return resource.Invalid("url", "must be at most 2048 characters")
	case r.cfg.AllowPrivateTargets:
		return nil
	}
	host := u.Hostname()
	if addr, err := netip.ParseAddr(host); err == nil {
		if !tasks.IsPublic(addr) {
			return resource.Invalid("url", "%s is not a public address (private targets are not allowed)", addr)
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
		if !tasks.IsPublic(a) {
			return resource.Invalid("url", "%s resolves to %s, not a public address (private targets are not allowed)", host, a.Unmap())
		}
	}
	return nil
}

// Subscribers returns the enabled endpoints of app appID subscribed to
// eventType. It is the fan-out's tasks.SubscribersFunc.
func (r *Registry) Subscribers(ctx context.Context, appID, eventType string) ([]string, error) {
	var ids []string
	err := r.db.NewSelect().Model((*Endpoint)(nil)).Column("id").
		Where("app_id = ?", appID).
		Where("NOT disabled").
		Where("(cardinality(event_types) = 0 OR ? = ANY(event_types))", eventType).
		OrderExpr("id").
		Scan(ctx, &ids)
	if err != nil {
		return nil, fmt.Errorf("find subscribers: %w", err)
	}
	return ids, nil
}

// DeliveryEndpoint returns what the deliverer needs of an endpoint: its URL,
// state and live signing keys. It is the deliverer's tasks.EndpointFunc.
func (r *Registry) DeliveryEndpoint(ctx context.Context, id string) (tasks.Endpoint, error) {
	var ep Endpoint
	if err := r.db.NewSelect().Model(&ep).Column("id", "url", "disabled").Where("id = ?", id).Scan(ctx); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return tasks.Endpoint{}, fmt.Errorf("endpoint %s: %w", id, tasks.ErrEndpointGone)
		}
		return tasks.Endpoint{}, fmt.Errorf("get endpoint %s: %w", id, err)
	}
	var secrets []string
	err := r.db.NewSelect().Model((*endpointSecret)(nil)).Column("secret").
		Where("endpoint_id = ?", id).
		Where("expires_at IS NULL OR expires_at > clock_timestamp()").
		OrderExpr("id DESC").
		Scan(ctx, &secrets)
	if err != nil {
		return tasks.Endpoint{}, fmt.Errorf("get secrets of endpoint %s: %w", id, err)
	}
	keys := make([][]byte, 0, len(secrets))
	for _, s := range secrets {
		k, err := signature.ParseSecret(s)
		if err != nil {
			return tasks.Endpoint{}, fmt.Errorf("endpoint %s: %w", id, err)
		}
		keys = append(keys, k)
	}
	return tasks.Endpoint{ID: ep.ID, URL: ep.URL, Keys: keys, Disabled: ep.Disabled}, nil
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return resource.ErrNotFound
	}
	return err
}
