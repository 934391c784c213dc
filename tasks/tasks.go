// Package tasks owns hookd's asynq tasks: their type names and payloads, the
// Queue that enqueues them (and is the outbox's Publisher), the fan-out and
// delivery handlers, the retry policy, the deliveries tables and the worker
// that serves them. Sub-packages hold the ideas they use: guard (admission:
// rate limits, circuits, in-flight slots per endpoint and per app, waiting
// rooms, backlogs), body (webhook bodies, held once per event) and
// signature (Standard Webhooks).
//
// It never imports the app: it reads endpoints through the small function
// types it declares (SubscribersFunc, EndpointFunc).
package tasks

import (
	"encoding/json"
	"time"
)

// Task type names.
const (
	// TypeFanout turns one event into one delivery per subscribed endpoint.
	TypeFanout = "event:fanout"
	// TypeDeliver POSTs one event to one endpoint.
	TypeDeliver = "webhook:deliver"
	// TypeRetryDeadLetters retries the dead letters a filter selects, in
	// batches, recording its progress.
	TypeRetryDeadLetters = "deadletters:retry"
)

// Default queue names.
const (
	QueueEvents     = "events"
	QueueDeliveries = "deliveries"
)

// FanoutPayload is the payload of a TypeFanout task: the event as the
// outbox holds it.
type FanoutPayload struct {
	EventID   string          `json:"event_id"`
	AppID     string          `json:"app_id"`
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data"`
	CreatedAt time.Time       `json:"created_at"`
}

// DeliverPayload is the payload of a TypeDeliver task: which event goes to
// which endpoint. The body is not in it: the worker encodes it once per
// event (tasks/body), so that Redis, archived dead letters and the worker's
// memory hold it once whatever the fan-out.
type DeliverPayload struct {
	DeliveryID string `json:"delivery_id"`
	EventID    string `json:"event_id"`
	EndpointID string `json:"endpoint_id"`
	AppID      string `json:"app_id"`
	// Attempts counts the attempts made before this task: the fan-out's
	// first attempt, whose failure enqueued it.
	Attempts int `json:"attempts,omitempty"`
	// CreatedAt is when the event was written to the outbox, for the
	// end-to-end latency metric.
	CreatedAt time.Time `json:"created_at,omitzero"`
}
