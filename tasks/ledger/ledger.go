// Package ledger owns the delivery engine's tables and all of their SQL:
// deliveries (one row per event and endpoint), delivery_attempts (one row
// per HTTP request), dead_letter_retries (bulk retries and their progress),
// endpoint_recoveries (recoveries of endpoints and their progress),
// and the engine's mark on outbox events (fanned_out_at), which the
// fan-out writes, the reconciler reads and retention deletes by. Every
// other package reads and writes these rows through a Store, so a query
// plan or an index is decided here, once.
//
// It imports only bun, the outbox and the task contract: never asynq,
// Redis or the app.
package ledger

import (
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

//go:embed schema.sql
var schema string

//go:embed engine.sql
var engineSchema string

//go:embed reconcile.sql
var reconcileSchema string

//go:embed retention.sql
var retentionSchema string

//go:embed fifo.sql
var fifoSchema string

//go:embed replay.sql
var replaySchema string

// Schema returns the SQL that creates the deliveries and delivery_attempts
// tables in the current schema. Applications run it once, as one of their
// migrations.
func Schema() string { return schema }

// EngineSchema returns the SQL that brings Schema's tables to the delivery
// engine: attempt outcome classes, dead-letter lookups and bulk retries.
// Applications run it once, after Schema.
func EngineSchema() string { return engineSchema }

// ReconcileSchema returns the SQL that adds the fan-out's mark on outbox
// events, which the reconciler reads. Applications run it once, after
// EngineSchema.
func ReconcileSchema() string { return reconcileSchema }

// RetentionSchema returns the SQL that indexes attempts by age, for
// retention. Applications run it once, after ReconcileSchema.
func RetentionSchema() string { return retentionSchema }

// FIFOSchema returns the SQL that orders the deliveries of FIFO endpoints.
// Applications run it once, after RetentionSchema.
func FIFOSchema() string { return fifoSchema }

// ReplaySchema returns the SQL that steers replays: dry runs and paces of
// bulk retries, and the endpoint_recoveries table. Applications run it
// once, after FIFOSchema.
func ReplaySchema() string { return replaySchema }

// Delivery states.
const (
	StatusPending   = "pending"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
)

// ErrNotFound is returned for a delivery or a retry job that is not
// stored (never was, or deleted with its endpoint, app or event).
var ErrNotFound = errors.New("not found")

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
	// ErrorClass is the attempt's outcome class (success, http_5xx, ...).
	ErrorClass string `bun:"error_class,notnull"`
}

// Store reads and writes the engine's tables.
type Store struct {
	db *bun.DB
	// deadLettered hears the deliveries failed for good (nil: nobody).
	deadLettered DeadLetterFunc
}

// New returns a Store on db.
func New(db *bun.DB) *Store { return &Store{db: db} }

// interval is d as a Postgres interval literal.
func interval(d time.Duration) string { return fmt.Sprintf("%d milliseconds", d.Milliseconds()) }
