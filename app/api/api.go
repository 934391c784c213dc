// Package api is hookd's HTTP surface: the /v1 JSON API with its OpenAPI
// document, the public short link redirect and the health checks. It is the
// only package that maps errors to HTTP statuses and the only one that
// knows about authentication.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"unicode"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd/app/docs"
	"github.com/hookd/hookd/app/events"
	"github.com/hookd/hookd/app/links"
	"github.com/hookd/hookd/app/portal"
	"github.com/hookd/hookd/app/registry"
)

// CheckFunc reports whether a dependency is usable.
type CheckFunc func(ctx context.Context) error

// Config configures a Server.
type Config struct {
	// AdminAPIKey authorizes every /v1 request, next to the API keys stored
	// in the registry; empty disables it.
	AdminAPIKey string
	// MaxEventBytes bounds the body of POST /v1/apps/{app_id}/events
	// (default 256 KiB).
	MaxEventBytes int64
	// Version is reported in the OpenAPI document.
	Version string
	// Checks are run by /readyz, by name.
	Checks map[string]CheckFunc
	// Monitoring, when set, is served at /monitoring/ to admin keys
	// (Asynqmon).
	Monitoring http.Handler
	// Metrics registers the API's request metrics (optional).
	Metrics prometheus.Registerer
	// Recoveries serves the recovery of endpoints (optional: without it,
	// the recovery routes are not served).
	Recoveries EndpointRecoverer
	// Portal, when set, is served at /portal/ (the consumer portal, which
	// authenticates its own sessions), and PortalSessions opens them.
	Portal         http.Handler
	PortalSessions PortalSessions
}

// DefaultMaxEventBytes is the default bound of an event request body.
const DefaultMaxEventBytes = 256 << 10

// maxBodyBytes bounds the bodies of every other request.
const maxBodyBytes = 64 << 10

// Server serves the HTTP API.
type Server struct {
	registry    *registry.Registry
	events      *events.Store
	links       *links.Service
	deadLetters DeadLetterRetrier
	log         *slog.Logger
	cfg         Config
	adminKey    [32]byte
	metrics     *httpMetrics
	docs        *docs.Docs
}

// New returns a Server.
func New(reg *registry.Registry, evs *events.Store, ls *links.Service, dl DeadLetterRetrier, log *slog.Logger, cfg Config) *Server {
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = DefaultMaxEventBytes
	}
	page, err := docs.New("/openapi.json", "hookd API")
	if err != nil {
		// The assets are embedded and checked by the tests: a bug.
		panic(err)
	}
	return &Server{registry: reg, events: evs, links: ls, deadLetters: dl, log: log, cfg: cfg, adminKey: sha256.Sum256([]byte(cfg.AdminAPIKey)), metrics: newHTTPMetrics(cfg.Metrics), docs: page}
}

// Handler returns the routes: every operation is registered through huma,
// so the OpenAPI document at /openapi.json is generated from the handlers
// that serve it, and /docs renders it.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	api := humago.New(mux, s.humaConfig())
	api.UseMiddleware(s.metrics.observe, s.authenticate(api))

	s.registerHealth(api)
	s.registerApps(api)
	s.registerEndpoints(api)
	s.registerEventTypes(api)
	s.registerEvents(api)
	s.registerDeliveries(api)
	s.registerDeadLetters(api)
	if s.cfg.Recoveries != nil {
		s.registerRecoveries(api)
	}
	s.registerAPIKeys(api)
	s.registerLinks(api)
	if s.cfg.PortalSessions != nil {
		s.registerPortalSessions(api)
	}
	documentProblem(api.OpenAPI())
	documentStoredJSON(api.OpenAPI())
	dropPatternDescriptions(api.OpenAPI())

	mux.HandleFunc("GET /docs", s.docs.ServePage)
	mux.HandleFunc(docs.AssetsPath, func(w http.ResponseWriter, r *http.Request) {
		if !s.docs.ServeAsset(w, r) {
			writeProblem(w, newProblem(http.StatusNotFound, "not-found", "no such asset"))
		}
	})
	if s.cfg.Portal != nil {
		mux.Handle(portal.Path, s.cfg.Portal)
		mux.Handle("GET /portal", http.RedirectHandler(portal.Path, http.StatusMovedPermanently))
	}
	if s.cfg.Monitoring != nil {
		mux.Handle("/monitoring/", s.monitoring(s.cfg.Monitoring))
		mux.Handle("GET /monitoring", http.RedirectHandler("/monitoring/", http.StatusMovedPermanently))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem(http.StatusNotFound, "not-found", "no such route"))
	})
	return s.recoverPanics(rejectControlPaths(mux))
}

