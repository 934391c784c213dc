package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/registry"
)

type createAppInput struct {
	Body struct {
		UID      string            `json:"uid,omitempty" pattern:"^[A-Za-z0-9._-]{1,64}$" doc:"Your own ID of the application, e.g. your customer ID: 1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-', unique (409 when another application has it), not shaped like a hookd app ID (app_ and 26 of 0-9, a-z), and not dots alone. Every {app_id} accepts it in place of the ID."`
		Name     string            `json:"name" minLength:"1" maxLength:"200" pattern:"\\S" patternDescription:"not blank" doc:"A name for people: 1 to 200 characters, not blank, without control characters."`
		Metadata map[string]string `json:"metadata,omitempty" doc:"Free-form string pairs for your own use (at most 50)."`
	}
}

type updateAppInput struct {
	AppPath
	Body struct {
		UID      nullable[string]   `json:"uid,omitempty" pattern:"^[A-Za-z0-9._-]{1,64}$" doc:"Sets your own ID of the application (the rules of create-app apply); null removes it."`
		Name     *string            `json:"name,omitempty" minLength:"1" maxLength:"200" pattern:"\\S" patternDescription:"not blank" doc:"1 to 200 characters, not blank, without control characters."`
		Metadata *map[string]string `json:"metadata,omitempty" doc:"Replaces the metadata."`
	}
}

type listAppsInput struct {
	PageParams
}

func (s *Server) registerApps(api huma.API) {
	tags := []string{"Applications"}
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "create-app", Method: http.MethodPost, Path: "/v1/apps", Tags: tags,
		Summary: "Create an application",
		Description: "An application is a tenant: it owns endpoints and events. Give it a uid, your own ID of it, to address it " +
			"by that ID in every {app_id}.",
		DefaultStatus: http.StatusCreated, Security: bearer(), MaxBodyBytes: maxBodyBytes,
		Metadata: map[string]any{metaAdminOnly: true},
	}), func(ctx context.Context, in *createAppInput) (*bodyOutput[registry.App], error) {
		a, err := s.registry.CreateApp(ctx, registry.AppInput{UID: in.Body.UID, Name: in.Body.Name, Metadata: in.Body.Metadata})
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(a), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "list-apps", Method: http.MethodGet, Path: "/v1/apps", Tags: tags,
		Summary: "List applications", Description: "Newest first. An app-scoped key sees only its application.",
		Security: bearer(),
	}), func(ctx context.Context, in *listAppsInput) (*listOutput[registry.App], error) {
		p, err := s.registry.Apps(ctx, principalOf(ctx).appID, in.query())
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return pageOf(p), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "get-app", Method: http.MethodGet, Path: "/v1/apps/{app_id}", Tags: tags,
		Summary: "Get an application", Description: "An app-scoped key may read only its own application.", Security: bearer(),
	}), func(ctx context.Context, in *AppPath) (*bodyOutput[registry.App], error) {
		a, err := s.registry.App(ctx, in.AppID)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(a), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "update-app", Method: http.MethodPatch, Path: "/v1/apps/{app_id}", Tags: tags,
		Summary: "Update an application", Description: "Sets the fields given; leaves the others.",
		Security: bearer(), MaxBodyBytes: maxBodyBytes,
	}), func(ctx context.Context, in *updateAppInput) (*bodyOutput[registry.App], error) {
		a, err := s.registry.UpdateApp(ctx, in.AppID, registry.AppPatch{UID: in.Body.UID.or(""), Name: in.Body.Name, Metadata: in.Body.Metadata})
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(a), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "delete-app", Method: http.MethodDelete, Path: "/v1/apps/{app_id}", Tags: tags,
		Summary:       "Delete an application",
		Description:   "Deletes the application with its endpoints, links, API keys and deliveries. Deliveries still queued are dropped.",
		DefaultStatus: http.StatusNoContent, Security: bearer(),
		Metadata: map[string]any{metaAdminOnly: true},
	}), func(ctx context.Context, in *AppPath) (*struct{}, error) {
		if err := s.registry.DeleteApp(ctx, in.AppID); err != nil {
			return nil, s.fail(ctx, err)
		}
		return nil, nil
	})
}
