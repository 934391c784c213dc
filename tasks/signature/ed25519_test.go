package signature_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookd/hookd/tasks/signature"
)

// RFC 8032, section 7.1, test 1.
const (
	rfcSeed   = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
	rfcPublic = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePrivateKey(t *testing.T) {
	t.Parallel()
	seed, pub := mustHex(t, rfcSeed), mustHex(t, rfcPublic)
	full := append(append([]byte(nil), seed...), pub...)
	badHalf := append(append([]byte(nil), seed...), make([]byte, 32)...)
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"Seed", "whsk_" + b64(seed), true},
		{"SeedAndPublic", "whsk_" + b64(full), true},
		{"PublicHalfMismatch", "whsk_" + b64(badHalf), false},
		{"NoPrefix", b64(full), false},
		{"HMACPrefix", "whsec_" + b64(full), false},
		{"PublicPrefix", "whpk_" + b64(pub), false},
		{"NotBase64", "whsk_not*base64!", false},
		{"Unpadded", "whsk_" + strings.TrimRight(b64(seed), "="), false},
		{"TooShort", "whsk_" + b64(seed[:31]), false},
		{"TooLong", "whsk_" + b64(append(full, 0)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			priv, err := signature.ParsePrivateKey(tc.in)
			if !tc.ok {
				if !errors.Is(err, signature.ErrInvalidKey) {
					t.Fatalf("ParsePrivateKey = %v, want ErrInvalidKey", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePrivateKey: %v", err)
			}
			if got := signature.PublicKey(priv); got != "whpk_"+b64(pub) {
				t.Errorf("PublicKey = %s, want the RFC 8032 public key whpk_%s", got, b64(pub))
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	t.Parallel()
	pub := mustHex(t, rfcPublic)
	got, err := signature.ParsePublicKey("whpk_" + base64.StdEncoding.EncodeToString(pub))
	if err != nil || !got.Equal(ed25519.PublicKey(pub)) {
		t.Fatalf("ParsePublicKey = %x, %v; want %x", got, err, pub)
	}
	for _, bad := range []string{
		base64.StdEncoding.EncodeToString(pub),
		"whsk_" + base64.StdEncoding.EncodeToString(pub),
		"whpk_" + base64.StdEncoding.EncodeToString(pub[:31]),
		"whpk_" + base64.StdEncoding.EncodeToString(append(pub, 0)),
		"whpk_***",
	} {
		if _, err := signature.ParsePublicKey(bad); !errors.Is(err, signature.ErrInvalidKey) {
			t.Errorf("ParsePublicKey(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
}

// TestNewPrivateKey checks that a new key is the 64-byte form, parses back
// and is not repeated.
func TestNewPrivateKey(t *testing.T) {
	t.Parallel()
	a, b := signature.NewPrivateKey(), signature.NewPrivateKey()
	if a == b {
		t.Fatal("two new keys are equal")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, "whsk_"))
	if !strings.HasPrefix(a, "whsk_") || err != nil || len(raw) != ed25519.PrivateKeySize {
		t.Fatalf("NewPrivateKey = %q, want whsk_ and the base64 of 64 bytes", a)
	}
	if _, err := signature.ParsePrivateKey(a); err != nil {
		t.Fatalf("ParsePrivateKey(NewPrivateKey()): %v", err)
	}
}

// TestSignEd25519 checks v1a signatures with crypto/ed25519 directly, over
// the content the specification defines.
func TestSignEd25519(t *testing.T) {
	t.Parallel()
	priv := ed25519.NewKeyFromSeed(mustHex(t, rfcSeed))
	pub := ed25519.PublicKey(mustHex(t, rfcPublic))
	ts := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	got := signature.SignEd25519(priv, "msg_p5jXN8AQM9LWM0D4loKWxJek", ts, body)
	sig, ok := strings.CutPrefix(got, "v1a,")
	if !ok {
		t.Fatalf("SignEd25519 = %q, want v1a,...", got)
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330." + string(body))
	if !ed25519.Verify(pub, msg, raw) {
		t.Error("crypto/ed25519 rejects the signature over id.timestamp.body")
	}
	// ed25519 is deterministic.
	if want := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg)); sig != want {
		t.Errorf("signature = %s, want %s", sig, want)
	}
}

// TestHeaderOfMixesSchemes checks a rotation's header: one entry per key,
// each verifying under its own key alone.
func TestHeaderOfMixesSchemes(t *testing.T) {
	t.Parallel()
	now := time.Now()
	body := []byte(`{"a":1}`)
	hmacSecret := signature.NewSecret()
	hmacKey, _ := signature.ParseSecret(hmacSecret)
	priv1, _ := signature.ParsePrivateKey(signature.NewPrivateKey())
	priv2, _ := signature.ParsePrivateKey(signature.NewPrivateKey())
	h := signature.HeaderOf(signature.Keys{HMAC: [][]byte{hmacKey}, Ed25519: []ed25519.PrivateKey{priv1, priv2}}, "evt_1", now, body)
	entries := strings.Fields(h)
	if len(entries) != 3 || !strings.HasPrefix(entries[0], "v1,") || !strings.HasPrefix(entries[1], "v1a,") || !strings.HasPrefix(entries[2], "v1a,") {
		t.Fatalf("header = %q, want one v1 and two v1a entries", h)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	if err := signature.NewVerifier([][]byte{hmacKey}, signature.VerifierConfig{}).Verify("evt_1", ts, h, body); err != nil {
		t.Errorf("HMAC key: %v", err)
	}
	for i, priv := range []ed25519.PrivateKey{priv1, priv2} {
		pub, _ := signature.ParsePublicKey(signature.PublicKey(priv))
		v := signature.NewPublicKeyVerifier([]ed25519.PublicKey{pub}, signature.VerifierConfig{})
		if err := v.Verify("evt_1", ts, h, body); err != nil {
			t.Errorf("ed25519 key %d: %v", i, err)
		}
		if err := v.Verify("evt_1", ts, h, []byte(`{"a":2}`)); !errors.Is(err, signature.ErrMismatch) {
			t.Errorf("ed25519 key %d, altered body: %v, want ErrMismatch", i, err)
		}
	}
	other, _ := signature.ParsePrivateKey(signature.NewPrivateKey())
	otherPub, _ := signature.ParsePublicKey(signature.PublicKey(other))
	v := signature.NewPublicKeyVerifier([]ed25519.PublicKey{otherPub}, signature.VerifierConfig{})
	if err := v.Verify("evt_1", ts, h, body); !errors.Is(err, signature.ErrMismatch) {
		t.Errorf("another key: %v, want ErrMismatch", err)
	}
	if err := v.Verify("evt_1", ts, "v1,"+strings.Repeat("A", 43)+"=", body); !errors.Is(err, signature.ErrNoSignature) {
		t.Errorf("v1 only: %v, want ErrNoSignature", err)
	}
	// An HMAC-only header is what Header makes.
	if got, want := signature.HeaderOf(signature.Keys{HMAC: [][]byte{hmacKey}}, "evt_1", now, body), signature.Header([][]byte{hmacKey}, "evt_1", now, body); got != want {
		t.Errorf("HeaderOf with HMAC keys only = %q, want Header's %q", got, want)
	}
}

// BenchmarkHeaderOfEd25519 is the signing cost of a delivery of a 1 KiB
// body by an endpoint rotating from HMAC to ed25519 (one key of each).
func BenchmarkHeaderOfEd25519(b *testing.B) {
	hmacKey, _ := signature.ParseSecret(signature.NewSecret())
	priv, _ := signature.ParsePrivateKey(signature.NewPrivateKey())
	keys := signature.Keys{HMAC: [][]byte{hmacKey}, Ed25519: []ed25519.PrivateKey{priv}}
	body := []byte(strings.Repeat("x", 1024))
	now := time.Now()
	for b.Loop() {
		signature.HeaderOf(keys, "evt_01jdx3q6m2v7k9c8r5t4w3y2z1", now, body)
	}
}