func (s *Server) humaConfig() huma.Config {
	cfg := huma.DefaultConfig("hookd", s.cfg.Version)
	cfg.Info.Description = "hookd delivers webhooks reliably: applications publish events, " +
		"hookd signs them per Standard Webhooks and POSTs them to subscribed endpoints, retrying with backoff."
	cfg.OpenAPIPath = "/openapi"
	cfg.DocsPath = "" // served by Handler, from embedded assets (app/docs)
	cfg.SchemasPath = ""
	cfg.CreateHooks = nil // no $schema fields or Link headers in responses
	cfg.Transformers = []huma.Transformer{s.problemTransformer}
	cfg.RejectUnknownQueryParameters = true
	cfg.Info.Contact = &huma.Contact{Name: "hookd", URL: "https://github.com/hookd/hookd"}
	// Relative: the API is served at the root of the listener that serves
	// this document, wherever that is.
	cfg.Servers = []*huma.Server{{URL: "/", Description: "The hookd API listener that serves this document (HOOKD_HTTP_ADDR)."}}
	cfg.Tags = []*huma.Tag{
		{Name: "Applications", Description: "Tenants: each owns its endpoints, events, links and scoped API keys."},
		{Name: "Endpoints", Description: "Where an application's events are delivered, with their subscriptions, filters and signing secrets."},
		{Name: "Event types", Description: "The catalog of event types, with the JSON Schema each type's payloads must match."},
		{Name: "Events", Description: "Publishing events to an application's endpoints, and what became of them."},
		{Name: "Deliveries", Description: "One delivery per event and endpoint, with its attempts."},
		{Name: "Dead letters", Description: "Deliveries that failed for good, and retrying them."},
		{Name: "API keys", Description: "Keys for the /v1 API: admin keys, or keys scoped to one application."},
		{Name: "Portal", Description: "Links to the consumer portal, where an application's customer manages its endpoints and follows its deliveries."},
		{Name: "Links", Description: "The example business module: short links whose clicks publish link.clicked."},
		{Name: "Health", Description: "Liveness and readiness probes, without authentication."},
	}
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {
			Type: "http", Scheme: "bearer",
			Description: "An API key: HOOKD_ADMIN_API_KEY, or one made with `hookd apikey create` or POST /v1/api-keys.",
		},
	}
	return cfg
}

