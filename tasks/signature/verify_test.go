package signature_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookd/hookd/tasks/signature"
)

// mustKey returns the key of a new random secret.
func mustKey(t testing.TB) []byte {
	t.Helper()
	key, err := signature.ParseSecret(signature.NewSecret())
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// sigOnly returns the base64 part of a "v1,<base64>" signature.
func sigOnly(s string) string { return strings.TrimPrefix(s, "v1,") }

func TestVerify(t *testing.T) {
	t.Parallel()
	oldKey, newKey, stranger := mustKey(t), mustKey(t), mustKey(t)
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"link.clicked","data":{}}`)
	good := signature.Sign(newKey, "evt_1", now, body)
	old := signature.Sign(oldKey, "evt_1", now, body)

	// message is what a receiver holds and gets; each case edits one.
	type message struct {
		keys               [][]byte
		tolerance          time.Duration
		id, ts, signatures string
		body               []byte
	}
	sigs := func(s string) func(*message) { return func(m *message) { m.signatures = s } }
	ts := func(s string) func(*message) { return func(m *message) { m.ts = s } }
	keys := func(ks ...[]byte) func(*message) { return func(m *message) { m.keys = ks } }
	// at signs the message at now+d and verifies it with tolerance.
	at := func(d, tolerance time.Duration) func(*message) {
		return func(m *message) {
			m.ts = strconv.FormatInt(now.Add(d).Unix(), 10)
			m.signatures = signature.Sign(newKey, m.id, now.Add(d), m.body)
			m.tolerance = tolerance
		}
	}

	g := sigOnly(good)
	v1a := "v1a," + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 64))

	tests := []struct {
		name string
		edit func(*message)
		want error
	}{
		{"Good", sigs(good), nil},
		{"RotationOldKey", func(m *message) { keys(oldKey)(m); m.signatures = old + " " + good }, nil},
		{"RotationNewKey", sigs(old + " " + good), nil},
		{"RotationVerifierHoldsBoth", func(m *message) { keys(oldKey, newKey)(m); m.signatures = old }, nil},
		{"ExtraSpaces", sigs("  " + old + "   " + good + "  "), nil},
		{"SkipsOtherVersions", sigs(v1a + " v2," + g + " " + good), nil},
		{"SkipsMalformedV1", sigs("v1 v1, v1,!!! " + good), nil},
		{"SixteenSignatures", sigs(strings.Repeat(old+" ", 15) + good), nil},

		{"StrangerKey", keys(stranger), signature.ErrMismatch},
		{"NoKeys", keys(), signature.ErrMismatch},
		{"TamperedBody", func(m *message) { m.body = []byte(`{"type":"link.clicked","data":{"x":1}}`) }, signature.ErrMismatch},
		{"TamperedID", func(m *message) { m.id = "evt_2" }, signature.ErrMismatch},
		{"TamperedTimestamp", ts(strconv.FormatInt(now.Unix()+1, 10)), signature.ErrMismatch},

		{"OtherVersionsOnly", sigs(v1a + " v2," + g), signature.ErrNoSignature},
		{"EmptyHeader", sigs(""), signature.ErrNoSignature},
		{"SpacesOnly", sigs("   "), signature.ErrNoSignature},
		{"NoVersion", sigs(g), signature.ErrNoSignature},
		{"TrailingField", sigs(good + ",x"), signature.ErrNoSignature},
		{"TabSeparated", sigs("v1,x\t" + good), signature.ErrNoSignature},
		{"LineBreakInBase64", sigs(good[:20] + "\n" + good[20:]), signature.ErrNoSignature},
		{"NonCanonicalBase64", sigs("v1," + nonCanonical(g)), signature.ErrNoSignature},
		{"Truncated", sigs(good[:len(good)-4]), signature.ErrNoSignature},

		{"TooManySignatures", sigs(strings.Repeat(old+" ", 16) + good), signature.ErrMalformed},
		{"TooLong", sigs(good + strings.Repeat(" ", 4096)), signature.ErrMalformed},
		{"EmptyID", func(m *message) { m.id = "" }, signature.ErrMalformed},

		{"AtOldEdge", at(-5*time.Minute, 0), nil},
		{"AtNewEdge", at(5*time.Minute, 0), nil},
		{"TooOld", at(-5*time.Minute-time.Second, 0), signature.ErrTimestamp},
		{"TooNew", at(5*time.Minute+time.Second, 0), signature.ErrTimestamp},
		{"Epoch", at(-now.Sub(time.Unix(0, 0)), 0), signature.ErrTimestamp},
		{"WiderTolerance", at(-30*time.Minute, time.Hour), nil},
		{"NarrowerTolerance", at(-30*time.Second, 10*time.Second), signature.ErrTimestamp},
	}
	unix := strconv.FormatInt(now.Unix(), 10)
	for _, bad := range []string{"", "x", "1.7e9", unix + ".0", "+" + unix, "-" + unix, "0" + unix, " " + unix, unix + " ", "0x6553F100", "99999999999999999999", "１７００"} {
		tests = append(tests, struct {
			name string
			edit func(*message)
			want error
		}{"Timestamp" + strconv.Quote(bad), ts(bad), signature.ErrMalformed})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := message{keys: [][]byte{newKey}, id: "evt_1", ts: unix, signatures: good, body: body}
			tt.edit(&m)
			v := signature.NewVerifier(m.keys, signature.VerifierConfig{
				Tolerance: m.tolerance,
				Now:       func() time.Time { return now },
			})
			err := v.Verify(m.id, m.ts, m.signatures, m.body)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	t.Parallel()
	k1, k2 := mustKey(t), mustKey(t)
	now := time.Now()
	h := signature.Header([][]byte{k1, k2}, "evt_1", now, nil)
	macs, err := signature.ParseHeader(" v1a,xyz " + h + " ")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(h)
	if len(macs) != len(want) {
		t.Fatalf("ParseHeader returned %d MACs, want %d", len(macs), len(want))
	}
	for i, mac := range macs {
		if got := "v1," + base64.StdEncoding.EncodeToString(mac); got != want[i] {
			t.Errorf("MAC %d = %s, want %s", i, got, want[i])
		}
	}
}

func TestVerifyHeaders(t *testing.T) {
	t.Parallel()
	key := mustKey(t)
	body := []byte(`{}`)
	now := time.Now()
	h := http.Header{}
	h.Set(signature.HeaderID, "evt_1")
	h.Set(signature.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(signature.HeaderSignature, signature.Header([][]byte{key}, "evt_1", now, body))
	v := signature.NewVerifier([][]byte{key}, signature.VerifierConfig{})
	if err := v.VerifyHeaders(h, body); err != nil {
		t.Errorf("VerifyHeaders = %v", err)
	}
	h.Del(signature.HeaderID)
	if err := v.VerifyHeaders(h, body); !errors.Is(err, signature.ErrMalformed) {
		t.Errorf("VerifyHeaders without %s = %v, want ErrMalformed", signature.HeaderID, err)
	}
}

// TestVerifyAgreesWithReferenceLibrary checks Verify against the Standard
// Webhooks Go library both ways: what hookd signs verifies with both, what
// the library signs verifies with Verify, and tampered messages fail with
// both.
func TestVerifyAgreesWithReferenceLibrary(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret, keys := rotation(t)
	now := time.Now()
	body := []byte(`{"a":1}`)

	cases := []struct {
		name  string
		edit  func(h http.Header, body []byte)
		valid bool
	}{
		{"Signed", func(http.Header, []byte) {}, true},
		{"Body", func(_ http.Header, body []byte) { body[2] = 'b' }, false},
		{"ID", func(h http.Header, _ []byte) { h.Set(signature.HeaderID, "evt_2") }, false},
		{"Timestamp", func(h http.Header, _ []byte) {
			h.Set(signature.HeaderTimestamp, strconv.FormatInt(now.Unix()-1, 10))
		}, false},
		{"Signature", func(h http.Header, _ []byte) {
			s := []byte(h.Get(signature.HeaderSignature))
			s[3] ^= 1        // in the first signature
			s[len(s)-3] ^= 1 // in the second
			h.Set(signature.HeaderSignature, string(s))
		}, false},
	}
	for _, c := range cases {
		h, b := http.Header{}, bytes.Clone(body)
		h.Set(signature.HeaderID, "evt_1")
		h.Set(signature.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		h.Set(signature.HeaderSignature, signature.Header(keys, "evt_1", now, body))
		c.edit(h, b)
		for i, secret := range []string{oldSecret, newSecret} {
			ref, err := standardwebhooks.NewWebhook(secret)
			if err != nil {
				t.Fatal(err)
			}
			refErr := ref.Verify(b, h)
			ourErr := signature.NewVerifier(keys[i:i+1], signature.VerifierConfig{}).VerifyHeaders(h, b)
			if (refErr == nil) != c.valid || (ourErr == nil) != c.valid {
				t.Errorf("%s, key %d: reference Verify = %v, Verify = %v, want valid %v", c.name, i, refErr, ourErr, c.valid)
			}
		}
	}

	// The other way round: a message signed by the reference library.
	ref, _ := standardwebhooks.NewWebhook(newSecret)
	sig, err := ref.Sign("evt_3", now, body)
	if err != nil {
		t.Fatal(err)
	}
	v := signature.NewVerifier(keys[1:], signature.VerifierConfig{})
	if err := v.Verify("evt_3", strconv.FormatInt(now.Unix(), 10), sig, body); err != nil {
		t.Errorf("Verify of a reference-signed message = %v", err)
	}
}
