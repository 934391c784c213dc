package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/portal"
)

// PortalSessions opens and ends the sessions of the consumer portal
// (portal.Sessions).
type PortalSessions interface {
	Open(ctx context.Context, appID string, ttl time.Duration) (portal.Link, error)
	Revoke(ctx context.Context, appID, id string) (portal.Session, error)
	RevokeAll(ctx context.Context, appID string) (int, error)
}

type createPortalSessionInput struct {
	AppPath
	Body *struct {
		ExpiresInSeconds *int `json:"expires_in_seconds,omitempty" minimum:"60" maximum:"604800" doc:"How long the link and the session it opens last, in seconds: 60 to 604800 (a week); 3600 when left out."`
	}
}

type portalSessionPath struct {
	AppPath
	SessionID string `path:"session_id" pattern:"^pses_[0-9a-z]{26}$" doc:"Portal session ID."`
}

// portalLink is a new portal session as its creator gets it.
type portalLink struct {
	ID        string    `json:"id" doc:"The session's ID, to revoke it."`
	URL       string    `json:"url" format:"uri" doc:"Opens the portal of this application alone, without an API key, until expires_at: give it to the application's customer, or load it in an iframe. It carries the session's token: whoever holds it is that customer."`
	ExpiresAt time.Time `json:"expires_at" doc:"When the session ends."`
}

type revokedPortalSessions struct {
	Revoked int `json:"revoked" doc:"How many live sessions were revoked."`
}

func (s *Server) registerPortalSessions(api huma.API) {
	tags := []string{"Portal"}
	const base = "/v1/apps/{app_id}/portal-sessions"
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "create-portal-session", Method: http.MethodPost, Path: base, Tags: tags,
		Summary: "Open the consumer portal",
		Description: "Returns a link to hookd's consumer portal (/portal/) for this application alone: there its customer " +
			"manages endpoints, reads the event catalog, follows and retries deliveries, reveals and rotates secrets and sends " +
			"test events, without an API key. The link works until expires_at or until the session is revoked.",
		DefaultStatus: http.StatusCreated, Security: bearer(),
	}), func(ctx context.Context, in *createPortalSessionInput) (*bodyOutput[portalLink], error) {
		ttl := portal.DefaultSessionTTL
		if in.Body != nil && in.Body.ExpiresInSeconds != nil {
			ttl = time.Duration(*in.Body.ExpiresInSeconds) * time.Second
		}
		l, err := s.cfg.PortalSessions.Open(ctx, in.AppID, ttl)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(portalLink{ID: l.ID, URL: l.URL, ExpiresAt: l.ExpiresAt}), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "revoke-portal-session", Method: http.MethodDelete, Path: base + "/{session_id}", Tags: tags,
		Summary: "Revoke a portal session", Description: "Its link and the portal pages open with it stop working at once. Revoking twice is harmless.",
		DefaultStatus: http.StatusNoContent, Security: bearer(),
	}), func(ctx context.Context, in *portalSessionPath) (*struct{}, error) {
		if _, err := s.cfg.PortalSessions.Revoke(ctx, in.AppID, in.SessionID); err != nil {
			return nil, s.fail(ctx, err)
		}
		return nil, nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "revoke-portal-sessions", Method: http.MethodDelete, Path: base, Tags: tags,
		Summary: "Revoke every portal session", Description: "Every live session of the application, and its link, stops working at once.",
		Security: bearer(),
	}), func(ctx context.Context, in *AppPath) (*bodyOutput[revokedPortalSessions], error) {
		n, err := s.cfg.PortalSessions.RevokeAll(ctx, in.AppID)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(revokedPortalSessions{Revoked: n}), nil
	})
}
