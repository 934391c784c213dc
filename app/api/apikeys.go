package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/registry"
)

type createAPIKeyInput struct {
	Body struct {
		Name  string `json:"name" minLength:"1" maxLength:"200" pattern:"\\S" patternDescription:"not blank" doc:"What the key is for: 1 to 200 characters, not blank, without control characters."`
		AppID string `json:"app_id,omitempty" pattern:"^app_[0-9a-z]{26}$" doc:"Scope the key to this application; omit for an admin key."`
	}
}

type keyPath struct {
	KeyID string `path:"key_id" pattern:"^key_[0-9a-z]{26}$" doc:"API key ID."`
}

type listAPIKeysInput struct {
	PageParams
}

// apiKeyWithSecret is an API key as creation returns it, the only time the
// key itself is shown.
type apiKeyWithSecret struct {
	registry.APIKey
	Key string `json:"key" doc:"The key, shown only now: send it as Authorization: Bearer <key>."`
}

func (s *Server) registerAPIKeys(api huma.API) {
	tags := []string{"API keys"}
	admin := map[string]any{metaAdminOnly: true}
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "create-api-key", Method: http.MethodPost, Path: "/v1/api-keys", Tags: tags,
		Summary: "Create an API key", Description: "Only a hash is stored: the key is in this response and nowhere else.",
		DefaultStatus: http.StatusCreated, Security: bearer(), MaxBodyBytes: maxBodyBytes, Metadata: admin,
	}), func(ctx context.Context, in *createAPIKeyInput) (*bodyOutput[apiKeyWithSecret], error) {
		k, key, err := s.registry.CreateAPIKey(ctx, in.Body.Name, in.Body.AppID)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(apiKeyWithSecret{APIKey: k, Key: key}), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "list-api-keys", Method: http.MethodGet, Path: "/v1/api-keys", Tags: tags,
		Summary: "List API keys", Description: "Newest first, revoked ones included.", Security: bearer(), Metadata: admin,
	}), func(ctx context.Context, in *listAPIKeysInput) (*listOutput[registry.APIKey], error) {
		p, err := s.registry.APIKeys(ctx, in.query())
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return pageOf(p), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "get-api-key", Method: http.MethodGet, Path: "/v1/api-keys/{key_id}", Tags: tags,
		Summary: "Get an API key", Description: "The key's name, scope, prefix and use; never the key itself.",
		Security: bearer(), Metadata: admin,
	}), func(ctx context.Context, in *keyPath) (*bodyOutput[registry.APIKey], error) {
		k, err := s.registry.APIKey(ctx, in.KeyID)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(k), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "revoke-api-key", Method: http.MethodPost, Path: "/v1/api-keys/{key_id}/revoke", Tags: tags,
		Summary: "Revoke an API key", Description: "The key stops working at once. Revoking twice is harmless.",
		Security: bearer(), Metadata: admin,
	}), func(ctx context.Context, in *keyPath) (*bodyOutput[registry.APIKey], error) {
		k, err := s.registry.RevokeAPIKey(ctx, in.KeyID)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(k), nil
	})
}
