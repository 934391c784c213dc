// Package operational publishes hookd's operational webhooks: events that
// tell operators of changes in the state of endpoints (failing, recovered,
// disabled, enabled) and of deliveries that failed for good, published
// into one application (HOOKD_OPERATIONAL_APP) through the outbox, inside
// the transaction that makes the change, so that operators subscribe
// endpoints to them like to any other event. It declares their event
// types with their JSON Schemas.
//
// It must not import the api package.
package operational

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"

	"github.com/hookd/hookd/app/registry"
	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks/ledger"
)

// Event types of the operational webhooks.
const (
	TypeEndpointDisabled  = "hookd.endpoint.disabled"
	TypeEndpointEnabled   = "hookd.endpoint.enabled"
	TypeEndpointFailing   = "hookd.endpoint.failing"
	TypeEndpointRecovered = "hookd.endpoint.recovered"
	TypeDeliveryExhausted = "hookd.delivery.exhausted"
)

// Triggers of an endpoint's disabling.
const (
	TriggerAutomatic = "automatic"
	TriggerManual    = "manual"
)

// maxErrorBytes bounds the error texts an event carries.
const maxErrorBytes = 500

// Publisher publishes the operational webhooks into one app. Changes of
// that app's own endpoints and deliveries publish nothing: an operational
// webhook never causes another.
type Publisher struct {
	appID     string
	published *prometheus.CounterVec
}

// New returns a Publisher into app appID, counting what it publishes on
// reg (when not nil).
func New(appID string, reg prometheus.Registerer) *Publisher {
	p := &Publisher{
		appID: appID,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_operational_events_total",
			Help: "Operational webhooks written to the outbox, by type (with the change that caused each; a change rolled back after the write counts too).",
		}, []string{"type"}),
	}
	for _, t := range []string{TypeEndpointDisabled, TypeEndpointEnabled, TypeEndpointFailing, TypeEndpointRecovered, TypeDeliveryExhausted} {
		p.published.WithLabelValues(t)
	}
	if reg != nil {
		reg.MustRegister(p.published)
	}
	return p
}

// AppID returns the ID of the app the operational webhooks go to.
func (p *Publisher) AppID() string { return p.appID }

// EndpointPayload is the data of the hookd.endpoint.* events.
type EndpointPayload struct {
	AppID      string `json:"app_id"`
	EndpointID string `json:"endpoint_id"`
	// Trigger (disabled only) tells a disabling by hookd (410 Gone, a
	// failing streak) from one through the API.
	Trigger string `json:"trigger,omitempty"`
	// Reason is what the failed attempt got (failing) or why the endpoint
	// was disabled (disabled).
	Reason string `json:"reason,omitempty"`
	// FailingSince began the failing streak (null when none ran).
	FailingSince *time.Time `json:"failing_since"`
	DisabledAt   *time.Time `json:"disabled_at,omitempty"`
	EnabledAt    *time.Time `json:"enabled_at,omitempty"`
	RecoveredAt  *time.Time `json:"recovered_at,omitempty"`
}

// EndpointChanged publishes the event of c inside tx: the
// registry.EndpointChangeFunc of the registry.
func (p *Publisher) EndpointChanged(ctx context.Context, tx bun.Tx, c registry.EndpointChange) error {
	if c.AppID == p.appID {
		return nil
	}
	at := c.At.UTC()
	data := EndpointPayload{AppID: c.AppID, EndpointID: c.EndpointID, FailingSince: utc(c.FailingSince)}
	var typ string
	switch c.Kind {
	case registry.ChangeFailing:
		typ, data.Reason = TypeEndpointFailing, scrub(c.Reason)
	case registry.ChangeRecovered:
		typ, data.RecoveredAt = TypeEndpointRecovered, &at
	case registry.ChangeDisabled:
		typ, data.Reason, data.DisabledAt, data.Trigger = TypeEndpointDisabled, scrub(c.Reason), &at, TriggerAutomatic
		if c.Manual {
			data.Trigger = TriggerManual
		}
	case registry.ChangeEnabled:
		typ, data.EnabledAt = TypeEndpointEnabled, &at
	default:
		return fmt.Errorf("operational webhook of unknown endpoint change %q", c.Kind)
	}
	msg, err := p.message(typ, data)
	if err != nil {
		return err
	}
	return p.publish(ctx, tx, msg)
}

// ExhaustedPayload is the data of hookd.delivery.exhausted.
type ExhaustedPayload struct {
	AppID          string  `json:"app_id"`
	EndpointID     string  `json:"endpoint_id"`
	DeliveryID     string  `json:"delivery_id"`
	EventID        string  `json:"event_id"`
	EventType      string  `json:"event_type"`
	Attempts       int     `json:"attempts"`
	LastError      *string `json:"last_error"`
	LastStatusCode *int    `json:"last_status_code"`
}

// DeadLettered publishes a hookd.delivery.exhausted event for each of ds
// inside tx: the ledger.DeadLetterFunc of the ledger.
func (p *Publisher) DeadLettered(ctx context.Context, tx bun.Tx, ds []ledger.DeadLetter) error {
	msgs := make([]*outbox.Message, 0, len(ds))
	for _, d := range ds {
		if d.AppID == p.appID {
			continue
		}
		data := ExhaustedPayload{
			AppID: d.AppID, EndpointID: d.EndpointID, DeliveryID: d.ID, EventID: d.EventID, EventType: d.EventType,
			Attempts: d.Attempts, LastStatusCode: d.LastStatusCode,
		}
		if d.LastError != nil {
			e := scrub(*d.LastError)
			data.LastError = &e
		}
		msg, err := p.message(TypeDeliveryExhausted, data)
		if err != nil {
			return err
		}
		msgs = append(msgs, msg)
	}
	return p.publish(ctx, tx, msgs...)
}

// message is an event of type typ with data into the operational app.
func (p *Publisher) message(typ string, data any) (*outbox.Message, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return &outbox.Message{Tenant: p.appID, Topic: typ, Payload: b}, nil
}

// publish writes msgs to the outbox inside tx and counts them.
func (p *Publisher) publish(ctx context.Context, tx bun.Tx, msgs ...*outbox.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := outbox.Publish(ctx, tx, msgs...); err != nil {
		return fmt.Errorf("publish operational webhooks: %w", err)
	}
	for _, m := range msgs {
		p.published.WithLabelValues(m.Topic).Inc()
	}
	return nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// scrub returns an error text as an operational webhook carries it: at
// most maxErrorBytes, with the addresses hookd dialed (a connection
// refused names one) left out, since they would map the networks hookd
// reaches for whoever receives the operational webhooks.
func scrub(s string) string {
	if len(s) > maxErrorBytes {
		s = strings.ToValidUTF8(s[:maxErrorBytes], "") + "…"
	}
	words := strings.Split(s, " ")
	for i, w := range words {
		// A connection's error names both ends: local->remote.
		ends := strings.Split(w, "->")
		for j, e := range ends {
			bare := strings.TrimLeft(strings.TrimRight(e, ":,;)"), "(")
			if isAddress(bare) {
				ends[j] = strings.Replace(e, bare, "[address]", 1)
			}
		}
		words[i] = strings.Join(ends, "->")
	}
	return strings.Join(words, " ")
}

// isAddress reports whether s is an IP address, with or without a port.
func isAddress(s string) bool {
	if _, err := netip.ParseAddrPort(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}
