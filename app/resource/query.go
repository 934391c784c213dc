package resource

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bounds of the times a list may be filtered by: RFC 3339's years, in UTC.
// Postgres has no year 0, which RFC 3339 parses (0000-01-01T00:00:00Z, or
// year 1 at a positive offset).
var (
	MinFilterTime = time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)
	MaxFilterTime = time.Date(9999, time.December, 31, 23, 59, 59, 999999999, time.UTC)
)

// FilterText checks a name or ID a list is filtered by, which is compared
// with stored text: it must be valid UTF-8 without control characters.
// Postgres refuses NUL and invalid UTF-8, and no name or ID holds a control
// character. "" (no filter) is fine.
func FilterText(field, v string) error {
	if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return Invalid(field, "must be valid UTF-8 without control characters")
	}
	return nil
}

// FilterTime checks a time a list is filtered by: the zero time (no
// filter) or one within [MinFilterTime, MaxFilterTime].
func FilterTime(field string, t time.Time) error {
	if !t.IsZero() && (t.Before(MinFilterTime) || t.After(MaxFilterTime)) {
		return Invalid(field, "must be a time from %s to %s", MinFilterTime.Format(time.RFC3339), MaxFilterTime.Format(time.RFC3339))
	}
	return nil
}
