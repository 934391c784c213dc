package api

import "github.com/danielgtaylor/huma/v2"

// The OpenAPI document is generated from the handlers' types; these
// functions complete it where the types cannot say enough.

// documentStoredJSON types, in the responses, the fields the stores keep
// as JSON (payload, filter, schema), and says of their lists that they are
// never null: the stores' types know nothing of huma. It panics when the
// document lacks one of them, as it would when a type is renamed.
func documentStoredJSON(oapi *huma.OpenAPI) {
	schemas := oapi.Components.Schemas.Map()
	prop := func(schema, name string) *huma.Schema {
		s := schemas[schema]
		if s == nil || s.Properties[name] == nil {
			panic("openapi: no property " + name + " in schema " + schema)
		}
		return s.Properties[name]
	}
	for _, ep := range []string{"Endpoint", "EndpointWithSecret"} {
		prop(ep, "event_types").Nullable = false
		schemas[ep].Properties["filter"] = &huma.Schema{Type: huma.TypeObject, Nullable: true,
			Description: "The filter on the event payload; null receives every event of the subscribed types."}
		// Objects or null: huma makes only scalars nullable, so they are
		// inlined.
		for _, name := range []string{"tls", "oauth"} {
			p := prop(ep, name)
			if p.Ref == "" {
				panic("openapi: property " + name + " of " + ep + " is not a reference")
			}
			s := *oapi.Components.Schemas.SchemaFromRef(p.Ref)
			s.Nullable, s.Description = true, p.Description
			schemas[ep].Properties[name] = &s
		}
	}
	// The objects inlined above and by nullable are no components.
	for _, name := range []string{"EndpointTLS", "EndpointOAuth", "EndpointOAuthPatch"} {
		if schemas[name] == nil {
			panic("openapi: no schema " + name)
		}
		delete(schemas, name)
	}
	prop("Event", "payload")
	schemas["Event"].Properties["payload"] = &huma.Schema{Type: huma.TypeObject, Description: "The payload as published."}
	prop("EventType", "schema")
	sch := schemaSchema()
	sch.Description = "The JSON Schema payloads of this type must match: an object or a boolean; null for none."
	schemas["EventType"].Properties["schema"] = sch
	prop("Delivery", "attempts").Nullable = false
}

// dropPatternDescriptions removes patternDescription, which huma writes
// next to a pattern, from every schema of the document: it is no OpenAPI
// 3.1 keyword, and linters refuse it. The field descriptions say the same
// in words; the validation messages huma made from it at registration
// ("expected string to be printable ASCII") stay.
func dropPatternDescriptions(oapi *huma.OpenAPI) {
	seen := map[*huma.Schema]bool{}
	var walk func(s *huma.Schema)
	walk = func(s *huma.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		s.PatternDescription = ""
		walk(s.Items)
		walk(s.Not)
		if ap, ok := s.AdditionalProperties.(*huma.Schema); ok {
			walk(ap)
		}
		for _, sub := range s.Properties {
			walk(sub)
		}
		for _, list := range [][]*huma.Schema{s.AnyOf, s.OneOf, s.AllOf} {
			for _, sub := range list {
				walk(sub)
			}
		}
	}
	for _, s := range oapi.Components.Schemas.Map() {
		walk(s)
	}
	for _, item := range oapi.Paths {
		for _, op := range []*huma.Operation{item.Get, item.Put, item.Post, item.Delete, item.Options, item.Head, item.Patch, item.Trace} {
			if op == nil {
				continue
			}
			for _, p := range op.Parameters {
				walk(p.Schema)
			}
			if op.RequestBody != nil {
				for _, mt := range op.RequestBody.Content {
					walk(mt.Schema)
				}
			}
		}
	}
}
