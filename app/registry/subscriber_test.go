package registry

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/hookd/hookd/tasks/signature"
)

// TestDeliveryEndpointKeysAcrossSchemes: the keys that sign are the newest
// MaxLiveSecrets live ones, whatever their schemes, each in its own list.
func TestDeliveryEndpointKeysAcrossSchemes(t *testing.T) {
	t.Parallel()
	now := time.Now()
	past, future := now.Add(-time.Second), now.Add(time.Hour)
	priv := func() ed25519.PrivateKey {
		k, err := signature.ParsePrivateKey(signature.NewPrivateKey())
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ed1, ed2 := priv(), priv()
	h1, h2 := []byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210")
	e := deliveryEndpoint{keys: []signingKey{ // newest first
		{priv: ed1},                   // current
		{key: h1, expires: &past},     // expired: skipped
		{priv: ed2, expires: &future}, // in grace
		{key: h2, expires: &future},   // in grace
		{key: h1, expires: &future},   // past the limit
	}}
	ep := e.at(now)
	if len(ep.Ed25519Keys) != 2 || !ep.Ed25519Keys[0].Equal(ed1) || !ep.Ed25519Keys[1].Equal(ed2) {
		t.Errorf("ed25519 keys = %d, want the two live ones, newest first", len(ep.Ed25519Keys))
	}
	if len(ep.Keys) != 1 || string(ep.Keys[0]) != string(h2) {
		t.Errorf("HMAC keys = %q, want only the live one within the limit", ep.Keys)
	}
	if n := len(ep.Keys) + len(ep.Ed25519Keys); n != MaxLiveSecrets {
		t.Errorf("%d keys sign, want %d", n, MaxLiveSecrets)
	}
}

func TestSchemeOfStoredKeys(t *testing.T) {
	t.Parallel()
	sk := signature.NewPrivateKey()
	if got := schemeOf(sk); got != SchemeEd25519 {
		t.Errorf("schemeOf(whsk_) = %s", got)
	}
	if got := schemeOf(signature.NewSecret()); got != SchemeHMAC {
		t.Errorf("schemeOf(whsec_) = %s", got)
	}
	s := shown(sk, time.Now(), false)
	if s.Secret != "" || s.PublicKey == "" || s.SignatureScheme != SchemeEd25519 {
		t.Errorf("shown ed25519 key = %+v, want its public key only", s)
	}
	if s := shown(sk, time.Now(), true); s.Secret != sk {
		t.Errorf("shown on creation = %+v, want the private key too", s)
	}
}
