package openapitest_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hookd/hookd/app/api/openapitest"
)

// fixture is a small OpenAPI 3.1 document shaped like huma's output. The
// legacy path exercises schema-location escaping: "~" (JSON pointer ~0), "/"
// (~1), "%" (URL %25) and "{", "}" (URL %7B, %7D).
const fixture = `{
  "openapi": "3.1.0",
  "info": {"title": "hookd", "version": "1.0.0"},
  "paths": {
    "/v1/apps": {
      "get": {
        "operationId": "list-apps",
        "responses": {
          "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AppList"}}}},
          "default": {"$ref": "#/components/responses/Error"}
        }
      },
      "post": {
        "operationId": "create-app",
        "responses": {
          "201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/App"}}}},
          "4XX": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/v1/apps/{app_id}": {
      "get": {
        "operationId": "get-app",
        "responses": {
          "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/App"}}}},
          "404": {"$ref": "#/components/responses/Error"}
        }
      },
      "delete": {
        "operationId": "delete-app",
        "responses": {
          "204": {"description": "No Content"},
          "404": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/v1/apps/search": {
      "get": {
        "operationId": "search-apps",
        "responses": {
          "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AppList"}}}}
        }
      }
    },
    "/v1/legacy~v0/50%off/{id}": {
      "get": {
        "operationId": "get-legacy",
        "responses": {
          "200": {
            "description": "OK",
            "content": {
              "application/vnd.hookd+json": {"schema": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": true}}}},
              "text/*": {"schema": {"type": "string"}}
            }
          }
        }
      }
    }
  },
  "components": {
    "schemas": {
      "App": {
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "name", "description", "created_at"],
        "properties": {
          "id": {"type": "string", "pattern": "^app_"},
          "name": {"type": "string", "minLength": 1},
          "description": {"type": ["string", "null"]},
          "created_at": {"type": "string", "format": "date-time"}
        }
      },
      "AppList": {
        "type": "object",
        "additionalProperties": false,
        "required": ["data"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/App"}}}
      },
      "Problem": {
        "type": "object",
        "required": ["type", "title", "status"],
        "properties": {
          "type": {"type": "string"},
          "title": {"type": "string"},
          "status": {"type": "integer"},
          "detail": {"type": "string"}
        }
      }
    },
    "responses": {
      "Error": {"description": "Error", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    }
  }
}`

const (
	goodApp     = `{"id": "app_1", "name": "shop", "description": null, "created_at": "2025-01-02T03:04:05Z"}`
	goodProblem = `{"type": "urn:hookd:problem:not-found", "title": "Not Found", "status": 404}`
)

func load(t *testing.T) *openapitest.Doc {
	t.Helper()
	d, err := openapitest.Load([]byte(fixture))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return d
}

