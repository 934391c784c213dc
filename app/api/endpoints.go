package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/registry"
)

type createEndpointInput struct {
	AppPath
	Body struct {
		URL             string              `json:"url" format:"uri" maxLength:"2048" doc:"Absolute http(s) URL, without credentials."`
		Description     string              `json:"description,omitempty" maxLength:"1000"`
		EventTypes      []string            `json:"event_types,omitempty" maxItems:"100" doc:"Event types the endpoint receives; null or empty receives all."`
		Filter          jsonFilter          `json:"filter,omitempty" doc:"A filter on the event payload, e.g. {\"amount\": {\"$gte\": 100}}; see the README for the syntax. null or {} receives every event of the subscribed types. At most 8 KiB, 10 levels of nesting, 256 conditions and 4 $contains, or a 422 on filter. A filter that needs more than 1,048,576 steps on an event does not match it."`
		Headers         map[string]string   `json:"headers,omitempty" doc:"Custom headers sent with each delivery (at most 20). Any header but these, which are refused: Content-*, Proxy-*, Webhook-*, the hop-by-hop Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade and HTTP2-Settings, Host, Expect, Max-Forwards and User-Agent."`
		RateLimit       *int                `json:"rate_limit,omitempty" nullable:"true" minimum:"1" maximum:"100000" doc:"At most this many deliveries per second to the endpoint; null or left out for no limit."`
		Disabled        bool                `json:"disabled,omitempty" doc:"Create the endpoint disabled."`
		Metadata        map[string]string   `json:"metadata,omitempty"`
		SignatureScheme string              `json:"signature_scheme,omitempty" enum:"hmac-sha256,ed25519" doc:"How deliveries are signed: hmac-sha256 (the default; v1 signatures under a whsec_ secret) or ed25519 (v1a signatures; receivers verify with the whpk_ public_key)."`
		Ordering        string              `json:"ordering,omitempty" enum:"unordered,fifo" doc:"unordered (the default): deliveries go out several at a time, each retried on its own. fifo: one at a time, in the order their events were committed (per app); a failing delivery holds those behind it until it succeeds or is dead-lettered, then the next goes. Set at creation only."`
		TLS             *endpointTLSInput   `json:"tls,omitempty" doc:"TLS material of the endpoint's deliveries: a client certificate and key for mutual TLS, and CAs that verify its server. Left out for none."`
		OAuth           *endpointOAuthInput `json:"oauth,omitempty" doc:"OAuth 2.0 client credentials: each delivery carries a bearer token from token_url. Left out for none."`
	}
}

// endpointTLSInput is an endpoint's TLS material as a request sets it.
type endpointTLSInput struct {
	ClientCertificate string `json:"client_certificate,omitempty" maxLength:"65536" doc:"PEM: the client certificate hookd presents to the endpoint's server, then its chain; with client_key. At most 64 KiB; RSA keys of at most 8192 bits."`
	ClientKey         string `json:"client_key,omitempty" maxLength:"16384" doc:"PEM: the unencrypted private key of client_certificate (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY); it must match the certificate. Stored encrypted (HOOKD_SECRETS_KEY), never returned. In a PATCH with a client_certificate, left out keeps the current key."`
	CABundle          string `json:"ca_bundle,omitempty" maxLength:"65536" doc:"PEM: one or more CA certificates that verify the endpoint's server instead of the system's roots. At most 64 KiB."`
}

func (t *endpointTLSInput) input() *registry.TLSInput {
	if t == nil {
		return nil
	}
	return &registry.TLSInput{ClientCertificate: t.ClientCertificate, ClientKey: t.ClientKey, CABundle: t.CABundle}
}

// endpointOAuthInput is an endpoint's OAuth 2.0 client credentials as a
// creation sets them.
type endpointOAuthInput struct {
	TokenURL     string   `json:"token_url" format:"uri" maxLength:"2048" doc:"Absolute http(s) URL of the token endpoint, without credentials; the rules of an endpoint's url apply (no private targets unless allowed)."`
	ClientID     string   `json:"client_id" minLength:"1" maxLength:"255"`
	ClientSecret string   `json:"client_secret" minLength:"1" maxLength:"1024" doc:"Stored encrypted (HOOKD_SECRETS_KEY), never returned."`
	Scopes       []string `json:"scopes,omitempty" maxItems:"20" doc:"Scopes to ask for, each 1 to 200 printable ASCII characters without space, \" or \\."`
	Audience     string   `json:"audience,omitempty" maxLength:"1024" doc:"Sent as the token request's audience parameter, when set."`
}

