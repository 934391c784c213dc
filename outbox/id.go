package outbox

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"time"
)

// crockford is the lower-case Crockford base32 alphabet used by ULIDs: it
// sorts like the bytes it encodes and avoids easily confused letters.
var crockford = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewID returns a new identifier made of prefix, an underscore and a 26
// character ULID (48 bits of milliseconds, 80 random bits), for example
// "evt_01jdx3q6m2v7k9c8r5t4w3y2z1". IDs with the same prefix sort by creation
// time. Every hookd resource uses this scheme with its own prefix.
func NewID(prefix string) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails on supported platforms.
	return prefix + "_" + crockford.EncodeToString(b[:])
}

// IDAt returns the smallest ID with prefix that NewID could return at t:
// every ID made before t sorts before it, so it bounds a range scan of the
// primary key by time.
func IDAt(prefix string, t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	return prefix + "_" + crockford.EncodeToString(b[:])
}
