package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hookd/hookd/app/resource"
)

// maxSchemaBytes bounds an event type's JSON Schema.
const maxSchemaBytes = 64 << 10

// compiledSchema is an event type's schema compiled at one version.
type compiledSchema struct {
	updatedAt time.Time
	schema    *jsonschema.Schema
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

// normalizeSchema validates a schema given through the API and returns it
// compacted, or nil for none (absent or null).
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
	if t := bytes.TrimSpace(raw); t[0] != '{' {
		return nil, resource.Invalid("schema", "must be a JSON Schema object")
	}
	if _, err := compileSchema(raw); err != nil {
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
func (s *Store) schemaFor(et EventType) (*jsonschema.Schema, error) {
	s.mu.Lock()
	c, ok := s.schemas[et.Name]
	s.mu.Unlock()
	if ok && c.updatedAt.Equal(et.UpdatedAt) {
		return c.schema, nil
	}
	sch, err := compileSchema(et.Schema)
	if err != nil {
		return nil, fmt.Errorf("event type %s: %w", et.Name, err)
	}
	s.mu.Lock()
	s.schemas[et.Name] = compiledSchema{updatedAt: et.UpdatedAt, schema: sch}
	s.mu.Unlock()
	return sch, nil
}

// validatePayload checks payload against sch and reports the first failing
// location as an invalid field "payload/<JSON pointer>".
func (s *Store) validatePayload(sch *jsonschema.Schema, payload json.RawMessage) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return resource.Invalid("payload", "is not valid JSON")
	}
	err = sch.Validate(doc)
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	for len(verr.Causes) > 0 {
		verr = verr.Causes[0]
	}
	field := "payload"
	if len(verr.InstanceLocation) > 0 {
		field += "/" + strings.Join(escapePointer(verr.InstanceLocation), "/")
	}
	return resource.Invalid(field, "does not match the event type's schema: %s", verr.ErrorKind.LocalizedString(s.printer))
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
