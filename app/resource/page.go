package resource

import (
	"encoding/base64"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Page limits.
const (
	DefaultLimit = 50
	MaxLimit     = 250
)

// PageQuery selects one page of a list: at most Limit items after the
// position Cursor names ("" for the first page).
type PageQuery struct {
	Limit  int
	Cursor string
}

// Key decodes the cursor into the sort key of the last item of the previous
// page, or "" for the first page.
func (q PageQuery) Key() (string, error) {
	if q.Cursor == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
	if err != nil || len(b) == 0 || len(b) > 256 || !utf8.Valid(b) || strings.ContainsFunc(string(b), unicode.IsControl) {
		return "", Invalid("cursor", "is not a cursor this API returned")
	}
	return string(b), nil
}

// Size returns the page size, Limit clamped to [1, MaxLimit].
func (q PageQuery) Size() int {
	switch {
	case q.Limit <= 0:
		return DefaultLimit
	case q.Limit > MaxLimit:
		return MaxLimit
	}
	return q.Limit
}

// Page is one page of items; Next is the cursor of the following page, or
// "" on the last page.
type Page[T any] struct {
	Items []T
	Next  string
}

// NewPage trims items, fetched with limit Size()+1, to one page and derives
// the next cursor from the last item's sort key.
func NewPage[T any](q PageQuery, items []T, key func(T) string) Page[T] {
	if len(items) <= q.Size() {
		return Page[T]{Items: items}
	}
	items = items[:q.Size()]
	return Page[T]{Items: items, Next: base64.RawURLEncoding.EncodeToString([]byte(key(items[len(items)-1])))}
}

// Fetch is how many items a store reads for one page: one more than Size,
// to learn whether a next page exists.
func (q PageQuery) Fetch() int64 { return int64(q.Size()) + 1 }