// rejectControlPaths answers 404 for paths holding control characters (a
// %00 in an ID, say): no resource is named so, and Postgres refuses NUL.
func rejectControlPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.ContainsFunc(r.URL.Path, unicode.IsControl) {
			writeProblem(w, newProblem(http.StatusNotFound, "not-found", "no such resource"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "handler panicked", slog.String("path", r.URL.Path), slog.Any("panic", v))
				writeProblem(w, newProblem(http.StatusInternalServerError, "internal", "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// principal is who a request acts as.
type principal struct {
	// appID scopes a key to one application; "" is an admin.
	appID string
}

type principalKey struct{}

func principalOf(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// Operation metadata keys.
const (
	// metaAdminOnly marks operations that app-scoped keys may not call.
	metaAdminOnly = "hookd-admin-only"
)

// bearer is the security requirement of authenticated operations.
func bearer() []map[string][]string { return []map[string][]string{{"bearer": {}}} }

// public is the security requirement of operations anyone may call: none,
// stated (an empty list) rather than left out, so that the document says
// so.
func public() []map[string][]string { return []map[string][]string{} }

// authenticate lets through operations without security, and the others
// when they bear the admin key or a live API key. An app-scoped key gets 404
// for another app's resources and 403 for admin-only operations.
func (s *Server) authenticate(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		op := ctx.Operation()
		if len(op.Security) == 0 {
			next(ctx)
			return
		}
		p, ok := s.principal(ctx)
		if !ok {
			ctx.SetHeader("WWW-Authenticate", `Bearer realm="hookd"`)
			_ = huma.WriteErr(api, ctx, http.StatusUnauthorized, "send a valid API key as Authorization: Bearer <key>")
			return
		}
		// {app_id} may be the app's uid: resolved here, once for every
		// route, before a scoped key is checked against it, so that a
		// key is authorized against the ID of the app the uid names.
		appID := ctx.Param("app_id")
		if appID != "" {
			id, err := s.registry.ResolveApp(ctx.Context(), appID)
			if err != nil {
				if !isNotFound(err) {
					s.log.ErrorContext(ctx.Context(), "resolve app uid failed", slog.Any("err", err))
					_ = huma.WriteErr(api, ctx, http.StatusInternalServerError, "internal error")
					return
				}
				// An app key is told no more of another app's uid than
				// of its ID: that it names nothing it may reach.
				msg := "no application has this ID or uid"
				if p.appID != "" {
					msg = "no such resource"
				}
				_ = huma.WriteErr(api, ctx, http.StatusNotFound, msg)
				return
			}
			appID = id
		}
		if p.appID != "" {
			if adminOnly, _ := op.Metadata[metaAdminOnly].(bool); adminOnly {
				_ = huma.WriteErr(api, ctx, http.StatusForbidden, "this operation needs an admin API key")
				return
			}
			if appID != "" && appID != p.appID {
				_ = huma.WriteErr(api, ctx, http.StatusNotFound, "no such resource")
				return
			}
		}
		ctx = huma.WithValue(ctx, principalKey{}, p)
		if appID != "" {
			ctx = resolvedApp{humaContext: ctx, appID: appID}
		}
		next(ctx)
	}
}

// resolvedApp is a request whose {app_id} names its application by ID,
// whether the path gave its ID or its uid: the handlers read the ID.
type resolvedApp struct {
	humaContext
	appID string
}

// humaContext lets resolvedApp embed a huma.Context, whose Context method
// a field of that name would hide.
type humaContext = huma.Context

// Param implements huma.Context.
func (c resolvedApp) Param(name string) string {
	if name == "app_id" {
		return c.appID
	}
	return c.humaContext.Param(name)
}

func (s *Server) principal(ctx huma.Context) (principal, bool) {
	token, ok := strings.CutPrefix(ctx.Header("Authorization"), "Bearer ")
	if !ok || token == "" {
		return principal{}, false
	}
	return s.keyPrincipal(ctx.Context(), token)
}

// keyPrincipal resolves an API key: HOOKD_ADMIN_API_KEY or a live key in
// the registry. An unknown or revoked key reports false.
func (s *Server) keyPrincipal(ctx context.Context, key string) (principal, bool) {
	sum := sha256.Sum256([]byte(key))
	if s.cfg.AdminAPIKey != "" && subtle.ConstantTimeCompare(sum[:], s.adminKey[:]) == 1 {
		return principal{}, true
	}
	k, err := s.registry.Authenticate(ctx, key)
	if err != nil {
		if !isNotFound(err) {
			s.log.ErrorContext(ctx, "authenticate failed", slog.Any("err", err))
		}
		return principal{}, false
	}
	if k.AppID != nil {
		return principal{appID: *k.AppID}, true
	}
	return principal{}, true
}
