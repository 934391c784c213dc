// Package openapitest checks real HTTP responses against an OpenAPI 3.1
// document, so that tests fail whenever the API and its document disagree.
// It owns loading the document, matching requests to documented operations
// and validating response bodies with JSON Schema 2020-12. It must not import
// huma or any other hookd package: it knows the API only through the
// document's JSON.
package openapitest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// docURL is where the document is added as a resource to the schema
// compiler; every $ref in the document resolves relative to it.
const docURL = "mem:///openapi.json"

// Doc is a parsed OpenAPI 3.1 document whose response schemas are compiled
// for validation. It is safe for concurrent use.
type Doc struct {
	ops []*operation // sorted by path, then method
}

// Operation is one documented method and path template, e.g.
// GET /v1/apps/{app_id}.
type Operation struct {
	// Method is upper case, e.g. GET.
	Method string
	// Path is the template as documented, e.g. /v1/apps/{app_id}.
	Path string
	// ID is the operationId; empty when the document has none.
	ID string
}

// String returns the method and path template, e.g. GET /v1/apps/{app_id}.
func (o Operation) String() string { return o.Method + " " + o.Path }

type operation struct {
	Operation
	segs      []segment
	responses map[string]*response // by status code, range ("2XX") or "default"
}

// segment is one slash-separated part of a path template.
type segment struct {
	lit   string
	param bool
}

type response struct {
	// content maps a lower-case media type (parameters dropped) to its
	// schema; the schema is nil when the media type object has none.
	content map[string]*jsonschema.Schema
}

// Load parses an OpenAPI 3.1 JSON document and compiles, with
// santhosh-tekuri/jsonschema/v6 (draft 2020-12), the schema of every
// documented response content (per operation, status code, status range
// such as "2XX" or "default", and media type). Only references inside the
// document are resolved: nothing is read from disk or network. Format
// assertions (date-time, uri, email, ...) are enabled.
func Load(doc []byte) (*Doc, error) {
	root, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("parse openapi document: %w", err)
	}
	top, ok := root.(map[string]any)
	if !ok {
		return nil, errors.New("parse openapi document: not a JSON object")
	}
	if v, _ := top["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		return nil, fmt.Errorf("openapi version %q: want 3.1.x", v)
	}
	if d, ok := top["jsonSchemaDialect"]; ok && d != "https://json-schema.org/draft/2020-12/schema" && d != "https://spec.openapis.org/oas/3.1/dialect/base" {
		return nil, fmt.Errorf("jsonSchemaDialect %v: want draft 2020-12", d)
	}

	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(refusingLoader{})
	if err := c.AddResource(docURL, root); err != nil {
		return nil, fmt.Errorf("add openapi document to compiler: %w", err)
	}

	paths, ok := top["paths"].(map[string]any)
	if !ok && top["paths"] != nil {
		return nil, errors.New("paths: not an object")
	}
	d := &Doc{}
	shapes := map[string]string{} // normalized template -> template
	for _, path := range slices.Sorted(maps.Keys(paths)) {
		segs, err := parseTemplate(path)
		if err != nil {
			return nil, err
		}
		shape := shapeOf(segs)
		if other, ok := shapes[shape]; ok {
			return nil, fmt.Errorf("path %s: same shape as %s", path, other)
		}
		shapes[shape] = path
		item, ok := paths[path].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("path %s: not an object", path)
		}
		if _, ok := item["$ref"]; ok {
			return nil, fmt.Errorf("path %s: path item $ref is not supported", path)
		}
		// The OpenAPI 3.1 path item fields that name operations.
		for _, m := range []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"} {
			raw, ok := item[m]
			if !ok {
				continue
			}
			op, err := loadOperation(c, root, path, m, raw)
			if err != nil {
				return nil, err
			}
			op.segs = segs
			d.ops = append(d.ops, op)
		}
	}
	slices.SortFunc(d.ops, func(a, b *operation) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method))
	})
	return d, nil
}

