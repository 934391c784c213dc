package events

import (
	"encoding/json"
	"slices"
)

// exampleDepth bounds how deep Example follows a schema's nested
// properties and items; deeper values are null.
const exampleDepth = 16

// Example returns an example payload for an event type with schema (nil
// for none): the first object among the schema's "examples", or else one
// made from the schema (each property's const, default, first enum value,
// first example, or a value of its type), or else {}. Its cost is bounded
// by the schema's, which the catalog bounds.
func Example(schema json.RawMessage) json.RawMessage {
	var s any
	if len(schema) == 0 || json.Unmarshal(schema, &s) != nil {
		return json.RawMessage(`{}`)
	}
	if m, ok := s.(map[string]any); ok {
		if ex, ok := m["examples"].([]any); ok {
			for _, e := range ex {
				if obj, ok := e.(map[string]any); ok {
					return mustJSON(obj)
				}
			}
		}
	}
	v := exampleOf(s, 0)
	if _, ok := v.(map[string]any); !ok {
		v = map[string]any{}
	}
	return mustJSON(v)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil { // decoded JSON encodes again
		return json.RawMessage(`{}`)
	}
	return b
}

// exampleOf makes a value that schema s describes, as far as a glance at
// it tells: no $ref is followed, and of anyOf, oneOf and allOf the first
// branch only.
func exampleOf(s any, depth int) any {
	m, ok := s.(map[string]any)
	if !ok || depth > exampleDepth {
		return nil
	}
	if v, ok := m["const"]; ok {
		return v
	}
	if v, ok := m["default"]; ok {
		return v
	}
	if e, ok := m["enum"].([]any); ok && len(e) > 0 {
		return e[0]
	}
	if e, ok := m["examples"].([]any); ok && len(e) > 0 {
		return e[0]
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		if branches, ok := m[k].([]any); ok && len(branches) > 0 {
			if _, typed := m["type"]; !typed && m["properties"] == nil {
				return exampleOf(branches[0], depth+1)
			}
		}
	}
	typ, _ := m["type"].(string)
	if types, ok := m["type"].([]any); ok && len(types) > 0 {
		typ, _ = types[0].(string)
	}
	if typ == "" && m["properties"] != nil {
		typ = "object"
	}
	switch typ {
	case "object":
		out := map[string]any{}
		props, _ := m["properties"].(map[string]any)
		names := make([]string, 0, len(props))
		for name := range props {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			out[name] = exampleOf(props[name], depth+1)
		}
		return out
	case "array":
		if items, ok := m["items"]; ok {
			return []any{exampleOf(items, depth+1)}
		}
		return []any{}
	case "string":
		switch m["format"] {
		case "date-time":
			return "2026-01-01T00:00:00Z"
		case "date":
			return "2026-01-01"
		case "email":
			return "user@example.com"
		case "uri", "url":
			return "https://example.com"
		case "uuid":
			return "123e4567-e89b-12d3-a456-426614174000"
		}
		return "string"
	case "integer":
		if v, ok := m["minimum"].(float64); ok {
			return int64(v)
		}
		return 0
	case "number":
		if v, ok := m["minimum"].(float64); ok {
			return v
		}
		return 0
	case "boolean":
		return true
	}
	return nil
}
