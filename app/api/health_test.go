package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hookd/hookd/app/api"
)

// TestProbeHandler: the probes of processes without the api answer as the
// api's do: /healthz always, /readyz 503 naming the failing dependency.
func TestProbeHandler(t *testing.T) {
	t.Parallel()
	redisDown := true
	h := api.ProbeHandler(map[string]api.CheckFunc{
		"postgres": func(context.Context) error { return nil },
		"redis": func(context.Context) error {
			if redisDown {
				return errors.New("connection refused")
			}
			return nil
		},
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	get := func(path string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, rec.Body)
		}
		return rec.Code, body
	}
	if code, body := get("/healthz"); code != http.StatusOK || body["status"] != "ok" {
		t.Errorf("/healthz = %d %v, want 200 ok", code, body)
	}
	code, body := get("/readyz")
	checks, _ := body["checks"].(map[string]any)
	if code != http.StatusServiceUnavailable || body["status"] != "unavailable" || checks["redis"] != "unavailable" || checks["postgres"] != "ok" {
		t.Errorf("/readyz with redis down = %d %v, want 503 naming redis", code, body)
	}
	redisDown = false
	if code, body := get("/readyz"); code != http.StatusOK || body["status"] != "ok" {
		t.Errorf("/readyz with everything up = %d %v, want 200 ok", code, body)
	}
}
