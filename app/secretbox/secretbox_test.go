package secretbox_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/hookd/hookd/app/secretbox"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, secretbox.KeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func ring(t *testing.T, keys ...[]byte) *secretbox.Ring {
	t.Helper()
	r, err := secretbox.NewRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	const secret = "whsec_c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0"
	ad := []byte("ep_1/7")
	k1, k2 := newKey(t), newKey(t)

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		r := ring(t, k1)
		sealed, err := r.Seal(secret, ad)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(sealed, "enc:v1:"+secretbox.KeyID(k1)+":") {
			t.Errorf("sealed = %q, want the enc:v1:<key id>: prefix", sealed)
		}
		if strings.Contains(sealed, secret) || strings.Contains(sealed, "whsec_") {
			t.Errorf("sealed value holds the secret: %q", sealed)
		}
		again, _ := r.Seal(secret, ad)
		if again == sealed {
			t.Error("two seals of one secret are equal: the nonce is not random")
		}
		got, err := r.Open(sealed, ad)
		if err != nil || got != secret {
			t.Errorf("Open = %q, %v; want the secret", got, err)
		}
	})
	t.Run("PlainPassesThrough", func(t *testing.T) {
		t.Parallel()
		for _, r := range []*secretbox.Ring{nil, ring(t, k1)} {
			got, err := r.Open(secret, ad)
			if err != nil || got != secret {
				t.Errorf("Open(plain) = %q, %v", got, err)
			}
		}
		var none *secretbox.Ring
		if s, err := none.Seal(secret, ad); err != nil || s != secret {
			t.Errorf("nil ring Seal = %q, %v; want the secret unchanged", s, err)
		}
	})
	t.Run("WrongKey", func(t *testing.T) {
		t.Parallel()
		sealed, _ := ring(t, k1).Seal(secret, ad)
		_, err := ring(t, k2).Open(sealed, ad)
		if !errors.Is(err, secretbox.ErrUnknownKey) || !strings.Contains(err.Error(), secretbox.KeyID(k1)) {
			t.Errorf("Open with another key: %v; want ErrUnknownKey naming key %s", err, secretbox.KeyID(k1))
		}
		var none *secretbox.Ring
		if _, err := none.Open(sealed, ad); !errors.Is(err, secretbox.ErrNoKey) {
			t.Errorf("Open without a ring: %v; want ErrNoKey", err)
		}
	})
	t.Run("Tampered", func(t *testing.T) {
		t.Parallel()
		r := ring(t, k1)
		sealed, _ := r.Seal(secret, ad)
		i := strings.LastIndex(sealed, ":") + 1
		b, _ := base64.StdEncoding.DecodeString(sealed[i:])
		b[len(b)-1] ^= 1
		tampered := sealed[:i] + base64.StdEncoding.EncodeToString(b)
		for _, s := range []string{tampered, sealed[:len(sealed)-4], sealed[:i] + "!!", "enc:v2:" + sealed[7:], "enc:v1"} {
			if _, err := r.Open(s, ad); !errors.Is(err, secretbox.ErrCorrupt) {
				t.Errorf("Open(%q): %v; want ErrCorrupt", s, err)
			}
		}
	})
	t.Run("MovedToAnotherRow", func(t *testing.T) {
		t.Parallel()
		r := ring(t, k1)
		sealed, _ := r.Seal(secret, ad)
		if _, err := r.Open(sealed, []byte("ep_1/8")); !errors.Is(err, secretbox.ErrCorrupt) {
			t.Errorf("Open under another row's identity: %v; want ErrCorrupt", err)
		}
	})
	t.Run("RingOrder", func(t *testing.T) {
		t.Parallel()
		old, _ := ring(t, k2).Seal(secret, ad)
		r := ring(t, k1, k2)
		if got, err := r.Open(old, ad); err != nil || got != secret {
			t.Errorf("Open of a value sealed by the second key = %q, %v", got, err)
		}
		sealed, _ := r.Seal(secret, ad)
		if !strings.HasPrefix(sealed, r.CurrentPrefix()) || r.CurrentPrefix() != "enc:v1:"+secretbox.KeyID(k1)+":" {
			t.Errorf("sealed = %q, want it sealed by the first key", sealed)
		}
		if ids := r.IDs(); len(ids) != 2 || ids[0] != secretbox.KeyID(k1) || ids[1] != secretbox.KeyID(k2) {
			t.Errorf("IDs = %v", ids)
		}
	})
}

func TestParseRing(t *testing.T) {
	t.Parallel()
	k1, k2 := newKey(t), newKey(t)
	b1, b2 := base64.StdEncoding.EncodeToString(k1), base64.StdEncoding.EncodeToString(k2)
	r, err := secretbox.ParseRing(b1 + ", " + b2)
	if err != nil {
		t.Fatal(err)
	}
	if ids := r.IDs(); len(ids) != 2 || ids[0] != secretbox.KeyID(k1) {
		t.Errorf("IDs = %v", ids)
	}
	if r, err := secretbox.ParseRing(""); r != nil || err != nil {
		t.Errorf("ParseRing(\"\") = %v, %v; want nil, nil", r, err)
	}
	short := base64.StdEncoding.EncodeToString(k1[:16])
	for _, bad := range []string{"not base64!", short, base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 32)), b1 + "," + b1, b1 + ","} {
		_, err := secretbox.ParseRing(bad)
		if err == nil {
			t.Errorf("ParseRing(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), b1) || strings.Contains(err.Error(), short) || strings.Contains(err.Error(), "not base64") {
			t.Errorf("ParseRing error shows the value: %v", err)
		}
	}
}
