// Package resource defines the errors that hookd's resource stores
// (registry, links) return, so that the API can map them to HTTP statuses
// without knowing each store.
package resource

import (
	"errors"
	"fmt"
)

// ErrNotFound means the resource does not exist (or is not visible to the
// caller).
var ErrNotFound = errors.New("not found")

// ErrConflict means the request clashes with an existing resource.
var ErrConflict = errors.New("conflict")

// InvalidError reports an invalid field of a request.
type InvalidError struct {
	// Field is the JSON name of the offending field.
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Invalid returns an *InvalidError for field.
func Invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
