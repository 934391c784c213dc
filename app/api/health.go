package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"reflect"
	"time"

	"github.com/danielgtaylor/huma/v2"
)

type healthBody struct {
	Status string            `json:"status" doc:"ok, or the reason it is not."`
	Checks map[string]string `json:"checks,omitempty" doc:"Each dependency: ok or unavailable."`
}

type healthOutput struct {
	Status int
	Body   healthBody
}

func (s *Server) registerHealth(api huma.API) {
	tags := []string{"Health"}
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "healthz", Method: http.MethodGet, Path: "/healthz", Tags: tags,
		Summary: "Liveness", Description: "200 while the process serves HTTP.", Security: public(),
	}), func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
		return &healthOutput{Status: http.StatusOK, Body: healthBody{Status: "ok"}}, nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "readyz", Method: http.MethodGet, Path: "/readyz", Tags: tags,
		Summary: "Readiness", Description: "200 when Postgres and Redis answer, else 503.", Security: public(),
		Responses: map[string]*huma.Response{"503": {
			Description: "A dependency is unavailable.",
			Content: map[string]*huma.MediaType{"application/json": {
				Schema: api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[healthBody](), true, ""),
			}},
		}},
	}), func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
		status, body := ready(ctx, s.cfg.Checks, s.log)
		return &healthOutput{Status: status, Body: body}, nil
	})
}

// ready runs every check, with two seconds for all, and returns the
// readiness status and body: 200 when all pass, 503 naming those that fail.
func ready(ctx context.Context, checks map[string]CheckFunc, log *slog.Logger) (int, healthBody) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	status, body := http.StatusOK, healthBody{Status: "ok", Checks: map[string]string{}}
	for name, check := range checks {
		if err := check(ctx); err != nil {
			status, body.Status = http.StatusServiceUnavailable, "unavailable"
			body.Checks[name] = "unavailable"
			log.WarnContext(ctx, "readiness check failed", slog.String("check", name), slog.Any("err", err))
			continue
		}
		body.Checks[name] = "ok"
	}
	return status, body
}

// ProbeHandler serves /healthz and /readyz as the api does, for processes
// without the api role (on their metrics address).
func ProbeHandler(checks map[string]CheckFunc, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	write := func(w http.ResponseWriter, status int, body healthBody) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusOK, healthBody{Status: "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		status, body := ready(r.Context(), checks, log)
		write(w, status, body)
	})
	return mux
}
