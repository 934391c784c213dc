package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics count API requests by route pattern (never the raw path, so
// the label set is bounded by the routes) and status.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_http_requests_total",
			Help: "API requests by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookd_http_request_duration_seconds",
			Help:    "API request latency by method and route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"method", "route"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

// observe is huma middleware that measures every operation.
func (m *httpMetrics) observe(ctx huma.Context, next func(huma.Context)) {
	start := time.Now()
	next(ctx)
	op := ctx.Operation()
	m.requests.WithLabelValues(op.Method, op.Path, strconv.Itoa(ctx.Status())).Inc()
	m.duration.WithLabelValues(op.Method, op.Path).Observe(time.Since(start).Seconds())
}

// monitoring guards Asynqmon: it needs an admin key, as the password of
// HTTP basic auth (any user name, so that browsers prompt for it) or as a
// bearer token. App-scoped keys are refused: Asynqmon shows every app.
func (s *Server) monitoring(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			_, key, _ = r.BasicAuth()
		}
		if !s.isAdmin(r.Context(), key) {
			w.Header().Set("WWW-Authenticate", `Basic realm="hookd monitoring", charset="UTF-8"`)
			writeProblem(w, newProblem(http.StatusUnauthorized, "unauthorized", "sign in with an admin API key as the password (any user name)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isAdmin reports whether key is an admin key: HOOKD_ADMIN_API_KEY or a
// live API key not scoped to an app.
func (s *Server) isAdmin(ctx context.Context, key string) bool {
	if key == "" {
		return false
	}
	p, ok := s.keyPrincipal(ctx, key)
	return ok && p.appID == ""
}
