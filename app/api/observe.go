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
//
// A browser sends the basic credentials it keeps for hookd with any request
// to it, including one another site's page makes it send. So Asynqmon's
// actions (every method but GET, HEAD and OPTIONS: run, delete, archive,
// pause) are refused with a 403 when the browser says the request is not
// from hookd's own pages: Sec-Fetch-Site other than same-origin or none (an
// address typed or bookmarked), or, from a browser that does not send it,
// an Origin whose host is not the request's Host. Requests with neither
// header (curl, scripts) are not a browser's and pass.
func (s *Server) monitoring(next http.Handler) http.Handler {
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeProblem(w, newProblem(http.StatusForbidden, "forbidden", "cross-origin request refused: Asynqmon's actions are taken from its own pages only"))
	}))
	return csrf.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	}))
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
