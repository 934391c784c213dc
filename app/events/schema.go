package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hookd/hookd/app/resource"
)

// Bounds on an event type's JSON Schema, checked when it is created or
// updated (with maxEvaluations, schemacost.go).
const (
	maxSchemaBytes = 64 << 10 // of the schema's JSON
	maxSchemaDepth = 64       // nested JSON objects and arrays of the schema
)

// compiledSchema is an event type's schema at one version, compiled once,
// with the validators that are not in use (each validation holds one).
type compiledSchema struct {
	updatedAt time.Time
	raw       json.RawMessage

	mu   sync.Mutex
	idle []*validator
}

// get returns an idle validator, or compiles another.
func (c *compiledSchema) get() (*validator, error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		v := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return v, nil
	}
	c.mu.Unlock()
	return newValidator(c.raw)
}

// put keeps v for another validation, up to one per CPU: more validations
// do not run at once.
func (c *compiledSchema) put(v *validator) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) < runtime.GOMAXPROCS(0) {
		c.idle = append(c.idle, v)
	}
}

// noLoader refuses every external reference: a schema must be
// self-contained, and must never make hookd read files or the network.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("external reference %s: schemas must be self-contained", url)
}

// compileSchema compiles a JSON Schema, draft 2020-12 unless it says
// otherwise in $schema.
func compileSchema(raw json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	const url = "urn:hookd:event-type-schema"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("add schema: %w", err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("compile schema: %w", err)
	}
	return sch, nil
}

// normalizeSchema validates a schema given through the API (an object or a
// boolean) and returns it compacted, or nil for none (absent or null).
func normalizeSchema(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	if len(raw) > maxSchemaBytes {
		return nil, resource.Invalid("schema", "must be at most %d bytes", maxSchemaBytes)
	}
	if !utf8.Valid(raw) {
		return nil, resource.Invalid("schema", "must be valid UTF-8")
	}
	// Draft 2020-12 schemas are objects or booleans: true accepts every
	// payload, false none.
	if t := bytes.TrimSpace(raw); t[0] != '{' && string(t) != "true" && string(t) != "false" {
		return nil, resource.Invalid("schema", "must be a JSON Schema: an object or a boolean")
	}
	if !json.Valid(raw) {
		return nil, resource.Invalid("schema", "is not valid JSON")
	}
	if nestedDeeper(raw, maxSchemaDepth) {
		return nil, resource.Invalid("schema", "must not nest objects and arrays more than %d levels deep", maxSchemaDepth)
	}
	sch, err := compileSchema(raw)
	if err != nil {
		return nil, resource.Invalid("schema", "%s", oneLine(err.Error()))
	}
	if err := checkEvaluations(sch); err != nil {
		return nil, resource.Invalid("schema", "%s", oneLine(err.Error()))
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, resource.Invalid("schema", "%v", err)
	}
	return buf.Bytes(), nil
}

// schemaFor returns the compiled schema of et, compiling it once per
// version of the event type.
func (s *Store) schemaFor(et EventType) (*compiledSchema, error) {
	s.mu.Lock()
	c, ok := s.schemas[et.Name]
	s.mu.Unlock()
	if ok && c.updatedAt.Equal(et.UpdatedAt) {
		return c, nil
	}
	v, err := newValidator(et.Schema)
	if errors.Is(err, errDynamicRef) {
		// Stored before hookd refused them: their work cannot be metered.
		return nil, resource.Invalid("type", "the schema of event type %s cannot be validated within bounds (%v); replace it to publish events of this type", et.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("event type %s: %w", et.Name, err)
	}
	c = &compiledSchema{updatedAt: et.UpdatedAt, raw: et.Schema, idle: []*validator{v}}
	s.mu.Lock()
	s.schemas[et.Name] = c
	s.mu.Unlock()
	return c, nil
}

// validatePayload checks payload against the schema of event type name
// and reports the first failing location as an invalid field
// "payload/<JSON pointer>". A payload whose validation would take more
// steps than its budget is refused as well.
func (s *Store) validatePayload(name string, c *compiledSchema, payload json.RawMessage) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return resource.Invalid("payload", "is not valid JSON")
	}
	if path, ok := largeNumber(doc); ok {
		return resource.Invalid(pointerField(path), "is a number too large to validate against the event type's schema (more than %d digits and exponent)", maxNumberSize)
	}
	v, err := c.get()
	if err != nil {
		return fmt.Errorf("event type %s: %w", name, err)
	}
	budget := schemaStepsBase + schemaStepsPerByte*len(payload)
	err = v.validate(doc, budget)
	c.put(v)
	if errors.Is(err, errBudget) {
		return resource.Invalid("payload", "validating it against the schema of event type %s needs more than %d steps (the budget of a payload of %d bytes); the schema is too costly for this payload", name, budget, len(payload))
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	var vs []resource.Violation
	for _, leaf := range violations(verr, maxViolations) {
		vs = append(vs, resource.Violation{Field: pointerField(leaf.InstanceLocation), Reason: leaf.ErrorKind.LocalizedString(s.printer)})
	}
	return &resource.InvalidError{
		Field: vs[0].Field, Reason: "does not match the event type's schema: " + vs[0].Reason, Violations: vs,
	}
}

// maxViolations bounds the schema violations a refused payload reports.
const maxViolations = 20

// violations returns the first n errors of a validation that have no
// causes, depth first: the rules the payload breaks, each at its location,
// without the subschemas that failed because of them.
func violations(verr *jsonschema.ValidationError, n int) []*jsonschema.ValidationError {
	if len(verr.Causes) == 0 {
		return []*jsonschema.ValidationError{verr}
	}
	var out []*jsonschema.ValidationError
	for _, c := range verr.Causes {
		out = append(out, violations(c, n-len(out))...)
		if len(out) >= n {
			return out[:n]
		}
	}
	return out
}

// pointerField names the payload location of tokens: "payload" or
// "payload/<JSON pointer>".
func pointerField(tokens []string) string {
	if len(tokens) == 0 {
		return "payload"
	}
	return "payload/" + strings.Join(escapePointer(tokens), "/")
}

func escapePointer(tokens []string) []string {
	out := make([]string, len(tokens))
	r := strings.NewReplacer("~", "~0", "/", "~1")
	for i, t := range tokens {
		out[i] = r.Replace(t)
	}
	return out
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
