// Package registry owns the webhook registry: applications (tenants), their
// endpoints, subscriptions and signing secrets, and the API keys that reach
// them. It serves the fan-out and the deliverer through Subscribers and
// DeliveryEndpoint. It must not import the api package.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/app/secretbox"
	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks/ledger"
)

// Config tunes a Registry.
type Config struct {
	// AllowPrivateTargets accepts endpoint URLs on loopback, private and
	// link-local addresses.
	AllowPrivateTargets bool
	// Resolver resolves endpoint hosts at creation (default
	// net.DefaultResolver).
	Resolver *net.Resolver
	// DisableAfter is how long an endpoint may fail without a success
	// before it is disabled (default 5 days).
	DisableAfter time.Duration
	// MaxEndpointsPerApp is how many endpoints an app may have (default
	// DefaultMaxEndpointsPerApp).
	MaxEndpointsPerApp int
	// Log receives what the registry notices while serving the fan-out: a
	// filter that ran out of steps (default: discarded).
	Log *slog.Logger
	// Metrics registers the registry's counters (optional).
	Metrics prometheus.Registerer
	// AppDeleted, when set, is told the ID of each application deleted,
	// once the deletion has committed and before DeleteApp returns: the
	// caches of this process drop the app before the deletion is answered
	// (other processes learn it from a notification).
	AppDeleted func(appID string)
	// EndpointChanged, when set, hears each change of an endpoint's state
	// (failing, recovered, disabled, enabled) inside the transaction that
	// makes it.
	EndpointChanged EndpointChangeFunc
	// Secrets seals the signing keys the registry stores and opens them
	// when it reads them. Nil stores new keys plain (and still reads plain
	// ones); a sealed key then does not open.
	Secrets *secretbox.Ring
}

// DefaultMaxEndpointsPerApp is how many endpoints an app may have unless
// Config says otherwise.
const DefaultMaxEndpointsPerApp = 1000

// Registry stores applications, endpoints and API keys.
type Registry struct {
	db  *bun.DB
	cfg Config
	log *slog.Logger
	// overBudget counts filter matches that ran out of steps.
	overBudget prometheus.Counter
}

// New returns a Registry on db.
func New(db *bun.DB, cfg Config) *Registry {
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.DisableAfter <= 0 {
		cfg.DisableAfter = 5 * 24 * time.Hour
	}
	if cfg.MaxEndpointsPerApp <= 0 {
		cfg.MaxEndpointsPerApp = DefaultMaxEndpointsPerApp
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Registry{
		db: db, cfg: cfg, log: cfg.Log,
		overBudget: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_filter_budget_exceeded_total",
			Help: "Endpoint filters that needed more than their step budget on an event, and so did not match it.",
		}),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(r.overBudget)
	}
	return r
}

// App is a tenant: the owner of endpoints and events.
type App struct {
	bun.BaseModel `bun:"table:applications"`

	ID string `bun:"id,pk" json:"id"`
	// UID is the integrator's own ID of the application, nil for none.
	UID       *string           `bun:"uid" json:"uid" doc:"Your own ID of the application (1 to 64 of A-Z, a-z, 0-9, '.', '_', '-'; unique), usable wherever an app_id is; null for none."`
	Name      string            `bun:"name,notnull" json:"name"`
	Metadata  map[string]string `bun:"metadata,type:jsonb,notnull" json:"metadata"`
	CreatedAt time.Time         `bun:"created_at,nullzero,notnull,default:clock_timestamp()" json:"created_at"`
	UpdatedAt time.Time         `bun:"updated_at,nullzero,notnull,default:clock_timestamp()" json:"updated_at"`
}

// AppInput is what a caller sets on a new application.
type AppInput struct {
	// UID is the integrator's own ID of the application; empty for none.
	UID      string
	Name     string
	Metadata map[string]string
}

// AppPatch changes the fields that are not nil.
type AppPatch struct {
	// UID sets the integrator's own ID; a pointer to "" removes it.
	UID      *string
	Name     *string
	Metadata *map[string]string
}

// CreateApp creates an application.
func (r *Registry) CreateApp(ctx context.Context, in AppInput) (App, error) {
	name, err := validName(in.Name)
	if err != nil {
		return App{}, err
	}
	if err := validMetadata(in.Metadata); err != nil {
		return App{}, err
	}
	a := App{ID: outbox.NewID("app"), Name: name, Metadata: orEmpty(in.Metadata)}
	if in.UID != "" {
		if err := validUID(in.UID); err != nil {
			return App{}, err
		}
		a.UID = &in.UID
	}
	if _, err := r.db.NewInsert().Model(&a).Returning("created_at, updated_at").Exec(ctx); err != nil {
		return App{}, fmt.Errorf("create app: %w", uidTaken(err, in.UID))
	}
	return a, nil
}

// App returns an application by ID.
func (r *Registry) App(ctx context.Context, id string) (App, error) {
	var a App
	if err := r.db.NewSelect().Model(&a).Where("id = ?", id).Scan(ctx); err != nil {
		return App{}, fmt.Errorf("get app %s: %w", id, resource.NotFound(err))
	}
	return a, nil
}

// Apps lists applications, newest first. A non-empty only restricts the
// list to that one application (the view of an app-scoped API key).
func (r *Registry) Apps(ctx context.Context, only string, q resource.PageQuery) (resource.Page[App], error) {
	after, err := q.Key()
	if err != nil {
		return resource.Page[App]{}, err
	}
	var apps []App
	sel := r.db.NewSelect().Model(&apps).OrderExpr("id DESC").Limit(q.Fetch())
	if only != "" {
		sel.Where("id = ?", only)
	}
	if after != "" {
		sel.Where("id < ?", after)
	}
	if err := sel.Scan(ctx); err != nil {
		return resource.Page[App]{}, fmt.Errorf("list apps: %w", err)
	}
	return resource.NewPage(q, apps, func(a App) string { return a.ID }), nil
}