func (o *endpointOAuthInput) input() *registry.OAuthInput {
	if o == nil {
		return nil
	}
	return &registry.OAuthInput{TokenURL: o.TokenURL, ClientID: o.ClientID, ClientSecret: o.ClientSecret, Scopes: o.Scopes, Audience: o.Audience}
}

// endpointOAuthPatch is an endpoint's OAuth 2.0 client credentials as a
// PATCH replaces them: the client secret may be left out, to keep it.
type endpointOAuthPatch struct {
	TokenURL     string   `json:"token_url" format:"uri" maxLength:"2048" doc:"Absolute http(s) URL of the token endpoint, without credentials; the rules of an endpoint's url apply (no private targets unless allowed)."`
	ClientID     string   `json:"client_id" minLength:"1" maxLength:"255"`
	ClientSecret string   `json:"client_secret,omitempty" maxLength:"1024" doc:"Stored encrypted (HOOKD_SECRETS_KEY), never returned. Left out (or empty) keeps the current secret."`
	Scopes       []string `json:"scopes,omitempty" maxItems:"20" doc:"Scopes to ask for, each 1 to 200 printable ASCII characters without space, \" or \\."`
	Audience     string   `json:"audience,omitempty" maxLength:"1024" doc:"Sent as the token request's audience parameter, when set."`
}

type updateEndpointInput struct {
	EndpointPath
	Body struct {
		URL         *string                      `json:"url,omitempty" format:"uri" maxLength:"2048" doc:"Absolute http(s) URL, without credentials."`
		Description *string                      `json:"description,omitempty" maxLength:"1000"`
		EventTypes  nullable[[]string]           `json:"event_types,omitempty" maxItems:"100" doc:"Replaces the event types the endpoint receives; null or empty receives all."`
		Filter      jsonFilter                   `json:"filter,omitempty" doc:"Replaces the filter; null or {} removes it. The limits of create-endpoint apply."`
		Headers     *map[string]string           `json:"headers,omitempty" doc:"Replaces the custom headers."`
		RateLimit   nullable[int]                `json:"rate_limit,omitempty" minimum:"0" maximum:"100000" doc:"Replaces the limit; null or 0 removes it."`
		Metadata    *map[string]string           `json:"metadata,omitempty" doc:"Replaces the metadata."`
		TLS         nullable[endpointTLSInput]   `json:"tls,omitempty" doc:"Replaces the TLS material; null or {} removes it. A client_key left out keeps the current key, which must match the new client_certificate."`
		OAuth       nullable[endpointOAuthPatch] `json:"oauth,omitempty" doc:"Replaces the OAuth client credentials; null removes them. A client_secret left out keeps the current secret."`
	}
}

type listEndpointsInput struct {
	AppPath
	PageParams
}

type disableEndpointInput struct {
	EndpointPath
	Body *struct {
		Reason string `json:"reason,omitempty" maxLength:"1000" doc:"Why, shown as disabled_reason."`
	}
}

type rotateSecretInput struct {
	EndpointPath
	Body *struct {
		GracePeriodSeconds *int   `json:"grace_period_seconds,omitempty" minimum:"0" maximum:"604800" doc:"How long the current secret keeps signing next to the new one (default 86400, one day). Secrets retired earlier keep their own."`
		Secret             string `json:"secret,omitempty" pattern:"^(?:whsec_(?:(?:[A-Za-z0-9+/]{4}){8,21}(?:[A-Za-z0-9+/]{2}==)?|(?:[A-Za-z0-9+/]{4}){8,20}[A-Za-z0-9+/]{3}=)|whsk_(?:(?:[A-Za-z0-9+/]{4}){10}[A-Za-z0-9+/]{3}=|(?:[A-Za-z0-9+/]{4}){21}[A-Za-z0-9+/]{2}==))$" patternDescription:"whsec_ and the padded standard base64 of 24 to 64 bytes, or whsk_ and that of a 32-byte ed25519 seed or 64-byte private key" doc:"The new key, random when omitted: for hmac-sha256 whsec_ and the padded standard base64 of 24 to 64 bytes; for ed25519 whsk_ and that of a 32-byte seed or of a 64-byte private key (seed, then public key)."`
		SignatureScheme    string `json:"signature_scheme,omitempty" enum:"hmac-sha256,ed25519" doc:"The scheme of the new key: hmac-sha256 or ed25519. By default that of the secret given, or else the endpoint's current one. The keys this rotation retires keep signing in their own scheme during the grace period."`
	}
}

