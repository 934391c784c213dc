package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/events"
)

// EventTypePath names an event type. (Exported, as the other embedded path
// structs are, so that huma can set its field in updateEventTypeInput.)
type EventTypePath struct {
	Name string `path:"name" pattern:"^[A-Za-z0-9][A-Za-z0-9._\\-]{0,127}$" doc:"Event type name, e.g. link.clicked."`
}

type createEventTypeInput struct {
	Body struct {
		Name        string     `json:"name" pattern:"^[A-Za-z0-9][A-Za-z0-9._\\-]{0,127}$" doc:"Letters, digits, '.', '_' and '-', e.g. invoice.paid."`
		Description string     `json:"description,omitempty" maxLength:"1000"`
		Schema      jsonSchema `json:"schema,omitempty" doc:"A JSON Schema (draft 2020-12 unless $schema says otherwise) that payloads of this type must match: an object, or a boolean (true accepts every payload, false none); null or left out for none. Self-contained (no external $ref). At most 64 KiB and 64 levels of nesting, without $dynamicRef or $recursiveRef, and at most 256 subschema evaluations per payload value; past a bound, a 422 on schema."`
	}
}

type updateEventTypeInput struct {
	EventTypePath
	Body struct {
		Description *string    `json:"description,omitempty" maxLength:"1000"`
		Schema      jsonSchema `json:"schema,omitempty" doc:"Replaces the schema; null removes it. The bounds of create-event-type apply."`
		Archived    *bool      `json:"archived,omitempty" doc:"false restores an archived type."`
	}
}

type listEventTypesInput struct {
	PageParams
	IncludeArchived bool `query:"include_archived" doc:"List archived types too."`
}

func (s *Server) registerEventTypes(api huma.API) {
	tags := []string{"Event types"}
	admin := map[string]any{metaAdminOnly: true}
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "create-event-type", Method: http.MethodPost, Path: "/v1/event-types", Tags: tags,
		Summary: "Register an event type", Description: "With an optional JSON Schema that every event of the type must match when published.",
		DefaultStatus: http.StatusCreated, Security: bearer(), MaxBodyBytes: maxBodyBytes + 64<<10, Metadata: admin,
	}), func(ctx context.Context, in *createEventTypeInput) (*bodyOutput[events.EventType], error) {
		et, err := s.events.CreateEventType(ctx, events.EventTypeInput{Name: in.Body.Name, Description: in.Body.Description, Schema: json.RawMessage(in.Body.Schema)})
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(et), nil
	})
	schemaBounds := "An invalid field (urn:hookd:problem:validation, with field), e.g. a schema that is not valid, has an external " +
		"$ref, or is past a bound: 64 KiB, 64 levels of nesting, $dynamicRef or $recursiveRef, a subschema applying itself to " +
		"the same value, or more than 256 subschema evaluations per payload value."
	describeResponse(api, http.MethodPost, "/v1/event-types", http.StatusUnprocessableEntity, schemaBounds)
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "list-event-types", Method: http.MethodGet, Path: "/v1/event-types", Tags: tags,
		Summary: "List event types", Description: "By name.", Security: bearer(),
	}), func(ctx context.Context, in *listEventTypesInput) (*listOutput[events.EventType], error) {
		p, err := s.events.EventTypes(ctx, in.IncludeArchived, in.query())
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return pageOf(p), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "get-event-type", Method: http.MethodGet, Path: "/v1/event-types/{name}", Tags: tags,
		Summary: "Get an event type", Description: "Archived types too.", Security: bearer(),
	}), func(ctx context.Context, in *EventTypePath) (*bodyOutput[events.EventType], error) {
		et, err := s.events.EventType(ctx, in.Name)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(et), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "update-event-type", Method: http.MethodPatch, Path: "/v1/event-types/{name}", Tags: tags,
		Summary: "Update an event type", Description: "Sets the fields given; leaves the others. A new schema applies to the next publish.",
		Security: bearer(), MaxBodyBytes: maxBodyBytes + 64<<10, Metadata: admin,
	}), func(ctx context.Context, in *updateEventTypeInput) (*bodyOutput[events.EventType], error) {
		et, err := s.events.UpdateEventType(ctx, in.Name, events.EventTypePatch{
			Description: in.Body.Description, Schema: json.RawMessage(in.Body.Schema), Archived: in.Body.Archived,
		})
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(et), nil
	})
	describeResponse(api, http.MethodPatch, "/v1/event-types/{name}", http.StatusUnprocessableEntity, schemaBounds)
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "archive-event-type", Method: http.MethodPost, Path: "/v1/event-types/{name}/archive", Tags: tags,
		Summary:     "Archive an event type",
		Description: "New events of an archived type are refused (422); published ones are kept. PATCH archived=false restores it.",
		Security:    bearer(), Metadata: admin,
	}), func(ctx context.Context, in *EventTypePath) (*bodyOutput[events.EventType], error) {
		et, err := s.events.ArchiveEventType(ctx, in.Name)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(et), nil
	})
}