func loadOperation(c *jsonschema.Compiler, root any, path, method string, raw any) (*operation, error) {
	op := &operation{
		Operation: Operation{Method: strings.ToUpper(method), Path: path},
		responses: map[string]*response{},
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: not an object", op)
	}
	if id, ok := obj["operationId"]; ok {
		if op.ID, ok = id.(string); !ok {
			return nil, fmt.Errorf("%s: operationId is not a string", op)
		}
	}
	responses, ok := obj["responses"].(map[string]any)
	if !ok && obj["responses"] != nil {
		return nil, fmt.Errorf("%s: responses: not an object", op)
	}
	for _, status := range slices.Sorted(maps.Keys(responses)) {
		if !validStatusKey(status) {
			return nil, fmt.Errorf("%s: response %q: want a status code, a range such as 2XX, or default", op, status)
		}
		where := []string{"paths", path, method, "responses", status}
		resp, err := loadResponse(c, root, where)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, status, err)
		}
		if status != "default" {
			status = strings.ToUpper(status) // 2xx as 2XX
		}
		op.responses[status] = resp
	}
	return op, nil
}

// loadResponse compiles the schemas of the response object at the pointer
// tokens where, following local $refs (e.g. to #/components/responses/X).
func loadResponse(c *jsonschema.Compiler, root any, where []string) (*response, error) {
	raw, where, err := deref(root, where)
	if err != nil {
		return nil, err
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, errors.New("response is not an object")
	}
	content, ok := obj["content"].(map[string]any)
	if !ok && obj["content"] != nil {
		return nil, errors.New("content: not an object")
	}
	resp := &response{content: map[string]*jsonschema.Schema{}}
	for _, key := range slices.Sorted(maps.Keys(content)) {
		mt, _, err := mime.ParseMediaType(key)
		if err != nil {
			return nil, fmt.Errorf("media type %q: %w", key, err)
		}
		if _, dup := resp.content[mt]; dup {
			return nil, fmt.Errorf("media type %q: documented twice", mt)
		}
		media, ok := content[key].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("media type %q: not an object", key)
		}
		if _, ok := media["schema"]; !ok {
			resp.content[mt] = nil
			continue
		}
		loc := schemaURL(append(slices.Clone(where), "content", key, "schema"))
		sch, err := c.Compile(loc)
		if err != nil {
			return nil, fmt.Errorf("media type %q: compile schema: %w", key, err)
		}
		resp.content[mt] = sch
	}
	return resp, nil
}

// deref looks up the JSON pointer tokens where in root and follows local
// $refs ("#/..."), returning the value and the tokens where it was found.
func deref(root any, where []string) (any, []string, error) {
	seen := map[string]bool{}
	for {
		v, err := lookup(root, where)
		if err != nil {
			return nil, nil, err
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return v, where, nil
		}
		ref, ok := obj["$ref"].(string)
		if !ok {
			return v, where, nil
		}
		if seen[ref] {
			return nil, nil, fmt.Errorf("$ref %q: cycle", ref)
		}
		seen[ref] = true
		if where, err = parseLocalRef(ref); err != nil {
			return nil, nil, err
		}
	}
}

// parseLocalRef returns the JSON pointer tokens of a reference into the
// document itself, e.g. "#/components/responses/Error".
func parseLocalRef(ref string) ([]string, error) {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, fmt.Errorf("$ref %q: only references inside the document are supported", ref)
	}
	ptr, err := url.PathUnescape(frag)
	if err != nil {
		return nil, fmt.Errorf("$ref %q: %w", ref, err)
	}
	if ptr == "" {
		return nil, nil
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, fmt.Errorf("$ref %q: not a JSON pointer", ref)
	}
	toks := strings.Split(ptr[1:], "/")
	for i, tok := range toks {
		// RFC 6901: ~1 before ~0, so that "~01" becomes "~1".
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
	}
	return toks, nil
}

