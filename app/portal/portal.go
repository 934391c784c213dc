// Package portal is the consumer portal served at /portal/: pages, rendered
// on the server and made lively with htmx, where one application's customer
// manages its endpoints, reads the event catalog, follows and retries
// deliveries, reveals and rotates secrets and sends test events, without an
// API key. A session (a link made with the API, see Sessions) opens it for
// one application; every action goes through the same stores the API uses,
// bound to that application. It owns the portal_sessions table and must not
// import the api package.
package portal

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hookd/hookd/app/events"
	"github.com/hookd/hookd/app/registry"
	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/app/webasset"
	"github.com/hookd/hookd/tasks/ledger"
)

// Path is where the portal is served.
const Path = "/portal/"

// DefaultFrameAncestors lets no page embed the portal in a frame.
const DefaultFrameAncestors = "'none'"

// cookieName names the session cookie, scoped to Path.
const cookieName = "hookd_portal"

// csrfField is the form field, and csrfHeader the header htmx sends, that
// carry a session's CSRF token.
const (
	csrfField  = "csrf_token"
	csrfHeader = "X-CSRF-Token"
)

// maxFormBytes bounds the body of every form but the test event's.
const maxFormBytes = 64 << 10

// DefaultMaxEventBytes bounds the body of a test event form when
// Config.MaxEventBytes is 0.
const DefaultMaxEventBytes = 256 << 10

// Endpoints is what the portal does with endpoints (registry.Registry).
type Endpoints interface {
	App(ctx context.Context, id string) (registry.App, error)
	Endpoints(ctx context.Context, appID string, q resource.PageQuery) (resource.Page[registry.Endpoint], error)
	Endpoint(ctx context.Context, appID, id string) (registry.Endpoint, error)
	CreateEndpoint(ctx context.Context, appID string, in registry.EndpointInput) (registry.Endpoint, string, error)
	UpdateEndpoint(ctx context.Context, appID, id string, p registry.EndpointPatch) (registry.Endpoint, error)
	SetEndpointDisabled(ctx context.Context, appID, id string, disabled bool, reason string) (registry.Endpoint, error)
	DeleteEndpoint(ctx context.Context, appID, id string) error
	Secret(ctx context.Context, appID, id string) (registry.Secret, error)
	RotateSecret(ctx context.Context, appID, id string, grace time.Duration, secret, scheme string) (registry.Secret, error)
}

// Events is what the portal reads of the catalog and deliveries, and how
// it publishes a test event (events.Store).
type Events interface {
	EventTypes(ctx context.Context, withArchived bool, q resource.PageQuery) (resource.Page[events.EventType], error)
	EventType(ctx context.Context, name string) (events.EventType, error)
	Publish(ctx context.Context, appID string, in events.PublishInput) (events.Event, bool, error)
	Deliveries(ctx context.Context, appID string, f events.DeliveryFilter, q resource.PageQuery) (resource.Page[events.Delivery], error)
	Delivery(ctx context.Context, appID, id string) (events.Delivery, error)
}

// DeadLetterRetrier retries dead letters (tasks/deadletter), as the API's
// retry does.
type DeadLetterRetrier interface {
	Retry(ctx context.Context, ids []string) ([]string, error)
}

// Recoverer sends an endpoint the events it missed (tasks/recovery), as
// the API's recover does: Start starts a recovery, Create, Run and
// Continue make a dry run that counts in the request.
type Recoverer interface {
	Start(ctx context.Context, appID, endpointID string, since, until time.Time, r ledger.Replay) (ledger.Recovery, error)
	Create(ctx context.Context, appID, endpointID string, since, until time.Time, r ledger.Replay) (ledger.Recovery, error)
	Run(ctx context.Context, job *ledger.Recovery) error
	Continue(ctx context.Context, job ledger.Recovery) error
}

// Config configures the portal.
type Config struct {
	// FrameAncestors is the CSP frame-ancestors source list: who may
	// embed the portal (HOOKD_PORTAL_FRAME_ANCESTORS); DefaultFrameAncestors
	// when empty.
	FrameAncestors string
	// Secure marks the session cookie Secure: hookd is reached over
	// HTTPS. With FrameAncestors other than 'none' the cookie is then
	// SameSite=None (and Partitioned), so that it is sent inside another
	// site's frame; otherwise SameSite=Lax.
	Secure bool
	// MaxEventBytes bounds a test event's form (DefaultMaxEventBytes when
	// 0).
	MaxEventBytes int64
}

