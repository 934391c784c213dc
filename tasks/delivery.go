package tasks

import (
	_ "embed"
	"time"

	"github.com/uptrace/bun"
)

//go:embed schema.sql
var schema string

//go:embed engine.sql
var engineSchema string

// Schema returns the SQL that creates the deliveries and delivery_attempts
// tables in the current schema. Applications run it once, as one of their
// migrations.
func Schema() string { return schema }

// EngineSchema returns the SQL that brings Schema's tables to the delivery
// engine: attempt outcome classes, dead-letter lookups and bulk retries.
// Applications run it once, after Schema.
func EngineSchema() string { return engineSchema }

// Delivery states.
const (
	StatusPending   = "pending"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
)

// Delivery is one event on its way to one endpoint.
type Delivery struct {
	bun.BaseModel `bun:"table:deliveries"`

	ID             string     `bun:"id,pk"`
	EventID        string     `bun:"event_id,notnull"`
	EndpointID     string     `bun:"endpoint_id,notnull"`
	AppID          string     `bun:"app_id,notnull"`
	EventType      string     `bun:"event_type,notnull"`
	Status         string     `bun:"status,notnull,default:'pending'"`
	Attempts       int        `bun:"attempts,notnull,default:0"`
	LastStatusCode *int       `bun:"last_status_code"`
	LastError      *string    `bun:"last_error"`
	CreatedAt      time.Time  `bun:"created_at,nullzero,notnull,default:clock_timestamp()"`
	UpdatedAt      time.Time  `bun:"updated_at,nullzero,notnull,default:clock_timestamp()"`
	SucceededAt    *time.Time `bun:"succeeded_at"`
	FailedAt       *time.Time `bun:"failed_at"`
}

// Attempt is one HTTP request of a delivery and what came of it.
type Attempt struct {
	bun.BaseModel `bun:"table:delivery_attempts"`

	ID           int64     `bun:"id,pk,autoincrement"`
	DeliveryID   string    `bun:"delivery_id,notnull"`
	AttemptedAt  time.Time `bun:"attempted_at,notnull"`
	DurationMS   float64   `bun:"duration_ms,notnull"`
	StatusCode   *int      `bun:"status_code"`
	ResponseBody *string   `bun:"response_body"`
	Error        *string   `bun:"error"`
	// ErrorClass is the attempt's outcome class (OutcomeSuccess, ...).
	ErrorClass string `bun:"error_class,notnull"`
}
