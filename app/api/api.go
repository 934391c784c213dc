// Package api is hookd's HTTP surface: the /v1 JSON API, the public short
// link redirect and the health checks. It is the only package that maps
// errors to HTTP statuses.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/hookd/hookd/app/links"
	"github.com/hookd/hookd/app/registry"
	"github.com/hookd/hookd/app/resource"
)

// CheckFunc reports whether a dependency is usable.
type CheckFunc func(ctx context.Context) error

// Config configures a Server.
type Config struct {
	// AdminAPIKey authorizes /v1 requests; empty refuses them all.
	AdminAPIKey string
	// Checks are run by /readyz, by name.
	Checks map[string]CheckFunc
}

// Server serves the HTTP API.
type Server struct {
	registry *registry.Registry
	links    *links.Service
	log      *slog.Logger
	cfg      Config
	adminKey [32]byte
}

// New returns a Server.
func New(reg *registry.Registry, ls *links.Service, log *slog.Logger, cfg Config) *Server {
	return &Server{registry: reg, links: ls, log: log, cfg: cfg, adminKey: sha256.Sum256([]byte(cfg.AdminAPIKey))}
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	v1 := http.NewServeMux()
	v1.HandleFunc("POST /v1/apps", s.createApp)
	v1.HandleFunc("GET /v1/apps/{app_id}", s.getApp)
	v1.HandleFunc("POST /v1/apps/{app_id}/endpoints", s.createEndpoint)
	v1.HandleFunc("POST /v1/apps/{app_id}/links", s.createLink)
	v1.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, problem(http.StatusNotFound, "not-found", "no such route"))
	})

	mux := http.NewServeMux()
	mux.Handle("/v1/", s.authenticate(v1))
	mux.HandleFunc("GET /r/{code}", s.redirect)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.ready)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, problem(http.StatusNotFound, "not-found", "no such route"))
	})
	return s.recoverPanics(rejectControlPaths(mux))
}

// rejectControlPaths answers 404 for paths holding control characters (a
// %00 in an ID, say): no resource is named so, and Postgres refuses NUL.
func rejectControlPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.ContainsFunc(r.URL.Path, unicode.IsControl) {
			writeProblem(w, problem(http.StatusNotFound, "not-found", "no such resource"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate lets through requests bearing the admin API key.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(token))
		if !ok || token == "" || s.cfg.AdminAPIKey == "" || subtle.ConstantTimeCompare(sum[:], s.adminKey[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hookd"`)
			writeProblem(w, problem(http.StatusUnauthorized, "unauthorized", "send a valid API key as Authorization: Bearer <key>"))
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
				writeProblem(w, problem(http.StatusInternalServerError, "internal", "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status, checks := http.StatusOK, map[string]string{}
	for name, check := range s.cfg.Checks {
		if err := check(ctx); err != nil {
			status = http.StatusServiceUnavailable
			checks[name] = "unavailable"
			s.log.WarnContext(ctx, "readiness check failed", slog.String("check", name), slog.Any("err", err))
			continue
		}
		checks[name] = "ok"
	}
	writeJSON(w, status, map[string]any{"status": http.StatusText(status), "checks": checks})
}

type createAppRequest struct {
	Name string `json:"name"`
}

func (s *Server) createApp(w http.ResponseWriter, r *http.Request) {
	var req createAppRequest
	if !decode(w, r, &req) {
		return
	}
	a, err := s.registry.CreateApp(r.Context(), req.Name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, a)
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	a, err := s.registry.App(r.Context(), r.PathValue("app_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

type createEndpointRequest struct {
	URL         string   `json:"url"`
	Description string   `json:"description"`
	EventTypes  []string `json:"event_types"`
}

// endpointWithSecret is an endpoint as creation returns it: the only
// response that carries the signing secret.
type endpointWithSecret struct {
	registry.Endpoint
	Secret string `json:"secret"`
}

func (s *Server) createEndpoint(w http.ResponseWriter, r *http.Request) {
	var req createEndpointRequest
	if !decode(w, r, &req) {
		return
	}
	ep, secret, err := s.registry.CreateEndpoint(r.Context(), r.PathValue("app_id"), registry.EndpointInput{
		URL: req.URL, Description: req.Description, EventTypes: req.EventTypes,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, endpointWithSecret{Endpoint: ep, Secret: secret})
}

type createLinkRequest struct {
	URL  string `json:"url"`
	Code string `json:"code"`
}

func (s *Server) createLink(w http.ResponseWriter, r *http.Request) {
	var req createLinkRequest
	if !decode(w, r, &req) {
		return
	}
	l, err := s.links.Create(r.Context(), r.PathValue("app_id"), req.URL, req.Code)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, l)
}

// redirect follows a short link, recording the click and publishing
// link.clicked in one transaction.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request) {
	target, err := s.links.Click(r.Context(), r.PathValue("code"), links.Visit{
		UserAgent: r.UserAgent(), Referer: r.Referer(),
	})
	if errors.Is(err, resource.ErrNotFound) {
		writeProblem(w, problem(http.StatusNotFound, "not-found", "no such link"))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store") // every click must reach us
	http.Redirect(w, r, target, http.StatusFound)
}
