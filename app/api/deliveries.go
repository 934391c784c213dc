package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/events"
)

type deliveryPath struct {
	AppID      string `path:"app_id" pattern:"^[A-Za-z0-9._-]{1,64}$" doc:"The application's ID (app_...) or its uid, your own ID of it."`
	DeliveryID string `path:"delivery_id" pattern:"^dlv_[0-9a-z]{26}$" doc:"Delivery ID."`
}

type listDeliveriesInput struct {
	AppPath
	PageParams
	Status     string    `query:"status" enum:"pending,succeeded,failed" doc:"Only deliveries in this state."`
	EndpointID string    `query:"endpoint_id" maxLength:"64" doc:"Only deliveries to this endpoint."`
	EventID    string    `query:"event_id" maxLength:"64" doc:"Only deliveries of this event."`
	EventType  string    `query:"event_type" maxLength:"128" doc:"Only deliveries of events of this type."`
	Since      time.Time `query:"since" doc:"Only deliveries created at or after this time (RFC 3339)."`
	Until      time.Time `query:"until" doc:"Only deliveries created before this time (RFC 3339)."`
}

func (s *Server) registerDeliveries(api huma.API) {
	tags := []string{"Deliveries"}
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "list-deliveries", Method: http.MethodGet, Path: "/v1/apps/{app_id}/deliveries", Tags: tags,
		Summary: "List deliveries", Description: "One delivery per event and endpoint, newest first.", Security: bearer(),
	}), func(ctx context.Context, in *listDeliveriesInput) (*listOutput[events.Delivery], error) {
		p, err := s.events.Deliveries(ctx, in.AppID, events.DeliveryFilter{
			Status: in.Status, EndpointID: in.EndpointID, EventID: in.EventID, EventType: in.EventType,
			Since: in.Since, Until: in.Until,
		}, in.query())
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return pageOf(p), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "get-delivery", Method: http.MethodGet, Path: "/v1/apps/{app_id}/deliveries/{delivery_id}", Tags: tags,
		Summary: "Get a delivery", Description: "With its attempts, oldest first.", Security: bearer(),
	}), func(ctx context.Context, in *deliveryPath) (*bodyOutput[events.Delivery], error) {
		d, err := s.events.Delivery(ctx, in.AppID, in.DeliveryID)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(d), nil
	})
}
