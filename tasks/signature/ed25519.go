package signature

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Key prefixes of the asymmetric (v1a, ed25519) scheme of Standard
// Webhooks: the sender signs with a "whsk_" private key, receivers verify
// with the matching "whpk_" public key.
const (
	PrivateKeyPrefix = "whsk_"
	PublicKeyPrefix  = "whpk_"
)

// ErrInvalidKey is returned by ParsePrivateKey and ParsePublicKey for text
// that is not a key of theirs.
var ErrInvalidKey = errors.New("invalid ed25519 webhook key")

// NewPrivateKey returns a new random ed25519 private key in its "whsk_"
// text form: the standard base64 of the 64-byte key (seed, then public key).
func NewPrivateKey() string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader) // crypto/rand never fails on supported platforms.
	return PrivateKeyPrefix + base64.StdEncoding.EncodeToString(priv)
}

// ParsePrivateKey returns the key of a "whsk_" private key, written as the
// standard base64 of a 64-byte ed25519 private key (seed, then public key,
// which must match the seed) or of a 32-byte seed.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	b64, ok := strings.CutPrefix(s, PrivateKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: missing %q prefix", ErrInvalidKey, PrivateKeyPrefix)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		priv := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
		if !bytes.Equal(priv[ed25519.SeedSize:], b[ed25519.SeedSize:]) {
			return nil, fmt.Errorf("%w: public half does not match the seed", ErrInvalidKey)
		}
		return priv, nil
	}
	return nil, fmt.Errorf("%w: key is %d bytes, want %d or %d", ErrInvalidKey, len(b), ed25519.SeedSize, ed25519.PrivateKeySize)
}

// ParsePublicKey returns the key of a "whpk_" public key: the standard
// base64 of a 32-byte ed25519 public key.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b64, ok := strings.CutPrefix(s, PublicKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: missing %q prefix", ErrInvalidKey, PublicKeyPrefix)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: key is %d bytes, want %d", ErrInvalidKey, len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// PublicKey returns the "whpk_" text form of priv's public key.
func PublicKey(priv ed25519.PrivateKey) string {
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
}

// SignEd25519 returns the "v1a,<base64>" signature of a message with the
// given id, timestamp and body under priv: the ed25519 signature of
// "id.unix.body".
func SignEd25519(priv ed25519.PrivateKey, id string, ts time.Time, body []byte) string {
	return "v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(priv, content(id, ts.Unix(), body)))
}

// content returns the signed content of a message: "id.unix.body".
func content(id string, unix int64, body []byte) []byte {
	b := make([]byte, 0, len(id)+21+len(body))
	b = append(b, id...)
	b = append(b, '.')
	b = strconv.AppendInt(b, unix, 10)
	b = append(b, '.')
	return append(b, body...)
}

// Keys are the signing keys of an endpoint: HMAC secrets (v1) and ed25519
// private keys (v1a). Both kinds are present while a rotation switches an
// endpoint from one scheme to the other.
type Keys struct {
	HMAC    [][]byte
	Ed25519 []ed25519.PrivateKey
}

// Len returns the number of keys.
func (k Keys) Len() int { return len(k.HMAC) + len(k.Ed25519) }

// HeaderOf returns the webhook-signature header value signed with every key
// of k: the v1 signatures, then the v1a ones, separated by spaces.
func HeaderOf(k Keys, id string, ts time.Time, body []byte) string {
	sigs := make([]string, 0, k.Len())
	if len(k.HMAC) > 0 {
		sigs = append(sigs, Header(k.HMAC, id, ts, body))
	}
	for _, priv := range k.Ed25519 {
		sigs = append(sigs, SignEd25519(priv, id, ts, body))
	}
	return strings.Join(sigs, " ")
}
