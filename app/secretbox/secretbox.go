// Package secretbox seals secrets stored at rest (endpoint signing keys;
// later client keys and OAuth client secrets) with AES-256-GCM under a key
// ring, and opens them again. It knows nothing of where the secrets live:
// the owner of each table calls Seal before it writes and Open after it
// reads, passing the row's identity as additional data so that a sealed
// value copied to another row does not open there.
//
// It imports only the standard library.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Prefix starts every sealed value; a stored value without it is plain
// (written before a key was set).
const Prefix = "enc:"

// version is the format of the sealed values this package writes:
// "enc:v1:<key id>:<base64(nonce || ciphertext)>", standard base64.
const version = "v1"

// KeySize is the size of a ring key in bytes (AES-256).
const KeySize = 32

// Errors of Open.
var (
	// ErrUnknownKey means the value was sealed by a key the ring does not
	// hold.
	ErrUnknownKey = errors.New("sealed by a key not in the key ring")
	// ErrNoKey means the value is sealed and there is no key ring.
	ErrNoKey = errors.New("sealed but no key is set")
	// ErrCorrupt means the value does not open: tampered with, moved
	// from another row, or not a sealed value of this format.
	ErrCorrupt = errors.New("sealed value does not open (tampered with or moved)")
)

type key struct {
	id   string
	aead cipher.AEAD
}

// Ring is an ordered set of keys: the first seals, every one opens. A nil
// *Ring is a ring without keys: Seal returns the secret as it is, and Open
// opens only plain values.
type Ring struct {
	keys []key
}

// ParseRing reads a comma-separated list of keys, each 32 bytes in
// standard base64 (openssl rand -base64 32 makes one). It returns nil for
// "". Its errors never include the keys.
func ParseRing(s string) (*Ring, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	r := &Ring{}
	for i, f := range strings.Split(s, ",") {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("key %d: want the standard base64 of %d random bytes (openssl rand -base64 32)", i+1, KeySize)
		}
		k, err := newKey(b)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		for _, o := range r.keys {
			if o.id == k.id {
				return nil, fmt.Errorf("key %d: given twice", i+1)
			}
		}
		r.keys = append(r.keys, k)
	}
	return r, nil
}

// NewRing returns a ring of raw keys, each KeySize bytes; the first seals.
func NewRing(keys ...[]byte) (*Ring, error) {
	r := &Ring{}
	for i, b := range keys {
		k, err := newKey(b)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		r.keys = append(r.keys, k)
	}
	if len(r.keys) == 0 {
		return nil, errors.New("no key")
	}
	return r, nil
}

func newKey(b []byte) (key, error) {
	if len(b) != KeySize {
		return key{}, fmt.Errorf("want %d bytes, got %d (openssl rand -base64 32)", KeySize, len(b))
	}
	block, err := aes.NewCipher(b)
	if err != nil {
		return key{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return key{}, err
	}
	return key{id: KeyID(b), aead: aead}, nil
}

// KeyID names a key in sealed values and logs: the first 8 hex digits of
// its SHA-256.
func KeyID(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:4])
}

// IDs returns the ids of the ring's keys, the sealing one first.
func (r *Ring) IDs() []string {
	if r == nil {
		return nil
	}
	ids := make([]string, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.id
	}
	return ids
}

// CurrentPrefix returns the prefix of the values the ring seals
// ("enc:v1:<id of the first key>:"), or "" for a nil ring.
func (r *Ring) CurrentPrefix() string {
	if r == nil {
		return ""
	}
	return Prefix + version + ":" + r.keys[0].id + ":"
}

// IsSealed reports whether a stored value is sealed (has the prefix).
func IsSealed(stored string) bool { return strings.HasPrefix(stored, Prefix) }

// Seal encrypts secret with the ring's first key, bound to ad (the row's
// identity). A nil ring returns secret unchanged.
func (r *Ring) Seal(secret string, ad []byte) (string, error) {
	if r == nil {
		return secret, nil
	}
	k := r.keys[0]
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(secret)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := k.aead.Seal(nonce, nonce, []byte(secret), ad)
	return r.CurrentPrefix() + base64.StdEncoding.EncodeToString(out), nil
}

// Open returns the secret of a stored value: a plain one as it is, a sealed
// one decrypted with the ring key that sealed it, bound to ad. Its errors
// wrap ErrNoKey, ErrUnknownKey or ErrCorrupt and never include the value.
func (r *Ring) Open(stored string, ad []byte) (string, error) {
	if !IsSealed(stored) {
		return stored, nil
	}
	rest := strings.TrimPrefix(stored, Prefix)
	ver, rest, ok1 := strings.Cut(rest, ":")
	id, data, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || ver != version {
		return "", ErrCorrupt
	}
	if r == nil {
		return "", fmt.Errorf("key %s: %w", id, ErrNoKey)
	}
	var k *key
	for i := range r.keys {
		if r.keys[i].id == id {
			k = &r.keys[i]
		}
	}
	if k == nil {
		return "", fmt.Errorf("key %s: %w", id, ErrUnknownKey)
	}
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil || len(b) < k.aead.NonceSize() {
		return "", fmt.Errorf("key %s: %w", id, ErrCorrupt)
	}
	plain, err := k.aead.Open(nil, b[:k.aead.NonceSize()], b[k.aead.NonceSize():], ad)
	if err != nil {
		return "", fmt.Errorf("key %s: %w", id, ErrCorrupt)
	}
	return string(plain), nil
}
