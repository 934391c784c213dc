package app_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/app/secretbox"
	"github.com/hookd/hookd/outbox/outboxtest"
)

// TestSecretsAtRest: with HOOKD_SECRETS_KEY the signing keys are stored
// sealed (never in clear in Postgres, the logs or /metrics); keys stored
// plain before a key was set are sealed when hookd starts with one; hookd
// secrets rotate-key re-seals them under the first key; deliveries verify
// all along, and a key ring without the sealing key is a clear error.
func TestSecretsAtRest(t *testing.T) {
	t.Parallel()
	dbURL := outboxtest.SchemaURL(t)
	newRingKey := func() (string, string) {
		b := make([]byte, secretbox.KeySize)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b), secretbox.KeyID(b)
	}
	oldKey, oldID := newRingKey()
	newKey, newID := newRingKey()
	recvH, recvE, recvO := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)

	var appID string
	var hm, ed, other edEndpoint
	var edPub string
	// secrets are every clear key made so far, to look for where they
	// must not be.
	var secrets []string

	rows := func(h *harness) []string {
		t.Helper()
		var s []string
		if err := h.db.NewRaw("SELECT secret FROM endpoint_secrets ORDER BY id").Scan(t.Context(), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// noClearSecret reports where text holds a key in clear: its prefix,
	// its base64 or the first bytes of the base64.
	noClearSecret := func(where, text string) {
		t.Helper()
		for _, bad := range []string{"whsec_", "whsk_"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s holds %q", where, bad)
			}
		}
		for _, s := range secrets {
			_, b64, _ := strings.Cut(s, "_")
			if strings.Contains(text, b64[:20]) {
				t.Errorf("%s holds the key %s...", where, s[:10])
			}
		}
	}
	checkSealed := func(h *harness, keyID string) {
		t.Helper()
		got := rows(h)
		if len(got) == 0 {
			t.Fatal("no endpoint_secrets rows")
		}
		for _, s := range got {
			if !strings.HasPrefix(s, "enc:v1:"+keyID+":") {
				t.Errorf("endpoint_secrets row %.20q..., want it sealed by key %s", s, keyID)
			}
		}
		noClearSecret("endpoint_secrets", strings.Join(got, "\n"))
	}
	n := 0
	deliverAndVerify := func(h *harness) {
		t.Helper()
		n++
		id := h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.created", "payload": map[string]any{"n": n}}).ID
		if err := accVerify(t, hm.Secret, accWebhook(t, recvH, id)); err != nil {
			t.Errorf("the whsec_ secret does not verify (reference library): %v", err)
		}
		if other.ID == "" {
			return
		}
		if err := accVerify(t, other.Secret, accWebhook(t, recvO, id)); err != nil {
			t.Errorf("the whsec_ secret of the endpoint made with a key does not verify: %v", err)
		}
		if err := edSpecVerify(edPub, accWebhook(t, recvE, id)); err != nil {
			t.Errorf("the public key does not verify: %v", err)
		}
	}
	metricsText := func(h *harness) string {
		t.Helper()
		resp, err := http.Get(h.metricsBase + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	rotateKey := func(keys string) (string, error) {
		var out bytes.Buffer
		env := map[string]string{"HOOKD_DATABASE_URL": dbURL, "HOOKD_SECRETS_KEY": keys}
		err := app.Main(t.Context(), []string{"secrets", "rotate-key"}, func(k string) string { return env[k] }, &out, slog.New(slog.DiscardHandler))
		return out.String(), err
	}

	// Each hookd runs in a subtest of its own, and stops at its end.
	t.Run("PlainWithoutKey", func(t *testing.T) {
		h := start(t, map[string]string{"HOOKD_DATABASE_URL": dbURL})
		if !h.logs.contains("HOOKD_SECRETS_KEY is not set") {
			t.Error("no warning naming HOOKD_SECRETS_KEY at start without a key")
		}
		appID = h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
		eps := "/v1/apps/" + appID + "/endpoints"
		accMust(t, h, http.MethodPost, eps, adminKey, map[string]any{"url": recvH.URL}, http.StatusCreated, &hm)
		accMust(t, h, http.MethodPost, eps, adminKey, map[string]any{"url": recvE.URL, "signature_scheme": "ed25519"}, http.StatusCreated, &ed)
		edPub = *ed.PublicKey
		secrets = append(secrets, hm.Secret, ed.Secret)
		if got := strings.Join(rows(h), " "); !strings.Contains(got, hm.Secret) || !strings.Contains(got, ed.Secret) {
			t.Fatal("without a key the rows do not hold the keys as they are")
		}
		deliverAndVerify(h)
	})
	if t.Failed() {
		return
	}

	t.Run("SealedAtStart", func(t *testing.T) {
		h := start(t, map[string]string{"HOOKD_DATABASE_URL": dbURL, "HOOKD_SECRETS_KEY": oldKey})
		if h.logs.contains("HOOKD_SECRETS_KEY is not set") {
			t.Error("the warning of a missing key, with a key")
		}
		checkSealed(h, oldID)
		deliverAndVerify(h)

		// Keys made with a key set are sealed from the start: a new
		// endpoint, and rotations of both.
		eps := "/v1/apps/" + appID + "/endpoints"
		accMust(t, h, http.MethodPost, eps, adminKey, map[string]any{"url": recvO.URL}, http.StatusCreated, &other)
		var rot edSecret
		accMust(t, h, http.MethodPost, eps+"/"+hm.ID+"/secret/rotate", adminKey, map[string]any{"grace_period_seconds": 0}, http.StatusOK, &rot)
		hm.Secret = rot.Secret
		secrets = append(secrets, other.Secret, rot.Secret)
		accMust(t, h, http.MethodPost, eps+"/"+ed.ID+"/secret/rotate", adminKey, map[string]any{"grace_period_seconds": 0}, http.StatusOK, &rot)
		edPub = rot.PublicKey
		secrets = append(secrets, rot.Secret)
		checkSealed(h, oldID)
		// The API still reveals an HMAC secret, opened.
		var got edSecret
		accMust(t, h, http.MethodGet, eps+"/"+hm.ID+"/secret", adminKey, nil, http.StatusOK, &got)
		if got.Secret != hm.Secret {
			t.Errorf("GET secret = %q, want the rotated secret", got.Secret)
		}
		deliverAndVerify(h)
		noClearSecret("/metrics", metricsText(h))
		h.logs.mu.Lock()
		logged := h.logs.b.String()
		h.logs.mu.Unlock()
		noClearSecret("the logs", logged)
	})
	if t.Failed() {
		return
	}

	t.Run("RotateKey", func(t *testing.T) {
		// Two at once, as two operators might: each row is re-encrypted
		// once. Three keys are stored: the rotations without grace period
		// deleted the two they replaced.
		type result struct {
			out string
			err error
		}
		results := make(chan result, 2)
		for range 2 {
			go func() {
				out, err := rotateKey(newKey + "," + oldKey)
				results <- result{out, err}
			}()
		}
		total := 0
		for range 2 {
			r := <-results
			var n int
			var id string
			if _, err := fmt.Sscanf(r.out, "re-encrypted %d secrets with key %s", &n, &id); r.err != nil || err != nil || id != newID {
				t.Fatalf("secrets rotate-key: %q, %v; want secrets re-encrypted with key %s", r.out, r.err, newID)
			}
			total += n
		}
		if total != 3 {
			t.Errorf("two secrets rotate-key at once re-encrypted %d secrets, want 3", total)
		}
		if out, err := rotateKey(newKey + "," + oldKey); err != nil || !strings.Contains(out, "re-encrypted 0 secrets") {
			t.Errorf("second secrets rotate-key: %q, %v; want nothing left to do", out, err)
		}
		// With the old key alone the rows do not open: a clear error
		// naming the key that sealed them.
		_, err := rotateKey(oldKey)
		if !errors.Is(err, secretbox.ErrUnknownKey) || !strings.Contains(err.Error(), newID) {
			t.Errorf("secrets rotate-key with the old key only: %v; want an error naming key %s", err, newID)
		}
		if _, err := rotateKey(""); err == nil || !strings.Contains(err.Error(), "HOOKD_SECRETS_KEY") {
			t.Errorf("secrets rotate-key without a key: %v; want an error naming HOOKD_SECRETS_KEY", err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("NewKeyOnly", func(t *testing.T) {
		h := start(t, map[string]string{"HOOKD_DATABASE_URL": dbURL, "HOOKD_SECRETS_KEY": newKey})
		checkSealed(h, newID)
		deliverAndVerify(h)
	})

	// A hookd with the old key alone starts, but does not open the keys:
	// reading one fails with an error that says which key sealed it.
	t.Run("OldKeyOnly", func(t *testing.T) {
		h := start(t, map[string]string{"HOOKD_DATABASE_URL": dbURL, "HOOKD_SECRETS_KEY": oldKey})
		r := accDo(t, h, http.MethodGet, "/v1/apps/"+appID+"/endpoints/"+hm.ID+"/secret", adminKey, nil)
		if r.code != http.StatusInternalServerError {
			t.Errorf("GET secret = %s, want 500", r)
		}
		noClearSecret("the error response", string(r.body))
		waitFor(t, "the error logged", func() bool {
			return h.logs.contains("sealed by a key not in the key ring") && h.logs.contains(newID)
		})
	})
}
