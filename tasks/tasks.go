// Package tasks is the contract of hookd's asynq tasks: their type names,
// queues and payloads, the retry policy and the errors that postpone a
// task, and the Queue, the one place that talks to asynq's Redis keys
// (enqueues, lookups, wakes, archives; it is the outbox's Publisher).
//
// The engine's ideas live in sub-packages, each importing this one:
// fanout (an event into deliveries), delivery (one signed POST, recorded),
// guard (admission: rate limits, circuits, in-flight slots per endpoint and
// per app, waiting rooms, backlogs), body (webhook bodies, held once per
// event), signature (Standard Webhooks), ledger (the engine's tables and
// all their SQL), deadletter (retries of failed deliveries), repair (the
// reconciler and retention) and worker (the asynq servers that run the
// handlers).
//
// It never imports the app, nor any of its sub-packages but guard.
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
	// TypeRecoverEndpoint sends an endpoint the events of a time range it
	// has not received, in batches, recording its progress.
	TypeRecoverEndpoint = "endpoint:recover"
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

// RetryJobPayload is the payload of a TypeRetryDeadLetters task: the bulk
// retry it performs, whose progress Postgres holds.
type RetryJobPayload struct {
	JobID string `json:"job_id"`
}

// RecoveryPayload is the payload of a TypeRecoverEndpoint task: the
// recovery it performs, whose progress Postgres holds.
type RecoveryPayload struct {
	RecoveryID string `json:"recovery_id"`
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
