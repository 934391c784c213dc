package registry

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hookd/hookd/app/filter"
	"github.com/hookd/hookd/tasks/delivery"
	"github.com/hookd/hookd/tasks/fanout"
	"github.com/hookd/hookd/tasks/recovery"
	"github.com/hookd/hookd/tasks/signature"
)

// Subscribers returns the enabled endpoints of app appID subscribed to
// eventType whose filter, if any, matches payload. It is the fan-out's
// fanout.SubscribersFunc; Cache.Subscribers serves it from memory.
func (r *Registry) Subscribers(ctx context.Context, appID, eventType string, payload json.RawMessage) ([]fanout.Subscriber, error) {
	subs, err := r.subscriptions(ctx, appID, eventType)
	if err != nil {
		return nil, err
	}
	return r.matching(ctx, appID, eventType, subs, payload), nil
}

// subscription is an enabled endpoint subscribed to an event type, with
// its filter parsed (nil: every event).
type subscription struct {
	endpointID string
	fifo       bool
	filter     *filter.Filter
}

// subscriptions returns the enabled endpoints of app appID subscribed to
// eventType, in ID order.
func (r *Registry) subscriptions(ctx context.Context, appID, eventType string) ([]subscription, error) {
	var rows []struct {
		ID       string          `bun:"id"`
		Filter   json.RawMessage `bun:"filter,type:json"`
		Ordering string          `bun:"ordering"`
	}
	err := r.db.NewSelect().Model((*Endpoint)(nil)).Column("id", "filter", "ordering").
		Where("app_id = ?", appID).
		Where("NOT disabled").
		Where("(cardinality(event_types) = 0 OR ? = ANY(event_types))", eventType).
		OrderExpr("id").
		Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("find subscribers: %w", err)
	}
	subs := make([]subscription, 0, len(rows))
	for _, row := range rows {
		sub := subscription{endpointID: row.ID, fifo: row.Ordering == OrderingFIFO}
		if len(row.Filter) > 0 {
			f, err := filter.ParseStored(row.Filter)
			if err != nil {
				// Stored filters were validated; one that no longer parses
				// (a stricter hookd) selects nothing rather than everything.
				r.log.WarnContext(ctx, "stored filter does not parse: the endpoint receives no events",
					slog.String("app_id", appID), slog.String("endpoint_id", row.ID), slog.Any("err", err))
				continue
			}
			sub.filter = f
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// matching returns the subscriptions whose filter accepts
// payload, which is decoded at most once. A filter that needs more than
// filter.DefaultBudget steps on the payload does not accept it: that is
// logged and counted (hookd_filter_budget_exceeded_total).
func (r *Registry) matching(ctx context.Context, appID, eventType string, subs []subscription, payload json.RawMessage) []fanout.Subscriber {
	ids := make([]fanout.Subscriber, 0, len(subs))
	var (
		doc     any
		decoded bool
		valid   bool
	)
	for _, sub := range subs {
		if sub.filter != nil {
			if !decoded {
				doc, valid = decodePayload(payload)
				decoded = true
			}
			if !valid {
				continue
			}
			match, steps, err := sub.filter.Eval(doc, 0)
			if errors.Is(err, filter.ErrBudget) {
				r.overBudget.Inc()
				r.log.WarnContext(ctx, "filter over its step budget: the endpoint does not receive the event",
					slog.String("app_id", appID), slog.String("endpoint_id", sub.endpointID),
					slog.String("event_type", eventType), slog.Int("steps", steps))
			}
			if !match {
				continue
			}
		}
		ids = append(ids, fanout.Subscriber{EndpointID: sub.endpointID, FIFO: sub.fifo})
	}
	return ids
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
// headers, state, live signing keys, and its TLS material and OAuth
// credentials, opened. It is the deliverer's
// delivery.EndpointFunc; Cache.DeliveryEndpoint serves it from memory.
func (r *Registry) DeliveryEndpoint(ctx context.Context, id string) (delivery.Endpoint, error) {
	e, err := r.deliveryEndpoint(ctx, id)
	if err != nil {
		return delivery.Endpoint{}, err
	}
	return e.at(time.Now()), nil
}

// deliveryEndpoint is an endpoint as the deliverer sees it, with the
// expiry of each signing key, so that it can be kept.
type deliveryEndpoint struct {
	ep   delivery.Endpoint // Keys unset: at fills them in
	keys []signingKey      // newest first
}

// signingKey is one live key, parsed once: an HMAC secret (key) or an
// ed25519 private key (priv).
type signingKey struct {
	key     []byte
	priv    ed25519.PrivateKey
	expires *time.Time
}

// at returns the endpoint with the keys live at now: the newest
// MaxLiveSecrets.
func (e deliveryEndpoint) at(now time.Time) delivery.Endpoint {
	ep := e.ep
	ep.Keys = make([][]byte, 0, min(len(e.keys), MaxLiveSecrets))
	for _, k := range e.keys {
		if len(ep.Keys)+len(ep.Ed25519Keys) == MaxLiveSecrets {
			break
		}
		if k.expires != nil && !k.expires.After(now) {
			continue
		}
		if k.priv != nil {
			ep.Ed25519Keys = append(ep.Ed25519Keys, k.priv)
		} else {
			ep.Keys = append(ep.Keys, k.key)
		}
	}
	return ep
}

func (r *Registry) deliveryEndpoint(ctx context.Context, id string) (deliveryEndpoint, error) {
	var ep Endpoint
	err := r.db.NewSelect().Model(&ep).Column("id", "app_id", "url", "headers", "disabled", "rate_limit", "failing_since", "event_types",
		"tls_client_certificate", colClientKey, "tls_ca_bundle",
		"oauth_token_url", "oauth_client_id", colClientSecret, "oauth_scopes", "oauth_audience").
		Where("id = ?", id).Scan(ctx)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return deliveryEndpoint{}, fmt.Errorf("endpoint %s: %w", id, delivery.ErrEndpointGone)
		}
		return deliveryEndpoint{}, fmt.Errorf("get endpoint %s: %w", id, err)
	}
	var secrets []endpointSecret
	err = r.db.NewSelect().Model(&secrets).Column("id", "secret", "expires_at").
		Where("endpoint_id = ?", id).
		Where("expires_at IS NULL OR expires_at > clock_timestamp()").
		OrderExpr("id DESC").Limit(MaxLiveSecrets).
		Scan(ctx)
	if err != nil {
		return deliveryEndpoint{}, fmt.Errorf("get secrets of endpoint %s: %w", id, err)
	}
	keys := make([]signingKey, 0, len(secrets))
	for _, s := range secrets {
		k := signingKey{expires: s.ExpiresAt}
		secret, err := r.openSecret(id, s)
		if err != nil {
			return deliveryEndpoint{}, err
		}
		if schemeOf(secret) == SchemeEd25519 {
			k.priv, err = signature.ParsePrivateKey(secret)
		} else {
			k.key, err = signature.ParseSecret(secret)
		}
		if err != nil {
			return deliveryEndpoint{}, fmt.Errorf("endpoint %s: %w", id, err)
		}
		keys = append(keys, k)
	}
	rate := 0
	if ep.RateLimit != nil {
		rate = *ep.RateLimit
	}
	clientTLS, oauth, err := r.deliveryAuth(&ep)
	if err != nil {
		return deliveryEndpoint{}, err
	}
	return deliveryEndpoint{
		ep: delivery.Endpoint{
			ID: ep.ID, AppID: ep.AppID, URL: ep.URL, Headers: ep.Headers, Disabled: ep.Disabled, RateLimit: rate,
			Failing: ep.FailingSince != nil, TLS: clientTLS, OAuth: oauth, EventTypes: ep.EventTypes,
		},
		keys: keys,
	}, nil
}

// RecoveryTarget returns endpoint id as a recovery sees it: its app,
// creation, state, ordering, event types and filter. It is the recovery's
// recovery.TargetFunc. A filter is matched as the fan-out matches it.
func (r *Registry) RecoveryTarget(ctx context.Context, id string) (recovery.Target, error) {
	var ep Endpoint
	err := r.db.NewSelect().Model(&ep).Column("id", "app_id", "event_types", "filter", "disabled", "ordering", "created_at").Where("id = ?", id).Scan(ctx)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return recovery.Target{}, fmt.Errorf("endpoint %s: %w", id, recovery.ErrGone)
		}
		return recovery.Target{}, fmt.Errorf("get endpoint %s: %w", id, err)
	}
	t := recovery.Target{
		AppID: ep.AppID, CreatedAt: ep.CreatedAt, Disabled: ep.Disabled, EventTypes: ep.EventTypes,
		FIFO: ep.Ordering == OrderingFIFO,
	}
	if len(ep.Filter) > 0 && string(ep.Filter) != "null" {
		f, err := filter.ParseStored(ep.Filter)
		if err != nil {
			r.log.WarnContext(ctx, "stored filter does not parse: the endpoint receives no events",
				slog.String("app_id", ep.AppID), slog.String("endpoint_id", id), slog.Any("err", err))
		}
		sub := []subscription{{endpointID: id, filter: f}}
		t.Accepts = func(ctx context.Context, eventType string, payload json.RawMessage) bool {
			return f != nil && len(r.matching(ctx, ep.AppID, eventType, sub, payload)) == 1
		}
	}
	return t, nil
}