// UpdateApp applies p to application id.
func (r *Registry) UpdateApp(ctx context.Context, id string, p AppPatch) (App, error) {
	upd := r.db.NewUpdate().Model((*App)(nil)).Where("id = ?", id).Set("updated_at = clock_timestamp()")
	if p.Name != nil {
		name, err := validName(*p.Name)
		if err != nil {
			return App{}, err
		}
		upd.Set("name = ?", name)
	}
	if p.Metadata != nil {
		if err := validMetadata(*p.Metadata); err != nil {
			return App{}, err
		}
		upd.Set("metadata = ?", orEmpty(*p.Metadata))
	}
	if p.UID != nil {
		if *p.UID == "" {
			upd.Set("uid = NULL")
		} else {
			if err := validUID(*p.UID); err != nil {
				return App{}, err
			}
			upd.Set("uid = ?", *p.UID)
		}
	}
	var a App
	if err := upd.Returning("*").Scan(ctx, &a); err != nil {
		uid := ""
		if p.UID != nil {
			uid = *p.UID
		}
		return App{}, fmt.Errorf("update app %s: %w", id, uidTaken(resource.NotFound(err), uid))
	}
	return a, nil
}

// DeleteApp deletes application id with its endpoints, secrets, links, API
// keys and deliveries. Deliveries still queued find their rows gone and are
// dropped, so deleting an app stops its deliveries.
func (r *Registry) DeleteApp(ctx context.Context, id string) error {
	err := r.runInTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*App)(nil)).Where("id = ?", id).Exec(ctx)
		if err != nil {
			return fmt.Errorf("delete app %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("delete app %s: %w", id, resource.ErrNotFound)
		}
		return ledger.DeleteOfApp(ctx, tx, id)
	})
	if err == nil && r.cfg.AppDeleted != nil {
		r.cfg.AppDeleted(id)
	}
	return err
}

// UIDs: an integrator's own ID of an application is 1 to 64 of
// [A-Za-z0-9._-], and never has the shape of a hookd app ID, so that an
// {app_id} names one application whichever it is.
var (
	uidPattern   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	appIDPattern = regexp.MustCompile(`^app_[0-9a-z]{26}$`)
)

// IsAppID reports whether s has the shape of a hookd application ID.
func IsAppID(s string) bool { return appIDPattern.MatchString(s) }

func validUID(uid string) error {
	switch {
	case !uidPattern.MatchString(uid):
		return resource.Invalid("uid", "must be 1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-'")
	case appIDPattern.MatchString(uid):
		return resource.Invalid("uid", "must not have the shape of a hookd app ID (app_ and 26 of 0-9, a-z)")
	case strings.Trim(uid, ".") == "":
		// "." and ".." would be path segments: a URL cleans them away.
		return resource.Invalid("uid", "must not be dots alone")
	}
	return nil
}

// uidTaken turns the unique violation of uid into resource.ErrConflict.
func uidTaken(err error, uid string) error {
	if resource.SQLState(err) == "23505" {
		return fmt.Errorf("uid %q is taken by another application: %w", uid, resource.ErrConflict)
	}
	return err
}

// ResolveApp returns the ID of the application that ref names: ref itself
// when it has the shape of an app ID (whether or not such an app exists),
// else the ID of the application whose uid is ref. A uid no application
// has is an error wrapping resource.ErrNotFound; a ref that is neither is
// returned as it is, for the caller's validation to refuse.
func (r *Registry) ResolveApp(ctx context.Context, ref string) (string, error) {
	if appIDPattern.MatchString(ref) || !uidPattern.MatchString(ref) {
		return ref, nil
	}
	var id string
	if err := r.db.NewSelect().Model((*App)(nil)).Column("id").Where("uid = ?", ref).Scan(ctx, &id); err != nil {
		return "", fmt.Errorf("get app by uid %s: %w", ref, resource.NotFound(err))
	}
	return id, nil
}

func validName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 || strings.ContainsFunc(name, unicode.IsControl) {
		return "", resource.Invalid("name", "must be 1 to 200 characters, without control characters")
	}
	return name, nil
}

// Metadata limits.
const (
	maxMetadataKeys  = 50
	maxMetadataKey   = 64
	maxMetadataValue = 512
)

func validMetadata(m map[string]string) error {
	if len(m) > maxMetadataKeys {
		return resource.Invalid("metadata", "must have at most %d keys", maxMetadataKeys)
	}
	for k, v := range m {
		if k == "" || len(k) > maxMetadataKey || strings.ContainsFunc(k, unicode.IsControl) {
			return resource.Invalid("metadata", "key %q must be 1 to %d characters, without control characters", k, maxMetadataKey)
		}
		if len(v) > maxMetadataValue || strings.ContainsRune(v, 0) {
			return resource.Invalid("metadata", "value of %q must be at most %d characters, without NUL", k, maxMetadataValue)
		}
	}
	return nil
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// deadlockRetries is how many times a transaction that Postgres aborted
// to break a deadlock runs again.
const deadlockRetries = 3

// runInTx runs fn in a transaction, again should Postgres abort it to
// break a deadlock: deleting an app's or an endpoint's deliveries can meet
// workers recording attempts of the same deliveries in another order.
func (r *Registry) runInTx(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
	for try := 0; ; try++ {
		err := r.db.RunInTx(ctx, nil, fn)
		var pgErr pgdriver.Error
		if try == deadlockRetries || !errors.As(err, &pgErr) || pgErr.Field('C') != "40P01" {
			return err
		}
	}
}