func lookup(v any, toks []string) (any, error) {
	for i, tok := range toks {
		var ok bool
		switch x := v.(type) {
		case map[string]any:
			v, ok = x[tok]
		case []any:
			n, err := strconv.Atoi(tok)
			if ok = err == nil && n >= 0 && n < len(x); ok {
				v = x[n]
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s: not found in document", pointer(toks[:i+1]))
		}
	}
	return v, nil
}

// pointer returns the RFC 6901 JSON pointer of the reference tokens toks.
func pointer(toks []string) string {
	var b strings.Builder
	for _, tok := range toks {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// schemaURL returns the location of the value at the pointer tokens toks in
// the document, as a URL whose fragment is the percent-encoded JSON pointer:
// JSON-pointer escaping first ("/" as ~1, "~" as ~0), then URL-fragment
// encoding of each token ("{" as %7B, "%" as %25, ...).
func schemaURL(toks []string) string {
	var b strings.Builder
	b.WriteString(docURL)
	b.WriteByte('#')
	for _, tok := range toks {
		b.WriteByte('/')
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
		b.WriteString(url.PathEscape(tok))
	}
	return b.String()
}

// parseTemplate splits a path template into segments; a parameter must be a
// whole segment, e.g. /v1/apps/{app_id}.
func parseTemplate(path string) ([]segment, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("path %s: must start with /", path)
	}
	parts := strings.Split(path[1:], "/")
	segs := make([]segment, len(parts))
	for i, p := range parts {
		name, isParam := strings.CutPrefix(p, "{")
		name, closed := strings.CutSuffix(name, "}")
		switch {
		case isParam && closed && name != "" && !strings.ContainsAny(name, "{}"):
			segs[i] = segment{lit: name, param: true}
		case strings.ContainsAny(p, "{}"):
			return nil, fmt.Errorf("path %s: segment %q: a parameter must be a whole segment", path, p)
		default:
			segs[i] = segment{lit: p}
		}
	}
	return segs, nil
}

// shapeOf returns the template with parameter names dropped; OpenAPI
// forbids two templates of the same shape.
func shapeOf(segs []segment) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		if s.param {
			b.WriteString("{}")
		} else {
			b.WriteString(s.lit)
		}
	}
	return b.String()
}

func validStatusKey(k string) bool {
	if k == "default" {
		return true
	}
	if len(k) != 3 || k[0] < '1' || k[0] > '5' {
		return false
	}
	if strings.EqualFold(k[1:], "XX") {
		return true
	}
	return k[1] >= '0' && k[1] <= '9' && k[2] >= '0' && k[2] <= '9'
}

// Operations lists every documented operation, sorted by path, then method.
func (d *Doc) Operations() []Operation {
	ops := make([]Operation, len(d.ops))
	for i, op := range d.ops {
		ops[i] = op.Operation
	}
	return ops
}

// Find returns the operation that serves method and a concrete URL path
// without query, such as /v1/apps/app_123. Templates are matched segment by
// segment: {param} matches one non-empty segment, and when several templates
// match, the one with a literal segment where the others have a parameter,
// leftmost first, wins (/v1/apps/search over /v1/apps/{app_id}).
func (d *Doc) Find(method, path string) (Operation, bool) {
	op := d.find(method, path)
	if op == nil {
		return Operation{}, false
	}
	return op.Operation, true
}

func (d *Doc) find(method, path string) *operation {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return nil
	}
	parts := strings.Split(rest, "/")
	method = strings.ToUpper(method)
	var best *operation
	for _, op := range d.ops {
		if op.Method == method && matches(op.segs, parts) && (best == nil || moreSpecific(op.segs, best.segs)) {
			best = op
		}
	}
	return best
}

func matches(segs []segment, parts []string) bool {
	if len(segs) != len(parts) {
		return false
	}
	for i, s := range segs {
		if s.param && parts[i] == "" || !s.param && s.lit != parts[i] {
			return false
		}
	}
	return true
}

// moreSpecific reports whether a has a literal at the leftmost segment where
// a and b differ in kind; both must match the same path.
func moreSpecific(a, b []segment) bool {
	for i := range a {
		if a[i].param != b[i].param {
			return !a[i].param
		}
	}
	return false
}

// Check reports problems with the document itself that Load tolerates:
// operations without an operationId or with a duplicate one, and operations
// without any response.
func (d *Doc) Check() error {
	var errs []error
	ids := map[string]Operation{}
	for _, op := range d.ops {
		switch other, dup := ids[op.ID]; {
		case op.ID == "":
			errs = append(errs, fmt.Errorf("%s: no operationId", op))
		case dup:
			errs = append(errs, fmt.Errorf("%s: operationId %q already used by %s", op, op.ID, other))
		default:
			ids[op.ID] = op.Operation
		}
		if len(op.responses) == 0 {
			errs = append(errs, fmt.Errorf("%s: no responses", op))
		}
	}
	return errors.Join(errs...)
}

// refusingLoader keeps the compiler from reading anything but the document.
type refusingLoader struct{}

func (refusingLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("load %s: only references inside the openapi document are allowed", url)
}