// endpointWithSecret is an endpoint as creation returns it: the one
// response besides GET .../secret that carries an HMAC signing secret, and
// the one besides its rotation's that carries an ed25519 private key.
type endpointWithSecret struct {
	registry.Endpoint
	Secret string `json:"secret" doc:"The signing key: for hmac-sha256 the secret (whsec_...), which GET .../secret reads again; for ed25519 the private key (whsk_...), shown only here: hookd signs with it, receivers need only the public_key."`
}

// oauthPatch returns what a PATCH's oauth field asks for: nil to leave the
// credentials, an empty input to remove them.
// The two shapes differ only in their tags, so a patch converts to an
// input.
func oauthPatch(n nullable[endpointOAuthPatch]) *registry.OAuthInput {
	return (*endpointOAuthInput)(n.or(endpointOAuthPatch{})).input()
}

// maxEndpointBodyBytes bounds the body of an endpoint's creation or
// update, which may carry a certificate chain, a key and a CA bundle.
const maxEndpointBodyBytes = 256 << 10

func (s *Server) registerEndpoints(api huma.API) {
	tags := []string{"Endpoints"}
	const base = "/v1/apps/{app_id}/endpoints"
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "create-endpoint", Method: http.MethodPost, Path: base, Tags: tags,
		Summary: "Create an endpoint",
		Description: "Returns the endpoint with its signing secret. An app may have at most HOOKD_MAX_ENDPOINTS_PER_APP endpoints " +
			"(1,000 by default): one more is a 422 problem of type urn:hookd:problem:quota-exceeded, and nothing is written.",
		DefaultStatus: http.StatusCreated, Security: bearer(), MaxBodyBytes: maxEndpointBodyBytes,
	}), func(ctx context.Context, in *createEndpointInput) (*bodyOutput[endpointWithSecret], error) {
		b := in.Body
		ep, secret, err := s.registry.CreateEndpoint(ctx, in.AppID, registry.EndpointInput{
			URL: b.URL, Description: b.Description, EventTypes: b.EventTypes, Filter: json.RawMessage(b.Filter),
			Headers: b.Headers, RateLimit: b.RateLimit, Disabled: b.Disabled, Metadata: b.Metadata,
			SignatureScheme: b.SignatureScheme, Ordering: b.Ordering, TLS: b.TLS.input(), OAuth: b.OAuth.input(),
		})
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(endpointWithSecret{Endpoint: ep, Secret: secret}), nil
	})
	describeResponse(api, http.MethodPost, base, http.StatusUnprocessableEntity,
		"An invalid field (urn:hookd:problem:validation, with field), or an app that already has HOOKD_MAX_ENDPOINTS_PER_APP "+
			"endpoints (urn:hookd:problem:quota-exceeded).")
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "list-endpoints", Method: http.MethodGet, Path: base, Tags: tags,
		Summary: "List endpoints", Description: "Newest first.", Security: bearer(),
	}), func(ctx context.Context, in *listEndpointsInput) (*listOutput[registry.Endpoint], error) {
		p, err := s.registry.Endpoints(ctx, in.AppID, in.query())
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return pageOf(p), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "get-endpoint", Method: http.MethodGet, Path: base + "/{endpoint_id}", Tags: tags,
		Summary: "Get an endpoint", Description: "The endpoint without its signing secret (see GET .../secret).", Security: bearer(),
	}), func(ctx context.Context, in *EndpointPath) (*bodyOutput[registry.Endpoint], error) {
		ep, err := s.registry.Endpoint(ctx, in.AppID, in.EndpointID)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(ep), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "update-endpoint", Method: http.MethodPatch, Path: base + "/{endpoint_id}", Tags: tags,
		Summary: "Update an endpoint", Description: "Sets the fields given; leaves the others.",
		Security: bearer(), MaxBodyBytes: maxEndpointBodyBytes,
	}), func(ctx context.Context, in *updateEndpointInput) (*bodyOutput[registry.Endpoint], error) {
		b := in.Body
		ep, err := s.registry.UpdateEndpoint(ctx, in.AppID, in.EndpointID, registry.EndpointPatch{
			URL: b.URL, Description: b.Description, EventTypes: b.EventTypes.or([]string{}), Filter: json.RawMessage(b.Filter),
			Headers: b.Headers, RateLimit: b.RateLimit.or(0), Metadata: b.Metadata,
			TLS: b.TLS.or(endpointTLSInput{}).input(), OAuth: oauthPatch(b.OAuth),
		})
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(ep), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "delete-endpoint", Method: http.MethodDelete, Path: base + "/{endpoint_id}", Tags: tags,
		Summary: "Delete an endpoint", Description: "Deletes the endpoint, its secrets and its deliveries; deliveries still queued are dropped.",
		DefaultStatus: http.StatusNoContent, Security: bearer(),
	}), func(ctx context.Context, in *EndpointPath) (*struct{}, error) {
		if err := s.registry.DeleteEndpoint(ctx, in.AppID, in.EndpointID); err != nil {
			return nil, s.fail(ctx, err)
		}
		return nil, nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "disable-endpoint", Method: http.MethodPost, Path: base + "/{endpoint_id}/disable", Tags: tags,
		Summary:     "Disable an endpoint",
		Description: "A disabled endpoint receives no new events; its queued deliveries fail, to be retried from the dead letters.",
		Security:    bearer(), MaxBodyBytes: maxBodyBytes,
	}), func(ctx context.Context, in *disableEndpointInput) (*bodyOutput[registry.Endpoint], error) {
		reason := ""
		if in.Body != nil {
			reason = in.Body.Reason
		}
		ep, err := s.registry.SetEndpointDisabled(ctx, in.AppID, in.EndpointID, true, reason)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(ep), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "enable-endpoint", Method: http.MethodPost, Path: base + "/{endpoint_id}/enable", Tags: tags,
		Summary: "Enable an endpoint", Description: "The endpoint receives new events again; its failing streak starts over. " +
			"Deliveries that failed while it was disabled stay dead letters, to be retried.",
		Security: bearer(),
	}), func(ctx context.Context, in *EndpointPath) (*bodyOutput[registry.Endpoint], error) {
		ep, err := s.registry.SetEndpointDisabled(ctx, in.AppID, in.EndpointID, false, "")
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(ep), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "get-endpoint-secret", Method: http.MethodGet, Path: base + "/{endpoint_id}/secret", Tags: tags,
		Summary:     "Read an endpoint's signing secret",
		Description: "The newest live key: an hmac-sha256 secret (whsec_...), or for ed25519 the public key (whpk_...) only, never the private key.",
		Security:    bearer(),
	}), func(ctx context.Context, in *EndpointPath) (*bodyOutput[registry.Secret], error) {
		sec, err := s.registry.Secret(ctx, in.AppID, in.EndpointID)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(sec), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "rotate-endpoint-secret", Method: http.MethodPost, Path: base + "/{endpoint_id}/secret/rotate", Tags: tags,
		Summary: "Rotate an endpoint's signing secret",
		Description: "Creates a new key, of the scheme asked for (hmac-sha256 or ed25519; by default the endpoint's). During the grace period " +
			"every delivery is signed with both the old and the new key (two space-separated signatures: v1, for hmac-sha256, v1a, for ed25519, " +
			"mixed when the rotation switches scheme); then the old one expires. Secrets retired by earlier rotations keep their own grace period, " +
			"but at most 3 secrets sign: a rotation that would leave more ends the grace of the oldest at once. The response carries the new key; " +
			"an ed25519 private key (whsk_...) is shown only here, with its public_key.",
		Security: bearer(), MaxBodyBytes: maxBodyBytes,
	}), func(ctx context.Context, in *rotateSecretInput) (*bodyOutput[registry.Secret], error) {
		grace, secret, scheme := registry.DefaultGracePeriod, "", ""
		if in.Body != nil {
			if in.Body.GracePeriodSeconds != nil {
				grace = time.Duration(*in.Body.GracePeriodSeconds) * time.Second
			}
			secret, scheme = in.Body.Secret, in.Body.SignatureScheme
		}
		sec, err := s.registry.RotateSecret(ctx, in.AppID, in.EndpointID, grace, secret, scheme)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(sec), nil
	})
}