func TestLoad(t *testing.T) {
	t.Parallel()

	// doc returns a document with the given paths and component schemas.
	doc := func(paths, schemas string) string {
		return fmt.Sprintf(`{"openapi": "3.1.1", "info": {"title": "t", "version": "1"}, "paths": {%s}, "components": {"schemas": {%s}}}`, paths, schemas)
	}
	okResp := `{"get": {"operationId": "x", "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}}}`
	refResp := func(ref string) string {
		return `{"get": {"operationId": "x", "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "` + ref + `"}}}}}}}`
	}

	tests := []struct {
		name    string
		doc     string
		wantErr bool
	}{
		{"Fixture", fixture, false},
		{"NoPaths", `{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}}`, false},
		{"NotJSON", `{"openapi": `, true},
		{"TrailingData", doc(`"/a": `+okResp, "") + ` {}`, true},
		{"OpenAPI30", strings.Replace(doc(`"/a": `+okResp, ""), "3.1.1", "3.0.3", 1), true},
		{"LocalRef", doc(`"/a": `+refResp("#/components/schemas/A"), `"A": {"type": "string"}`), false},
		{"DanglingRef", doc(`"/a": `+refResp("#/components/schemas/Missing"), ""), true},
		{"HTTPRef", doc(`"/a": `+refResp("https://example.com/a.json"), ""), true},
		{"RelativeRef", doc(`"/a": `+refResp("a.json"), ""), true},
		{"InvalidSchema", doc(`"/a": `+refResp("#/components/schemas/A"), `"A": {"type": 12}`), true},
		{"DanglingResponseRef", doc(`"/a": {"get": {"responses": {"200": {"$ref": "#/components/responses/Nope"}}}}`, ""), true},
		{"BadStatus", doc(`"/a": {"get": {"responses": {"600": {"description": "?"}}}}`, ""), true},
		{"SameShape", doc(`"/a/{x}": `+okResp+`, "/a/{y}": `+okResp, ""), true},
		{"PartialParam", doc(`"/a/{x}.json": `+okResp, ""), true},
		{"RelativePath", doc(`"a": `+okResp, ""), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := openapitest.Load([]byte(tt.doc))
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("Load error = %v, want error: %t", err, tt.wantErr)
			}
		})
	}

	t.Run("ExistingFileNotLoaded", func(t *testing.T) {
		t.Parallel()
		// The schema exists and is valid; only the compiler's loader stands
		// between it and the document.
		path := filepath.Join(t.TempDir(), "a.json")
		if err := os.WriteFile(path, []byte(`{"type": "object"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		ref := (&url.URL{Scheme: "file", Path: filepath.ToSlash(path)}).String()
		if _, err := openapitest.Load([]byte(doc(`"/a": `+refResp(ref), ""))); err == nil {
			t.Fatalf("Load resolved $ref %s from disk, want an error", ref)
		}
	})

	t.Run("ExternalRefNotLoaded", func(t *testing.T) {
		t.Parallel()
		_, err := openapitest.Load([]byte(doc(`"/a": `+refResp("https://example.com/a.json"), "")))
		var loadErr *jsonschema.LoadURLError
		if !errors.As(err, &loadErr) || loadErr.URL != "https://example.com/a.json" {
			t.Fatalf("Load error = %v, want a refused load of https://example.com/a.json", err)
		}
	})
}

func TestOperations(t *testing.T) {
	t.Parallel()
	want := []openapitest.Operation{
		{Method: "GET", Path: "/v1/apps", ID: "list-apps"},
		{Method: "POST", Path: "/v1/apps", ID: "create-app"},
		{Method: "GET", Path: "/v1/apps/search", ID: "search-apps"},
		{Method: "DELETE", Path: "/v1/apps/{app_id}", ID: "delete-app"},
		{Method: "GET", Path: "/v1/apps/{app_id}", ID: "get-app"},
		{Method: "GET", Path: "/v1/legacy~v0/50%off/{id}", ID: "get-legacy"},
	}
	if diff := cmp.Diff(want, load(t).Operations()); diff != "" {
		t.Errorf("Operations() mismatch (-want +got):\n%s", diff)
	}
}

func TestFind(t *testing.T) {
	t.Parallel()
	d := load(t)

	tests := []struct {
		method, path string
		want         string // operation ID; empty for no match
	}{
		{"GET", "/v1/apps", "list-apps"},
		{"post", "/v1/apps", "create-app"},
		{"GET", "/v1/apps/app_123", "get-app"},
		{"DELETE", "/v1/apps/app_123", "delete-app"},
		{"GET", "/v1/apps/search", "search-apps"},   // literal beats {app_id}
		{"DELETE", "/v1/apps/search", "delete-app"}, // search has no DELETE
		{"GET", "/v1/legacy~v0/50%off/7", "get-legacy"},
		{"GET", "/v1/apps/", ""},           // {app_id} needs a non-empty segment
		{"GET", "/v1/apps/app_1/x", ""},    // too many segments
		{"GET", "/v1", ""},                 // too few segments
		{"PUT", "/v1/apps/app_1", ""},      // method not documented
		{"GET", "/v1/apps?limit=1", ""},    // query is not part of the path
		{"GET", "v1/apps", ""},             // not absolute
		{"GET", "/v1/legacy/50%off/7", ""}, // literal must match exactly
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			op, ok := d.Find(tt.method, tt.path)
			if ok != (tt.want != "") || op.ID != tt.want {
				t.Errorf("Find(%q, %q) = %+v, %t; want ID %q", tt.method, tt.path, op, ok, tt.want)
			}
		})
	}
}

func TestCheckResponse(t *testing.T) {
	t.Parallel()
	d := load(t)

	const (
		appJSON     = "application/json"
		problemJSON = "application/problem+json"
	)
	tests := []struct {
		name         string
		method, path string
		status       int
		contentType  string
		body         string
		want         error // nil: accepted
	}{
		{"App", "GET", "/v1/apps/app_1", 200, appJSON, goodApp, nil},
		{"AppWithCharset", "GET", "/v1/apps/app_1", 200, "Application/JSON; charset=utf-8", goodApp, nil},
		{"NullableSet", "GET", "/v1/apps/app_1", 200, appJSON, strings.Replace(goodApp, "null", `"a shop"`, 1), nil},
		{"List", "GET", "/v1/apps", 200, appJSON, `{"data": [` + goodApp + `]}`, nil},
		{"EmptyList", "GET", "/v1/apps/search", 200, appJSON, `{"data": []}`, nil},
		{"Created", "POST", "/v1/apps", 201, appJSON, goodApp, nil},
		{"Problem", "GET", "/v1/apps/app_1", 404, problemJSON, goodProblem, nil},
		{"ProblemByRange", "POST", "/v1/apps", 422, problemJSON, goodProblem, nil},
		{"ProblemByDefault", "GET", "/v1/apps", 500, problemJSON, goodProblem, nil},
		{"NoContent", "DELETE", "/v1/apps/app_1", 204, "", "", nil},
		{"NoContentIgnoresContentType", "DELETE", "/v1/apps/app_1", 204, appJSON, "", nil},
		{"VendorJSON", "GET", "/v1/legacy~v0/50%off/7", 200, "application/vnd.hookd+json", `{"ok": true}`, nil},
		{"TextWildcard", "GET", "/v1/legacy~v0/50%off/7", 200, "text/plain", "not validated", nil},

		{"UndocumentedPath", "GET", "/v1/nope", 200, appJSON, `{}`, openapitest.ErrUndocumentedOperation},
		{"UndocumentedMethod", "PUT", "/v1/apps/app_1", 200, appJSON, goodApp, openapitest.ErrUndocumentedOperation},
		{"UndocumentedStatus", "GET", "/v1/apps/app_1", 500, problemJSON, goodProblem, openapitest.ErrUndocumentedStatus},
		{"StatusOutsideRange", "POST", "/v1/apps", 500, problemJSON, goodProblem, openapitest.ErrUndocumentedStatus},
		{"UndocumentedMediaType", "GET", "/v1/apps/app_1", 200, "text/html", "<p>hi</p>", openapitest.ErrUndocumentedMediaType},
		{"ProblemWhereJSONDocumented", "GET", "/v1/apps/app_1", 200, problemJSON, goodProblem, openapitest.ErrUndocumentedMediaType},
		{"JSONWhereProblemDocumented", "GET", "/v1/apps/app_1", 404, appJSON, goodProblem, openapitest.ErrUndocumentedMediaType},
		{"NoContentType", "GET", "/v1/apps/app_1", 200, "", goodApp, openapitest.ErrUndocumentedMediaType},
		{"BadContentType", "GET", "/v1/apps/app_1", 200, "application/", goodApp, openapitest.ErrUndocumentedMediaType},
		{"ExtraProperty", "GET", "/v1/apps/app_1", 200, appJSON, strings.Replace(goodApp, "{", `{"secret": "x", `, 1), openapitest.ErrBodyMismatch},
		{"MissingRequired", "GET", "/v1/apps/app_1", 200, appJSON, `{"id": "app_1", "name": "shop", "created_at": "2025-01-02T03:04:05Z"}`, openapitest.ErrBodyMismatch},
		{"NullableWrongType", "GET", "/v1/apps/app_1", 200, appJSON, strings.Replace(goodApp, "null", "12", 1), openapitest.ErrBodyMismatch},
		{"NullNotAllowed", "GET", "/v1/apps/app_1", 200, appJSON, strings.Replace(goodApp, `"shop"`, "null", 1), openapitest.ErrBodyMismatch},
		{"Pattern", "GET", "/v1/apps/app_1", 200, appJSON, strings.Replace(goodApp, "app_1", "ep_1", 1), openapitest.ErrBodyMismatch},
		{"Format", "GET", "/v1/apps/app_1", 200, appJSON, strings.Replace(goodApp, "2025-01-02T03:04:05Z", "yesterday", 1), openapitest.ErrBodyMismatch},
		{"RefInArray", "GET", "/v1/apps", 200, appJSON, `{"data": [{"id": "app_1"}]}`, openapitest.ErrBodyMismatch},
		{"ProblemMissingStatus", "GET", "/v1/apps/app_1", 404, problemJSON, `{"type": "t", "title": "Not Found"}`, openapitest.ErrBodyMismatch},
		{"VendorJSONWrong", "GET", "/v1/legacy~v0/50%off/7", 200, "application/vnd.hookd+json", `{"ok": false}`, openapitest.ErrBodyMismatch},
		{"InvalidJSON", "GET", "/v1/apps/app_1", 200, appJSON, `{"id": `, openapitest.ErrBodyMismatch},
		{"TrailingJSON", "GET", "/v1/apps/app_1", 200, appJSON, goodApp + `{}`, openapitest.ErrBodyMismatch},
		{"EmptyJSONBody", "GET", "/v1/apps/app_1", 200, appJSON, "", openapitest.ErrBodyMismatch},
		{"BodyOnNoContent", "DELETE", "/v1/apps/app_1", 204, appJSON, `{}`, openapitest.ErrBodyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.contentType != "" {
				h.Set("Content-Type", tt.contentType)
			}
			err := d.CheckResponse(tt.method, tt.path, tt.status, h, []byte(tt.body))
			if tt.want == nil && err != nil {
				t.Fatalf("CheckResponse refused a good response: %v", err)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("CheckResponse error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckResponseMessage(t *testing.T) {
	t.Parallel()
	d := load(t)
	h := http.Header{"Content-Type": {"application/json"}}

	tests := []struct {
		name       string
		method     string
		path       string
		status     int
		body       string
		wantPrefix string
	}{
		{"Operation", "GET", "/v1/nope", 200, "{}", "GET /v1/nope: operation not documented"},
		{"Status", "GET", "/v1/apps/app_1", 418, "{}", "GET /v1/apps/{app_id} 418: status not documented (documented: 200, 404)"},
		{"Body", "GET", "/v1/apps/app_1", 200, "{}", "GET /v1/apps/{app_id} 200: body does not match schema: jsonschema validation failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := d.CheckResponse(tt.method, tt.path, tt.status, h, []byte(tt.body))
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantPrefix) {
				t.Fatalf("CheckResponse error = %v, want prefix %q", err, tt.wantPrefix)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()

	if err := load(t).Check(); err != nil {
		t.Errorf("Check() on fixture = %v, want nil", err)
	}

	bad, err := openapitest.Load([]byte(`{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {
		"/a": {"get": {"responses": {"204": {"description": "ok"}}}},
		"/b": {"get": {"operationId": "b"}},
		"/c": {"get": {"operationId": "b", "responses": {"204": {"description": "ok"}}}}
	}}`))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	err = bad.Check()
	if err == nil {
		t.Fatal("Check() = nil, want errors")
	}
	// One line per problem: /a has no operationId, /b no responses, /c reuses b.
	if n := len(strings.Split(err.Error(), "\n")); n != 3 {
		t.Errorf("Check() reported %d problems, want 3:\n%v", n, err)
	}
}

// recordingTB is a testing.TB that records Errorf calls instead of failing.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

func TestTransport(t *testing.T) {
	t.Parallel()

	type testBundle struct {
		tb     *recordingTB
		srv    *httptest.Server
		client *http.Client
	}

	setup := func(t *testing.T) *testBundle {
		t.Helper()
		mux := http.NewServeMux()
		writeJSON := func(w http.ResponseWriter, ct string, status int, body string) {
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}
		mux.HandleFunc("GET /v1/apps/app_1", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, "application/json", http.StatusOK, goodApp)
		})
		mux.HandleFunc("GET /v1/apps/app_bad", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, "application/json", http.StatusOK, `{"id": "app_bad"}`)
		})
		mux.HandleFunc("GET /v1/apps/app_gone", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, "application/problem+json", http.StatusNotFound, goodProblem)
		})
		mux.HandleFunc("DELETE /v1/apps/app_1", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		})
		mux.HandleFunc("GET /r/{code}", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, "text/html", http.StatusOK, "<p>moved</p>")
		})
		mux.HandleFunc("GET /v1/undocumented", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, "application/json", http.StatusOK, `{}`)
		})
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)

		b := &testBundle{tb: &recordingTB{TB: t}, srv: srv}
		report := func(req *http.Request) bool { return !strings.HasPrefix(req.URL.Path, "/r/") }
		b.client = &http.Client{Transport: load(t).Transport(b.tb, srv.Client().Transport, report)}
		return b
	}

	// do sends a request and returns the body as the caller reads it.
	do := func(t *testing.T, b *testBundle, method, path string) string {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, b.srv.URL+path, nil)
		if err != nil {
			t.Fatalf("new request: %v", err)
		}
		resp, err := b.client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("read body: %v", err)
		}
		return string(body)
	}

	tests := []struct {
		name         string
		method, path string
		wantBody     string
		wantErrors   int
	}{
		{"Good", "GET", "/v1/apps/app_1", goodApp, 0},
		{"GoodProblem", "GET", "/v1/apps/app_gone", goodProblem, 0},
		{"NoContent", "DELETE", "/v1/apps/app_1", "", 0},
		{"BodyMismatch", "GET", "/v1/apps/app_bad", `{"id": "app_bad"}`, 1},
		{"UndocumentedMediaType", "GET", "/v1/apps/app_missing", "404 page not found\n", 1},
		{"UndocumentedOperation", "GET", "/v1/undocumented", `{}`, 1},
		{"NotReported", "GET", "/r/abc", "<p>moved</p>", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			if got := do(t, b, tt.method, tt.path); got != tt.wantBody {
				t.Errorf("body read by caller = %q, want %q", got, tt.wantBody)
			}
			if errs := b.tb.errors(); len(errs) != tt.wantErrors {
				t.Errorf("Errorf called %d times, want %d: %q", len(errs), tt.wantErrors, errs)
			}
		})
	}

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for _, path := range []string{"/v1/apps/app_1", "/v1/apps/app_bad"} {
					req, err := http.NewRequestWithContext(t.Context(), "GET", b.srv.URL+path, nil)
					if err != nil {
						t.Errorf("new request: %v", err)
						return
					}
					resp, err := b.client.Do(req)
					if err != nil {
						t.Errorf("GET %s: %v", path, err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			})
		}
		wg.Wait()
		if errs := b.tb.errors(); len(errs) != 8 {
			t.Errorf("Errorf called %d times, want 8 (one per bad response): %q", len(errs), errs)
		}
	})

	t.Run("NilBase", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.client = &http.Client{Transport: load(t).Transport(b.tb, nil, nil)}
		do(t, b, "GET", "/r/abc")
		if errs := b.tb.errors(); len(errs) != 1 {
			t.Errorf("Errorf called %d times, want 1 (nil report checks everything): %q", len(errs), errs)
		}
	})
}
