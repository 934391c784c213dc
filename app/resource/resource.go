// Package resource defines the errors that hookd's resource stores
// (registry, links) return, so that the API can map them to HTTP statuses
// without knowing each store.
package resource

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/uptrace/bun/driver/pgdriver"
)

// SQLSTATE codes the stores translate.
const (
	CodeForeignKeyViolation = "23503"
	CodeUniqueViolation     = "23505"
)

// SQLState returns the SQLSTATE code of a Postgres error, or "" for any
// other error. Stores use it to translate driver errors at their boundary.
func SQLState(err error) string {
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		return pgErr.Field('C')
	}
	return ""
}

// ErrNotFound means the resource does not exist (or is not visible to the
// caller).
var ErrNotFound = errors.New("not found")

// NotFound translates sql.ErrNoRows, a query that found no row, into
// ErrNotFound; other errors pass through.
func NotFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// ErrConflict means the request clashes with an existing resource.
var ErrConflict = errors.New("conflict")

// InvalidError reports an invalid field of a request.
type InvalidError struct {
	// Field is the JSON name of the offending field.
	Field string
	// Reason says what is wrong with it.
	Reason string
	// Violations lists each rule the field's value breaks, when it can
	// break several at once (a payload and its event type's JSON Schema);
	// Field and Reason tell the first. Nil otherwise.
	Violations []Violation
}

// Violation is one rule a request body's field breaks.
type Violation struct {
	// Field is the JSON name of the offending field, e.g. payload/amount.
	Field string
	// Reason says which rule it breaks.
	Reason string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Invalid returns an *InvalidError for field.
func Invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// QuotaError reports a request refused because it would take a tenant past
// one of its limits. The API answers it with 422 and its Detail.
type QuotaError struct {
	// Detail names the limit, e.g. "an app may have at most 1000
	// endpoints (HOOKD_MAX_ENDPOINTS_PER_APP)".
	Detail string
}

func (e *QuotaError) Error() string { return e.Detail }