// Portal serves the portal.
type Portal struct {
	sessions  *Sessions
	endpoints Endpoints
	events    Events
	retrier   DeadLetterRetrier
	recoverer Recoverer
	log       *slog.Logger
	cfg       Config
	htmx      *webasset.Set
	pages     pages
	csp       string
}

//go:embed assets static templates
var embedded embed.FS

// New returns the portal.
func New(sessions *Sessions, eps Endpoints, evs Events, dl DeadLetterRetrier, rec Recoverer, log *slog.Logger, cfg Config) (*Portal, error) {
	if cfg.FrameAncestors == "" {
		cfg.FrameAncestors = DefaultFrameAncestors
	}
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = DefaultMaxEventBytes
	}
	if err := CheckFrameAncestors(cfg.FrameAncestors); err != nil {
		return nil, fmt.Errorf("portal frame ancestors: %w", err)
	}
	sub, err := fs.Sub(embedded, "assets")
	if err != nil {
		return nil, fmt.Errorf("portal assets: %w", err)
	}
	htmx, err := webasset.Load(sub, Path+"assets/")
	if err != nil {
		return nil, fmt.Errorf("portal assets: %w", err)
	}
	p := &Portal{sessions: sessions, endpoints: eps, events: evs, retrier: dl, recoverer: rec, log: log, cfg: cfg, htmx: htmx}
	if p.pages, err = parsePages(); err != nil {
		return nil, err
	}
	p.csp = strings.Join([]string{
		"default-src 'none'",
		"base-uri 'none'",
		"connect-src 'self'",
		"form-action 'self'",
		"frame-ancestors " + cfg.FrameAncestors,
		"img-src 'self' data:",
		"script-src 'self'",
		"style-src 'self'",
	}, "; ")
	return p, nil
}

// CheckFrameAncestors refuses what is no CSP source list, or would break
// out of the frame-ancestors directive.
func CheckFrameAncestors(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("want 'none', 'self' or space-separated origins such as https://app.example.com")
	}
	for src := range strings.FieldsSeq(v) {
		if strings.ContainsAny(src, ";,'\"") && src != "'none'" && src != "'self'" {
			return fmt.Errorf("%q is not a source: want 'none', 'self' or an origin such as https://app.example.com", src)
		}
		if src == "'none'" && len(strings.Fields(v)) > 1 {
			return errors.New("'none' stands alone")
		}
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		return errors.New("want printable ASCII")
	}
	return nil
}

// Handler returns the portal's routes, under Path. Every page but the
// login and the assets needs a live session; every request that changes
// something needs the session's CSRF token and must come from the portal's
// own origin (http.CrossOriginProtection).
func (p *Portal) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LoginPath, p.login)
	mux.HandleFunc("GET "+Path+"static/portal.css", p.stylesheet)
	mux.HandleFunc(Path+"assets/", func(w http.ResponseWriter, r *http.Request) {
		if !p.htmx.Serve(w, r) {
			p.fail(w, r, resource.ErrNotFound)
		}
	})
	in := func(pattern string, h func(http.ResponseWriter, *http.Request, Session)) {
		mux.Handle(pattern, p.authenticated(maxFormBytes, h))
	}
	in("GET "+Path+"{$}", func(w http.ResponseWriter, r *http.Request, _ Session) {
		http.Redirect(w, r, Path+"endpoints", http.StatusSeeOther)
	})
	in("GET "+Path+"endpoints", p.listEndpoints)
	in("POST "+Path+"endpoints", p.createEndpoint)
	in("GET "+Path+"endpoints/{id}", p.showEndpoint)
	in("POST "+Path+"endpoints/{id}", p.updateEndpoint)
	in("POST "+Path+"endpoints/{id}/disable", p.disableEndpoint)
	in("POST "+Path+"endpoints/{id}/enable", p.enableEndpoint)
	in("POST "+Path+"endpoints/{id}/delete", p.deleteEndpoint)
	in("POST "+Path+"endpoints/{id}/secret/rotate", p.rotateSecret)
	in("POST "+Path+"endpoints/{id}/recover", p.recoverEndpoint)
	mux.Handle("POST "+Path+"endpoints/{id}/test", p.authenticated(p.cfg.MaxEventBytes, p.sendTestEvent))
	in("GET "+Path+"event-types", p.listEventTypes)
	in("GET "+Path+"deliveries", p.listDeliveries)
	in("GET "+Path+"deliveries/{id}", p.showDelivery)
	in("POST "+Path+"deliveries/{id}/retry", p.retryDelivery)
	mux.HandleFunc(Path, func(w http.ResponseWriter, r *http.Request) { p.fail(w, r, resource.ErrNotFound) })

	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.renderError(w, r, http.StatusForbidden, "Cross-origin request refused: the portal's actions are taken from its own pages only.")
	}))
	return p.headers(csrf.Handler(mux))
}

