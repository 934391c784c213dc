package signature_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookd/hookd/tasks/signature"
)

type vector struct {
	Name      string `json:"name"`
	Secret    string `json:"secret"`
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
	Body      string `json:"body"`
	Signature string `json:"signature"`
}

// TestSignKnownAnswers checks Sign against vectors computed independently
// (the specification's own example and Python's hmac module).
func TestSignKnownAnswers(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []vector
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			key, err := signature.ParseSecret(v.Secret)
			if err != nil {
				t.Fatalf("ParseSecret: %v", err)
			}
			got := signature.Sign(key, v.ID, time.Unix(v.Timestamp, 0), []byte(v.Body))
			if got != v.Signature {
				t.Errorf("Sign = %s, want %s", got, v.Signature)
			}
		})
	}
}

// rotation returns two new secrets, as during a rotation, and their keys.
func rotation(t *testing.T) (oldSecret, newSecret string, keys [][]byte) {
	t.Helper()
	oldSecret, newSecret = signature.NewSecret(), signature.NewSecret()
	for _, s := range []string{oldSecret, newSecret} {
		k, err := signature.ParseSecret(s)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return oldSecret, newSecret, keys
}

// TestHeaderVerifiesWithReferenceLibrary signs with two keys, as during a
// secret rotation, and verifies with the Standard Webhooks Go library
// holding either key.
func TestHeaderVerifiesWithReferenceLibrary(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret, keys := rotation(t)
	body := []byte(`{"type":"link.clicked","data":{}}`)
	now := time.Now()
	h := http.Header{}
	h.Set(signature.HeaderID, "evt_1")
	h.Set(signature.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(signature.HeaderSignature, signature.Header(keys, "evt_1", now, body))
	if n := len(strings.Fields(h.Get(signature.HeaderSignature))); n != 2 {
		t.Fatalf("header carries %d signatures, want 2", n)
	}

	for _, s := range []string{oldSecret, newSecret} {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, h); err != nil {
			t.Errorf("Verify with one of the keys: %v", err)
		}
	}
	stranger, _ := standardwebhooks.NewWebhook(signature.NewSecret())
	if err := stranger.Verify(body, h); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Errorf("Verify with an unrelated key = %v, want ErrNoMatchingSignature", err)
	}
	tampered := append([]byte{}, body...)
	tampered[2] = 'T'
	wh, _ := standardwebhooks.NewWebhook(newSecret)
	if err := wh.Verify(tampered, h); err == nil {
		t.Error("Verify accepted a tampered body")
	}
}

func TestParseSecret(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"",
		"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",    // no prefix
		"whsec_not base64!",                   // not base64
		"whsec_" + strings.Repeat("A", 8),     // too short
		"whsec_" + strings.Repeat("AAAA", 30), // too long
	} {
		if _, err := signature.ParseSecret(s); !errors.Is(err, signature.ErrInvalidSecret) {
			t.Errorf("ParseSecret(%q) = %v, want ErrInvalidSecret", s, err)
		}
	}
	if k, err := signature.ParseSecret(signature.NewSecret()); err != nil || len(k) != 32 {
		t.Errorf("ParseSecret(NewSecret()) = %d bytes, %v", len(k), err)
	}
}
