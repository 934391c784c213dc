// Package signature signs webhook messages as the Standard Webhooks
// specification describes: an HMAC-SHA256 over "id.timestamp.body", sent as
// "v1,<base64>" in the webhook-signature header, with secrets written as
// "whsec_<base64>"; or, in the asymmetric scheme, an ed25519 signature of
// the same content, sent as "v1a,<base64>", with "whsk_" private and
// "whpk_" public keys. A receiver checks them with a Verifier.
package signature

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names defined by Standard Webhooks.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret's text form.
const SecretPrefix = "whsec_"

// secretSize is the number of random bytes in a new secret (the spec allows
// 24 to 64).
const secretSize = 32

// ErrInvalidSecret is returned by ParseSecret for text that is not a
// "whsec_" secret.
var ErrInvalidSecret = errors.New("invalid webhook secret")

// NewSecret returns a new random secret in its "whsec_" text form.
func NewSecret() string {
	key := make([]byte, secretSize)
	_, _ = rand.Read(key) // crypto/rand.Read never fails on supported platforms.
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// ParseSecret returns the key bytes of a "whsec_" secret.
func ParseSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: missing %q prefix", ErrInvalidSecret, SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSecret, err)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("%w: key is %d bytes, want 24 to 64", ErrInvalidSecret, len(key))
	}
	return key, nil
}

// Sign returns the "v1,<base64>" signature of a message with the given id,
// timestamp and body under key.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(sum(key, id, ts.Unix(), body))
}

// sum returns the HMAC-SHA256 of "id.unix.body" under key.
func sum(key []byte, id string, unix int64, body []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, unix, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(nil)
}

// Header returns the webhook-signature header value: one signature per key,
// separated by spaces, so that a receiver holding any of the keys (the old
// or the new one during a rotation) can verify the message.
func Header(keys [][]byte, id string, ts time.Time, body []byte) string {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = Sign(k, id, ts, body)
	}
	return strings.Join(sigs, " ")
}
