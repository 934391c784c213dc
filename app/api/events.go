package api

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/events"
	"github.com/hookd/hookd/app/resource"
)

type publishEventInput struct {
	AppPath
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" pattern:"^[ -~]*$" patternDescription:"printable ASCII" doc:"At most 255 printable ASCII characters. Repeating a request with the same key within 24 hours returns the original event (200) instead of publishing another."`
	Body           struct {
		Type    string     `json:"type" pattern:"^[A-Za-z0-9][A-Za-z0-9._\\-]{0,127}$" doc:"The event type, e.g. invoice.paid."`
		Payload jsonObject `json:"payload" doc:"A JSON object: the webhook's data, nesting objects and arrays at most 64 levels deep (the payload object is level 1). Validated against the type's schema, if any, within a budget of 16,384 steps plus 4 per payload byte. Past either bound: a 422 on payload."`
		ID      string     `json:"id,omitempty" maxLength:"255" pattern:"^[ -~]*$" patternDescription:"printable ASCII" doc:"Your ID for the event, at most 255 printable ASCII characters; acts as the idempotency key when no Idempotency-Key header is sent."`
	}
}

type publishEventOutput struct {
	Status   int
	Replayed bool `header:"Idempotent-Replayed" doc:"true when an idempotency key returned an event published earlier."`
	Body     events.Event
}

type eventPath struct {
	AppID   string `path:"app_id" pattern:"^[A-Za-z0-9._-]{1,64}$" doc:"The application's ID (app_...) or its uid, your own ID of it."`
	EventID string `path:"event_id" pattern:"^evt_[0-9a-z]{26}$" doc:"Event ID."`
}

type listEventsInput struct {
	AppPath
	PageParams
	Type  string    `query:"type" maxLength:"128" doc:"Only events of this type."`
	Since time.Time `query:"since" doc:"Only events created at or after this time (RFC 3339)."`
	Until time.Time `query:"until" doc:"Only events created before this time (RFC 3339)."`
}

func (s *Server) registerEvents(api huma.API) {
	tags := []string{"Events"}
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "publish-event", Method: http.MethodPost, Path: "/v1/apps/{app_id}/events", Tags: tags,
		Summary: "Publish an event",
		Description: "Publishes an event to the application's subscribed endpoints. 201 for a new event; " +
			"200 with Idempotent-Replayed: true when the idempotency key names one published in the last 24 hours. " +
			"The same key with another type or payload is a 409.",
		DefaultStatus: http.StatusCreated, Security: bearer(), MaxBodyBytes: s.cfg.MaxEventBytes,
		Responses: map[string]*huma.Response{"200": {
			Description: "The event published earlier under the same idempotency key.",
			Content: map[string]*huma.MediaType{"application/json": {
				Schema: api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[events.Event](), true, ""),
			}},
			Headers: map[string]*huma.Header{"Idempotent-Replayed": {
				Description: "true: the event was published earlier.",
				Schema:      &huma.Schema{Type: huma.TypeBoolean},
			}},
		}},
	}), func(ctx context.Context, in *publishEventInput) (*publishEventOutput, error) {
		key := in.IdempotencyKey
		if key == "" {
			key = in.Body.ID
		} else if in.Body.ID != "" && in.Body.ID != key {
			return nil, s.fail(ctx, resource.Invalid("id", "differs from the Idempotency-Key header"))
		}
		ev, replayed, err := s.events.Publish(ctx, in.AppID, events.PublishInput{Type: in.Body.Type, Payload: json.RawMessage(in.Body.Payload), IdempotencyKey: key})
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		out := &publishEventOutput{Status: http.StatusCreated, Body: ev}
		if replayed {
			out.Status, out.Replayed = http.StatusOK, true
		}
		return out, nil
	})
	describeResponse(api, http.MethodPost, "/v1/apps/{app_id}/events", http.StatusUnprocessableEntity,
		"An invalid field (urn:hookd:problem:validation, with field): type, id, or payload when it is not a JSON object, nests "+
			"more than 64 levels, does not match the type's schema (field payload/<JSON pointer>) or needs more than the "+
			"validation budget of 16,384 steps plus 4 per byte.")
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "list-events", Method: http.MethodGet, Path: "/v1/apps/{app_id}/events", Tags: tags,
		Summary: "List events", Description: "Newest first.", Security: bearer(),
	}), func(ctx context.Context, in *listEventsInput) (*listOutput[events.Event], error) {
		p, err := s.events.Events(ctx, in.AppID, events.EventFilter{Type: in.Type, Since: in.Since, Until: in.Until}, in.query())
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return pageOf(p), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "get-event", Method: http.MethodGet, Path: "/v1/apps/{app_id}/events/{event_id}", Tags: tags,
		Summary: "Get an event", Description: "With its deliveries counted by status.", Security: bearer(),
	}), func(ctx context.Context, in *eventPath) (*bodyOutput[events.Event], error) {
		ev, err := s.events.Event(ctx, in.AppID, in.EventID)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(ev), nil
	})
}
