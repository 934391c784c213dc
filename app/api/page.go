package api

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/resource"
)

// PageParams are the query parameters of every list. (Exported, as are
// the other embedded parameter structs, so that huma can set their fields.)
type PageParams struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"250" default:"50" doc:"Items per page."`
	Cursor string `query:"cursor" maxLength:"400" doc:"The next_cursor of the previous page; omit for the first page."`
}

func (p PageParams) query() resource.PageQuery {
	return resource.PageQuery{Limit: p.Limit, Cursor: p.Cursor}
}

// listBody is one page of a list.
type listBody[T any] struct {
	Data []T `json:"data" nullable:"false"`
	// NextCursor fetches the next page; null on the last page.
	NextCursor *string `json:"next_cursor" doc:"Pass as cursor to fetch the next page; null on the last page."`
}

type listOutput[T any] struct {
	Body listBody[T]
}

func pageOf[T any](p resource.Page[T]) *listOutput[T] {
	out := &listOutput[T]{Body: listBody[T]{Data: p.Items}}
	if out.Body.Data == nil {
		out.Body.Data = []T{}
	}
	if p.Next != "" {
		out.Body.NextCursor = &p.Next
	}
	return out
}

// bodyOutput is a response with a JSON body.
type bodyOutput[T any] struct {
	Body T
}

func body[T any](v T) *bodyOutput[T] { return &bodyOutput[T]{Body: v} }

// Path parameters carry ID patterns: a malformed ID is refused (422) before
// any query runs.
// AppPath names an application.
type AppPath struct {
	AppID string `path:"app_id" pattern:"^[A-Za-z0-9._-]{1,64}$" doc:"The application's ID (app_...) or its uid, your own ID of it."`
}

// EndpointPath names an endpoint of an application.
type EndpointPath struct {
	AppID      string `path:"app_id" pattern:"^[A-Za-z0-9._-]{1,64}$" doc:"The application's ID (app_...) or its uid, your own ID of it."`
	EndpointID string `path:"endpoint_id" pattern:"^ep_[0-9a-z]{26}$" doc:"Endpoint ID."`
}

// withErrors documents the problems op can answer with: those of
// authentication and authorization on secured operations, of request
// decoding on operations with a body, and not-found on every operation with
// a path parameter. It also bounds op's body, at maxBodyBytes unless op
// says otherwise, inclusively.
func withErrors(op huma.Operation) huma.Operation {
	// huma refuses a body once it has read MaxBodyBytes bytes of it: one
	// more lets a body of exactly the limit through.
	op.MaxBodyBytes = cmp.Or(op.MaxBodyBytes, maxBodyBytes) + 1
	add := func(codes ...int) {
		for _, c := range codes {
			if !slices.Contains(op.Errors, c) {
				op.Errors = append(op.Errors, c)
			}
		}
	}
	if len(op.Security) > 0 {
		add(http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound)
	}
	if strings.Contains(op.Path, "{") {
		add(http.StatusNotFound)
	}
	if op.Method == http.MethodPost || op.Method == http.MethodPatch || op.Method == http.MethodPut {
		add(http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType)
	}
	add(http.StatusUnprocessableEntity, http.StatusInternalServerError)
	return op
}

// describeResponse replaces the description huma gives the error response
// status of the operation method path, once registered.
func describeResponse(api huma.API, method, path string, status int, description string) {
	item := api.OpenAPI().Paths[path]
	if item == nil {
		return
	}
	var op *huma.Operation
	switch method {
	case http.MethodPost:
		op = item.Post
	case http.MethodPatch:
		op = item.Patch
	}
	if op == nil {
		return
	}
	if r := op.Responses[strconv.Itoa(status)]; r != nil {
		r.Description = description
	}
}
