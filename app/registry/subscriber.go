package registry

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hookd/hookd/app/filter"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/signature"
)

// Subscribers returns the enabled endpoints of app appID subscribed to
// eventType whose filter, if any, matches payload. It is the fan-out's
// tasks.SubscribersFunc.
func (r *Registry) Subscribers(ctx context.Context, appID, eventType string, payload json.RawMessage) ([]string, error) {
	var rows []struct {
		ID     string          `bun:"id"`
		Filter json.RawMessage `bun:"filter,type:json"`
	}
	err := r.db.NewSelect().Model((*Endpoint)(nil)).Column("id", "filter").
		Where("app_id = ?", appID).
		Where("NOT disabled").
		Where("(cardinality(event_types) = 0 OR ? = ANY(event_types))", eventType).
		OrderExpr("id").
		Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("find subscribers: %w", err)
	}
	ids := make([]string, 0, len(rows))
	var (
		doc     any
		decoded bool
		valid   bool
	)
	for _, row := range rows {
		if len(row.Filter) > 0 {
			f, err := filter.Parse(row.Filter)
			if err != nil {
				// Stored filters were validated; one that no longer parses
				// (a stricter hookd) selects nothing rather than everything.
				continue
			}
			if !decoded {
				doc, valid = decodePayload(payload)
				decoded = true
			}
			if !valid || !f.MatchValue(doc) {
				continue
			}
		}
		ids = append(ids, row.ID)
	}
	return ids, nil
}

// decodePayload decodes a payload once for every filter, numbers exact.
// An invalid payload matches no filter.
func decodePayload(payload json.RawMessage) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return doc, true
}

// DeliveryEndpoint returns what the deliverer needs of an endpoint: its URL,
// headers, state and live signing keys. It is the deliverer's
// tasks.EndpointFunc.
func (r *Registry) DeliveryEndpoint(ctx context.Context, id string) (tasks.Endpoint, error) {
	var ep Endpoint
	if err := r.db.NewSelect().Model(&ep).Column("id", "url", "headers", "disabled", "rate_limit").Where("id = ?", id).Scan(ctx); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return tasks.Endpoint{}, fmt.Errorf("endpoint %s: %w", id, tasks.ErrEndpointGone)
		}
		return tasks.Endpoint{}, fmt.Errorf("get endpoint %s: %w", id, err)
	}
	var secrets []string
	err := r.db.NewSelect().Model((*endpointSecret)(nil)).Column("secret").
		Where("endpoint_id = ?", id).
		Where("expires_at IS NULL OR expires_at > clock_timestamp()").
		OrderExpr("id DESC").
		Scan(ctx, &secrets)
	if err != nil {
		return tasks.Endpoint{}, fmt.Errorf("get secrets of endpoint %s: %w", id, err)
	}
	keys := make([][]byte, 0, len(secrets))
	for _, s := range secrets {
		k, err := signature.ParseSecret(s)
		if err != nil {
			return tasks.Endpoint{}, fmt.Errorf("endpoint %s: %w", id, err)
		}
		keys = append(keys, k)
	}
	rate := 0
	if ep.RateLimit != nil {
		rate = *ep.RateLimit
	}
	return tasks.Endpoint{ID: ep.ID, URL: ep.URL, Headers: ep.Headers, Keys: keys, Disabled: ep.Disabled, RateLimit: rate}, nil
}
