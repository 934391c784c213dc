package api

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/tasks/ledger"
)

// Problem is an RFC 9457 problem details object. Type is a stable URN per
// kind of problem (urn:hookd:problem:<kind>); Field names the offending
// request field of a validation problem; Errors lists each schema violation
// huma found, with its location.
type Problem struct {
	Type     string              `json:"type"`
	Title    string              `json:"title"`
	Status   int                 `json:"status"`
	Detail   string              `json:"detail,omitempty"`
	Instance string              `json:"instance,omitempty"`
	Field    string              `json:"field,omitempty"`
	Errors   []*huma.ErrorDetail `json:"errors,omitempty"`
}

// Error implements error.
func (p *Problem) Error() string { return p.Detail }

// GetStatus implements huma.StatusError.
func (p *Problem) GetStatus() int { return p.Status }

// ContentType implements huma.ContentTypeFilter.
func (p *Problem) ContentType(string) string { return "application/problem+json" }

// problemKind names the problem of each status huma itself answers with.
func problemKind(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "malformed"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not-found"
	case http.StatusNotAcceptable:
		return "not-acceptable"
	case http.StatusConflict:
		return "conflict"
	case http.StatusRequestEntityTooLarge:
		return "too-large"
	case http.StatusUnsupportedMediaType:
		return "unsupported-media-type"
	case http.StatusUnprocessableEntity:
		return "validation"
	case http.StatusInternalServerError:
		return "internal"
	}
	return "error"
}

func newProblem(status int, kind, detail string) *Problem {
	return &Problem{Type: "urn:hookd:problem:" + kind, Title: http.StatusText(status), Status: status, Detail: detail}
}

// problemTransformer turns the errors huma writes itself (request
// validation, body limits) into Problems, so that every error has the same
// shape and a stable type.
func (s *Server) problemTransformer(ctx huma.Context, _ string, v any) (any, error) {
	em, ok := v.(*huma.ErrorModel)
	if !ok {
		return v, nil
	}
	p := newProblem(em.Status, problemKind(em.Status), em.Detail)
	p.Errors = em.Errors
	if len(em.Errors) > 0 {
		p.Field = fieldOf(em.Errors[0].Location, em.Errors[0].Message)
		p.Detail = em.Detail + ": " + em.Errors[0].Message
		if p.Field != "" {
			p.Detail = fmt.Sprintf("%s: %s: %s", em.Detail, p.Field, em.Errors[0].Message)
		}
	}
	switch {
	case em.Status == http.StatusRequestEntityTooLarge:
		p.Detail = em.Detail
		if op := ctx.Operation(); op != nil && op.MaxBodyBytes > 0 {
			// huma names the limit it was given, one more than the
			// largest body read (withErrors).
			p.Detail = fmt.Sprintf("request body is too large: at most %d bytes", op.MaxBodyBytes-1)
		}
	case em.Status == http.StatusUnprocessableEntity && strings.Contains(em.Detail, "unmarshal"):
		// A body that parses as JSON but not into the request type.
		p.Type, p.Status, p.Title = "urn:hookd:problem:malformed", http.StatusBadRequest, http.StatusText(http.StatusBadRequest)
	}
	return p, nil
}

// fieldOf maps a huma error location ("body.url", "path.app_id",
// "query.limit", "body.headers.X") to the request field it names. huma
// locates a missing required property at its parent object and names it
// only in the message.
func fieldOf(loc, msg string) string {
	if name, ok := strings.CutPrefix(msg, "expected required property "); ok {
		if name, ok = strings.CutSuffix(name, " to be present"); ok {
			if parent := fieldOf(loc, ""); parent != "" {
				return parent + "." + name
			}
			return name
		}
	}
	for _, prefix := range []string{"body.", "path.", "query.", "header."} {
		if f, ok := strings.CutPrefix(loc, prefix); ok {
			return f
		}
	}
	if loc == "body" {
		return ""
	}
	return loc
}

// fail maps an error from a store to a Problem. Errors it does not know
// are logged and answered with a 500 that reveals nothing.
func (s *Server) fail(ctx context.Context, err error) error {
	var (
		invalid *resource.InvalidError
		quota   *resource.QuotaError
	)
	switch {
	case errors.As(err, &invalid):
		p := newProblem(http.StatusUnprocessableEntity, "validation", invalid.Error())
		p.Field = invalid.Field
		for _, v := range invalid.Violations {
			// Located as huma locates the fields of a request body.
			p.Errors = append(p.Errors, &huma.ErrorDetail{Location: "body." + v.Field, Message: v.Reason})
		}
		return p
	case errors.As(err, &quota):
		return newProblem(http.StatusUnprocessableEntity, "quota-exceeded", quota.Detail)
	case errors.Is(err, resource.ErrNotFound), errors.Is(err, sql.ErrNoRows), errors.Is(err, ledger.ErrNotFound):
		return newProblem(http.StatusNotFound, "not-found", "no such resource")
	case errors.Is(err, resource.ErrConflict):
		return newProblem(http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, ledger.ErrBusy):
		return newProblem(http.StatusConflict, "conflict", ledger.ErrBusy.Error())
	}
	s.log.ErrorContext(ctx, "request failed", slog.Any("err", err))
	return newProblem(http.StatusInternalServerError, "internal", "internal error")
}

func isNotFound(err error) bool { return errors.Is(err, resource.ErrNotFound) }

func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// documentProblem describes Problem in place of huma's ErrorModel, which
// the document names for every error response: the two differ only by
// Field.
func documentProblem(oapi *huma.OpenAPI) {
	em := oapi.Components.Schemas.Map()["ErrorModel"]
	if em == nil {
		return
	}
	em.Description = "An RFC 9457 problem. type is a stable URN per kind of problem (urn:hookd:problem:validation, " +
		"urn:hookd:problem:quota-exceeded, ...); field names the offending request field of a validation problem."
	em.Properties["field"] = &huma.Schema{Type: huma.TypeString, Description: "The offending request field, e.g. url or payload/amount."}
	em.Properties["errors"].Nullable = false
	em.Properties["type"].Default = nil
	em.Properties["type"].Format = ""
	em.Properties["type"].Examples = []any{"urn:hookd:problem:validation"}
}
