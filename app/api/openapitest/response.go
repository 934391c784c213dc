package openapitest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The kinds of disagreement CheckResponse reports; test them with errors.Is.
var (
	// ErrUndocumentedOperation means no documented operation serves the
	// method and path.
	ErrUndocumentedOperation = errors.New("operation not documented")
	// ErrUndocumentedStatus means the operation documents neither the
	// status code, nor its range (e.g. 4XX), nor "default".
	ErrUndocumentedStatus = errors.New("status not documented")
	// ErrUndocumentedMediaType means the response's Content-Type is missing
	// or its media type is not documented for the status.
	ErrUndocumentedMediaType = errors.New("media type not documented")
	// ErrBodyMismatch means the body is not valid JSON, does not validate
	// against the documented schema, or is not empty although the status
	// documents no content.
	ErrBodyMismatch = errors.New("body does not match schema")
)

// CheckResponse reports how a response disagrees with the document: the
// operation is undocumented, the status is not documented (neither exactly,
// nor as a range such as 4XX, nor as "default"), the Content-Type's media
// type is not documented for that status, or the body does not validate
// against the schema. Bodies are validated for JSON media types only:
// application/json and anything ending in +json. A status documented without
// content (e.g. 204) must come with an empty body. The path is a concrete URL
// path without query, as in http.Request.URL.Path.
func (d *Doc) CheckResponse(method, path string, status int, header http.Header, body []byte) error {
	op := d.find(method, path)
	if op == nil {
		return fmt.Errorf("%s %s: %w", strings.ToUpper(method), path, ErrUndocumentedOperation)
	}
	resp := op.response(status)
	if resp == nil {
		return fmt.Errorf("%s %d: %w (documented: %s)", op, status, ErrUndocumentedStatus, strings.Join(slices.Sorted(maps.Keys(op.responses)), ", "))
	}
	if len(resp.content) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("%s %d: %w: no content documented, got %d bytes", op, status, ErrBodyMismatch, len(body))
		}
		return nil
	}

	documented := strings.Join(slices.Sorted(maps.Keys(resp.content)), ", ")
	ct := header.Get("Content-Type")
	if ct == "" {
		return fmt.Errorf("%s %d: %w: no Content-Type (documented: %s)", op, status, ErrUndocumentedMediaType, documented)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("%s %d: %w: Content-Type %q: %w", op, status, ErrUndocumentedMediaType, ct, err)
	}
	sch, ok := resp.schema(mt)
	if !ok {
		return fmt.Errorf("%s %d: %w: %s (documented: %s)", op, status, ErrUndocumentedMediaType, mt, documented)
	}
	if !isJSON(mt) {
		return nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("%s %d: %w: empty body, want %s", op, status, ErrBodyMismatch, mt)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %d: %w: invalid JSON: %w", op, status, ErrBodyMismatch, err)
	}
	if sch == nil {
		return nil
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s %d: %w: %w", op, status, ErrBodyMismatch, err)
	}
	return nil
}

// response returns the response documented for status: exactly, by range
// (2XX) or as "default"; nil if none.
func (op *operation) response(status int) *response {
	code := strconv.Itoa(status)
	if r, ok := op.responses[code]; ok {
		return r
	}
	if len(code) == 3 {
		if r, ok := op.responses[code[:1]+"XX"]; ok {
			return r
		}
	}
	return op.responses["default"]
}

// schema returns the schema documented for the media type mt, preferring an
// exact match over type/* over */*. The schema is nil when the media type is
// documented without one.
func (r *response) schema(mt string) (*jsonschema.Schema, bool) {
	typ, _, _ := strings.Cut(mt, "/")
	for _, key := range []string{mt, typ + "/*", "*/*"} {
		if sch, ok := r.content[key]; ok {
			return sch, true
		}
	}
	return nil, false
}

// isJSON reports whether bodies of the media type mt are JSON.
func isJSON(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
