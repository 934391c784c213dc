package signature

import (
	"cmp"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a message's timestamp may lie from the
// receiver's clock, either way, unless VerifierConfig says otherwise. It is
// the reference libraries' value.
const DefaultTolerance = 5 * time.Minute

// Limits that keep a hostile webhook-signature header cheap to parse.
const (
	maxHeaderSize = 4096 // bytes
	maxSignatures = 16   // v1 signatures
)

// encodedMACSize is the length of a base64-encoded HMAC-SHA256 (44).
const encodedMACSize = (sha256.Size + 2) / 3 * 4

// encodedEd25519Size is the length of a base64-encoded ed25519 signature
// (88).
const encodedEd25519Size = (ed25519.SignatureSize + 2) / 3 * 4

// Errors returned by ParseHeader and Verifier. They are wrapped with
// details; test for them with errors.Is.
var (
	// ErrMalformed reports an empty message id, a timestamp that is not
	// decimal unix seconds, or a signature header over the size limits.
	ErrMalformed = errors.New("malformed webhook headers")
	// ErrTimestamp reports a timestamp further from now than the tolerance.
	ErrTimestamp = errors.New("webhook timestamp outside tolerance")
	// ErrNoSignature reports a signature header without a well-formed v1
	// signature.
	ErrNoSignature = errors.New("no v1 webhook signature")
	// ErrMismatch reports that no v1 signature matches any of the keys.
	ErrMismatch = errors.New("no matching webhook signature")
)

// ParseHeader returns the MACs of the v1 signatures in a webhook-signature
// header value: space-separated "version,signature" entries. Entries of
// other versions (such as the asymmetric "v1a"), v1 entries whose signature
// is not the canonical base64 of a 32-byte MAC, and empty entries left by
// repeated spaces are skipped. It returns ErrNoSignature when nothing is
// left, and ErrMalformed for a value over 4096 bytes or with more than 16
// v1 signatures.
func ParseHeader(value string) ([][]byte, error) {
	if len(value) > maxHeaderSize {
		return nil, fmt.Errorf("%w: signature header is %d bytes, limit %d", ErrMalformed, len(value), maxHeaderSize)
	}
	var macs [][]byte
	for entry := range strings.SplitSeq(value, " ") {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		// Strict decoding rejects non-zero padding bits, and the length and
		// CR/LF checks the line breaks the decoder would otherwise skip: one
		// MAC has exactly one accepted text.
		if len(sig) != encodedMACSize || strings.ContainsAny(sig, "\r\n") {
			continue
		}
		mac, err := base64.StdEncoding.Strict().DecodeString(sig)
		if err != nil || len(mac) != sha256.Size {
			continue
		}
		if len(macs) == maxSignatures {
			return nil, fmt.Errorf("%w: more than %d v1 signatures", ErrMalformed, maxSignatures)
		}
		macs = append(macs, mac)
	}
	if len(macs) == 0 {
		return nil, ErrNoSignature
	}
	return macs, nil
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Tolerance is how far a message's timestamp may lie from now, either
	// way. Zero means DefaultTolerance.
	Tolerance time.Duration
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// Verifier checks, on the receiving side, that messages were signed with
// one of its keys and recently. It is safe for concurrent use.
type Verifier struct {
	keys [][]byte
	pubs []ed25519.PublicKey
	cfg  VerifierConfig
}

// NewVerifier returns a Verifier accepting a signature under any of keys
// (more than one while rotating secrets; see ParseSecret).
func NewVerifier(keys [][]byte, cfg VerifierConfig) *Verifier {
	cfg.Tolerance = cmp.Or(cfg.Tolerance, DefaultTolerance)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{keys: append([][]byte(nil), keys...), cfg: cfg}
}

// NewPublicKeyVerifier returns a Verifier accepting a v1a (ed25519)
// signature under any of pubs (more than one while rotating keys; see
// ParsePublicKey). Its v1 signatures are ignored.
func NewPublicKeyVerifier(pubs []ed25519.PublicKey, cfg VerifierConfig) *Verifier {
	v := NewVerifier(nil, cfg)
	v.pubs = append([]ed25519.PublicKey(nil), pubs...)
	return v
}

// Verify checks a message from its webhook-id, webhook-timestamp and
// webhook-signature header values and its raw body. It returns nil when
// any v1 signature matches any key (for a NewPublicKeyVerifier: any v1a
// signature verifies under any public key), and otherwise an error wrapping
// ErrMalformed, ErrTimestamp, ErrNoSignature or ErrMismatch.
//
// The timestamp must be canonical decimal unix seconds (no sign, no leading
// zeros), the form that was signed, and within the tolerance of now.
func (v *Verifier) Verify(id, timestamp, signatures string, body []byte) error {
	if id == "" {
		return fmt.Errorf("%w: empty message id", ErrMalformed)
	}
	unix, err := parseTimestamp(timestamp)
	if err != nil {
		return err
	}
	ts, now := time.Unix(unix, 0), v.cfg.Now()
	if d := now.Sub(ts); d > v.cfg.Tolerance {
		return fmt.Errorf("%w: message is %s old", ErrTimestamp, d.Truncate(time.Second))
	}
	if d := ts.Sub(now); d > v.cfg.Tolerance {
		return fmt.Errorf("%w: message is %s ahead", ErrTimestamp, d.Truncate(time.Second))
	}
	if v.pubs != nil {
		return v.verifyEd25519(id, unix, signatures, body)
	}
	macs, err := ParseHeader(signatures)
	if err != nil {
		return err
	}
	for _, key := range v.keys {
		want := sum(key, id, unix, body)
		for _, mac := range macs {
			if hmac.Equal(mac, want) {
				return nil
			}
		}
	}
	return ErrMismatch
}

// verifyEd25519 checks the v1a signatures of a header value against the
// Verifier's public keys. Like ParseHeader, it skips entries of other
// versions and malformed ones, and bounds the work a hostile header costs.
func (v *Verifier) verifyEd25519(id string, unix int64, signatures string, body []byte) error {
	if len(signatures) > maxHeaderSize {
		return fmt.Errorf("%w: signature header is %d bytes, limit %d", ErrMalformed, len(signatures), maxHeaderSize)
	}
	msg := content(id, unix, body)
	n := 0
	for entry := range strings.SplitSeq(signatures, " ") {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1a" || len(sig) != encodedEd25519Size || strings.ContainsAny(sig, "\r\n") {
			continue
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(sig)
		if err != nil || len(raw) != ed25519.SignatureSize {
			continue
		}
		if n++; n > maxSignatures {
			return fmt.Errorf("%w: more than %d v1a signatures", ErrMalformed, maxSignatures)
		}
		for _, pub := range v.pubs {
			if ed25519.Verify(pub, msg, raw) {
				return nil
			}
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: no v1a signature", ErrNoSignature)
	}
	return ErrMismatch
}

// VerifyHeaders is Verify with the values of the HeaderID, HeaderTimestamp
// and HeaderSignature headers of h.
func (v *Verifier) VerifyHeaders(h http.Header, body []byte) error {
	return v.Verify(h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature), body)
}

// parseTimestamp parses canonical decimal unix seconds.
func parseTimestamp(s string) (int64, error) {
	if s == "" || len(s) > 19 || (s[0] == '0' && len(s) > 1) || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: timestamp is not decimal unix seconds", ErrMalformed)
	}
	unix, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: timestamp: %w", ErrMalformed, err)
	}
	return unix, nil
}
