package api

import (
	"encoding/json"
	"reflect"

	"github.com/danielgtaylor/huma/v2"
)

// Request fields whose JSON type the Go type does not say (JSON kept as
// sent), or whose null means something else than leaving the field out.
// Each documents itself through huma.SchemaProvider, so that the document
// states what the handlers enforce.

// jsonObject is a JSON object kept as sent: an event's payload, its
// numbers and members as published.
type jsonObject json.RawMessage

// UnmarshalJSON implements json.Unmarshaler.
func (j *jsonObject) UnmarshalJSON(b []byte) error {
	*j = append((*j)[:0], b...)
	return nil
}

// Schema implements huma.SchemaProvider.
func (jsonObject) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{Type: huma.TypeObject}
}

// jsonFilter is an endpoint's filter as sent: a JSON object, or null for
// none.
type jsonFilter json.RawMessage

// UnmarshalJSON implements json.Unmarshaler; null is kept as null.
func (j *jsonFilter) UnmarshalJSON(b []byte) error {
	*j = append((*j)[:0], b...)
	return nil
}

// Schema implements huma.SchemaProvider.
func (jsonFilter) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{Type: huma.TypeObject, Nullable: true}
}

// jsonSchema is an event type's JSON Schema as sent: an object, a boolean
// (draft 2020-12: true accepts every payload, false none), or null for
// none.
type jsonSchema json.RawMessage

// UnmarshalJSON implements json.Unmarshaler; null is kept as null.
func (j *jsonSchema) UnmarshalJSON(b []byte) error {
	*j = append((*j)[:0], b...)
	return nil
}

// Schema implements huma.SchemaProvider.
func (jsonSchema) Schema(huma.Registry) *huma.Schema {
	return schemaSchema()
}

// schemaSchema describes a JSON Schema or null.
func schemaSchema() *huma.Schema {
	return &huma.Schema{AnyOf: []*huma.Schema{
		{Type: huma.TypeObject, Nullable: true},
		{Type: huma.TypeBoolean},
	}}
}

// nullable is a PATCH field whose null is a value of its own (removing a
// limit, say), told apart from the field left out.
type nullable[T any] struct {
	// Set reports that the request has the field, null or not.
	Set bool
	// Value is nil for null.
	Value *T
}

// UnmarshalJSON implements json.Unmarshaler: encoding/json calls it for
// null too.
func (n *nullable[T]) UnmarshalJSON(b []byte) error {
	n.Set, n.Value = true, nil
	if string(b) == "null" {
		return nil
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	n.Value = &v
	return nil
}

// Schema implements huma.SchemaProvider: T's schema, or null. The field's
// tags (minimum, maxItems, doc, ...) apply as to a T.
func (nullable[T]) Schema(r huma.Registry) *huma.Schema {
	s := *r.Schema(reflect.TypeFor[T](), true, "")
	if s.Ref != "" {
		// huma makes only scalars nullable: an object is inlined.
		s = *r.SchemaFromRef(s.Ref)
	}
	s.Nullable = true
	return &s
}

// or returns the value to set: nil when the field was left out, ifNull
// when it was null.
func (n nullable[T]) or(ifNull T) *T {
	switch {
	case !n.Set:
		return nil
	case n.Value == nil:
		return &ifNull
	}
	return n.Value
}
