package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/hookd/hookd/app/resource"
)

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Field names the offending request field of a validation problem.
	Field string `json:"field,omitempty"`
}

// problemType returns the stable type URI of a problem kind.
func problemType(slug string) string { return "urn:hookd:problem:" + slug }

func writeProblem(w http.ResponseWriter, p Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func problem(status int, slug, detail string) Problem {
	return Problem{Type: problemType(slug), Title: http.StatusText(status), Status: status, Detail: detail}
}

// writeError maps an error from a store to a problem. Errors it does not
// know are logged and answered with a 500 that reveals nothing.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var invalid *resource.InvalidError
	switch {
	case errors.As(err, &invalid):
		p := problem(http.StatusUnprocessableEntity, "validation", invalid.Error())
		p.Field = invalid.Field
		writeProblem(w, p)
	case errors.Is(err, resource.ErrNotFound):
		writeProblem(w, problem(http.StatusNotFound, "not-found", "no such resource"))
	case errors.Is(err, resource.ErrConflict):
		writeProblem(w, problem(http.StatusConflict, "conflict", err.Error()))
	default:
		s.log.ErrorContext(r.Context(), "request failed", slog.String("method", r.Method), slog.String("route", r.Pattern), slog.Any("err", err))
		writeProblem(w, problem(http.StatusInternalServerError, "internal", "internal error"))
	}
}

// maxBodyBytes bounds request bodies.
const maxBodyBytes = 1 << 20

// decode reads one JSON object from r's body into dst, refusing unknown
// fields, trailing data, wrong types and oversized bodies. On failure it
// writes the problem and returns false.
func decode(w http.ResponseWriter, r *http.Request, dst any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writeProblem(w, problem(http.StatusUnsupportedMediaType, "unsupported-media-type", "send application/json"))
			return false
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	} else if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	var (
		tooBig    *http.MaxBytesError
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
	)
	switch {
	case errors.As(err, &tooBig):
		writeProblem(w, problem(http.StatusRequestEntityTooLarge, "too-large", fmt.Sprintf("body exceeds %d bytes", tooBig.Limit)))
	case errors.As(err, &typeErr):
		p := problem(http.StatusBadRequest, "malformed", fmt.Sprintf("field %s must be %s", typeErr.Field, typeErr.Type))
		p.Field = typeErr.Field
		writeProblem(w, p)
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		writeProblem(w, problem(http.StatusBadRequest, "malformed", "body is not valid JSON"))
	case errors.Is(err, io.EOF):
		writeProblem(w, problem(http.StatusBadRequest, "malformed", "body is empty"))
	default:
		// Unknown fields land here: encoding/json has no typed error for them.
		writeProblem(w, problem(http.StatusBadRequest, "malformed", strings.TrimPrefix(err.Error(), "json: ")))
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
