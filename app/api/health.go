package api

import (
	"context"
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
		Summary: "Liveness", Description: "200 while the process serves HTTP.",
	}), func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
		return &healthOutput{Status: http.StatusOK, Body: healthBody{Status: "ok"}}, nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "readyz", Method: http.MethodGet, Path: "/readyz", Tags: tags,
		Summary: "Readiness", Description: "200 when Postgres and Redis answer, else 503.",
		Responses: map[string]*huma.Response{"503": {
			Description: "A dependency is unavailable.",
			Content: map[string]*huma.MediaType{"application/json": {
				Schema: api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[healthBody](), true, ""),
			}},
		}},
	}), func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		out := &healthOutput{Status: http.StatusOK, Body: healthBody{Status: "ok", Checks: map[string]string{}}}
		for name, check := range s.cfg.Checks {
			if err := check(ctx); err != nil {
				out.Status, out.Body.Status = http.StatusServiceUnavailable, "unavailable"
				out.Body.Checks[name] = "unavailable"
				s.log.WarnContext(ctx, "readiness check failed", slog.String("check", name), slog.Any("err", err))
				continue
			}
			out.Body.Checks[name] = "ok"
		}
		return out, nil
	})
}