// headers sets the security headers of every response.
func (p *Portal) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", p.csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if p.cfg.FrameAncestors == DefaultFrameAncestors {
			h.Set("X-Frame-Options", "DENY")
		}
		next.ServeHTTP(w, r)
	})
}

// csrfToken is the CSRF token of the session whose token is token: only
// who holds the session cookie can compute it, and it is not stored.
func csrfToken(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("hookd portal csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

type sessionCtx struct {
	Session
	csrf string
}

// authenticated runs h with the session of the request's cookie, and, for
// any method but GET and HEAD, only with the session's CSRF token: in the
// X-CSRF-Token header, or in a form field of a body of at most limit bytes.
func (p *Portal) authenticated(limit int64, h func(http.ResponseWriter, *http.Request, Session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(cookieName)
		if err != nil {
			p.renderError(w, r, http.StatusUnauthorized, "No portal session: open the portal with the link you were given.")
			return
		}
		sess, err := p.sessions.live(r.Context(), c.Value)
		if err != nil {
			if !errors.Is(err, errNoSession) {
				p.fail(w, r, err)
				return
			}
			p.clearCookie(w)
			p.renderError(w, r, http.StatusUnauthorized, "This portal session has expired or was revoked: ask for a new link.")
			return
		}
		want := csrfToken(c.Value)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			got := r.Header.Get(csrfHeader)
			if got == "" {
				got = r.PostFormValue(csrfField)
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				p.renderError(w, r, http.StatusForbidden, "The form's CSRF token is missing or wrong: reload the page and try again.")
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), csrfKey{}, want)), sess)
	})
}

type csrfKey struct{}

// login exchanges a session's token (the link's) for the session cookie,
// and sends the browser on to the portal, without the token in its URL.
func (p *Portal) login(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	w.Header().Set("Cache-Control", "no-store")
	sess, err := p.sessions.live(r.Context(), token)
	if err != nil {
		if !errors.Is(err, errNoSession) {
			p.fail(w, r, err)
			return
		}
		p.renderError(w, r, http.StatusUnauthorized, "This portal link has expired or was revoked: ask for a new one.")
		return
	}
	c := p.cookie(token)
	c.Expires = sess.ExpiresAt
	http.SetCookie(w, c)
	http.Redirect(w, r, Path+"endpoints", http.StatusSeeOther)
}

func (p *Portal) cookie(value string) *http.Cookie {
	c := &http.Cookie{Name: cookieName, Value: value, Path: Path, HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode}
	if p.cfg.Secure && p.cfg.FrameAncestors != DefaultFrameAncestors {
		c.SameSite, c.Partitioned = http.SameSiteNoneMode, true
	}
	return c
}

func (p *Portal) clearCookie(w http.ResponseWriter) {
	c := p.cookie("")
	c.MaxAge = -1
	http.SetCookie(w, c)
}

// fail answers err: 404 for what the session's app does not have, 422 for
// invalid input, 500 (logged) otherwise.
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, err error) {
	var invalid *resource.InvalidError
	var quota *resource.QuotaError
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, resource.ErrNotFound):
		p.renderError(w, r, http.StatusNotFound, "Not found.")
	case errors.As(err, &invalid):
		p.renderError(w, r, http.StatusUnprocessableEntity, invalid.Field+": "+invalid.Reason)
	case errors.As(err, &quota):
		p.renderError(w, r, http.StatusUnprocessableEntity, quota.Detail)
	case errors.Is(err, ledger.ErrBusy):
		p.renderError(w, r, http.StatusConflict, "Too many recoveries of this application are running: wait for one to complete.")
	case errors.As(err, &tooBig):
		p.renderError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form is larger than %d bytes.", tooBig.Limit))
	default:
		p.log.ErrorContext(r.Context(), "portal request failed", slog.String("path", r.URL.Path), slog.Any("err", err))
		p.renderError(w, r, http.StatusInternalServerError, "Something went wrong; try again.")
	}
}
