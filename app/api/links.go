package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/links"
	"github.com/hookd/hookd/app/resource"
)

type createLinkInput struct {
	AppPath
	Body struct {
		URL  string `json:"url" format:"uri" maxLength:"2048" doc:"Where the link redirects: an absolute http(s) URL."`
		Code string `json:"code,omitempty" pattern:"^[A-Za-z0-9_-]{0,64}$" patternDescription:"at most 64 letters, digits, '-' or '_'" doc:"The short code: 1 to 64 letters, digits, '-' or '_'; random when empty or left out."`
	}
}

type redirectInput struct {
	Code      string `path:"code" maxLength:"64"`
	UserAgent string `header:"User-Agent"`
	Referer   string `header:"Referer"`
}

type redirectOutput struct {
	Status       int
	Location     string `header:"Location" format:"uri" doc:"The link's URL: an absolute http(s) URL."`
	CacheControl string `header:"Cache-Control" enum:"no-store" doc:"no-store: every click must reach hookd to be counted."`
}

func (s *Server) registerLinks(api huma.API) {
	tags := []string{"Links"}
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "create-link", Method: http.MethodPost, Path: "/v1/apps/{app_id}/links", Tags: tags,
		Summary: "Create a short link", Description: "Each visit of /r/{code} publishes link.clicked.",
		DefaultStatus: http.StatusCreated, Security: bearer(), MaxBodyBytes: maxBodyBytes,
	}), func(ctx context.Context, in *createLinkInput) (*bodyOutput[links.Link], error) {
		l, err := s.links.Create(ctx, in.AppID, in.Body.URL, in.Body.Code)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(l), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "follow-link", Method: http.MethodGet, Path: "/r/{code}", Tags: tags,
		Summary:       "Follow a short link",
		Description:   "Redirects (302) to the link's URL, recording the click and publishing link.clicked in one transaction.",
		DefaultStatus: http.StatusFound, Security: public(),
		Errors: []int{http.StatusNotFound},
		Responses: map[string]*huma.Response{"302": {
			Description: "The link exists: go to its URL (Location). The click is recorded and link.clicked published.",
		}},
	}), func(ctx context.Context, in *redirectInput) (*redirectOutput, error) {
		target, err := s.links.Click(ctx, in.Code, links.Visit{UserAgent: in.UserAgent, Referer: in.Referer})
		if errors.Is(err, resource.ErrNotFound) {
			return nil, newProblem(http.StatusNotFound, "not-found", "no such link")
		}
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		// no-store: every click must reach us.
		return &redirectOutput{Status: http.StatusFound, Location: target, CacheControl: "no-store"}, nil
	})
	// Both headers come with every redirect; huma documents output headers
	// as optional, with their description on the schema only.
	for _, h := range api.OpenAPI().Paths["/r/{code}"].Get.Responses["302"].Headers {
		h.Required, h.Description = true, h.Schema.Description
	}
}
