package app_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
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

// TestEndpointAuthSecretsAtRest: with HOOKD_SECRETS_KEY the mTLS client keys
// and OAuth client secrets are stored sealed, as the signing keys are
// (TestSecretsAtRest): never in clear in Postgres, the logs or /metrics;
// those stored plain before a key was set are sealed when hookd starts with
// one; hookd secrets rotate-key re-seals them under the first key; and
// deliveries over mutual TLS and with OAuth tokens work all along.
func TestEndpointAuthSecretsAtRest(t *testing.T) {
	t.Parallel()
	dbURL := outboxtest.SchemaURL(t)
	newRingKey := func() (string, string) {
		b := make([]byte, secretbox.KeySize)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b), secretbox.KeyID(b)
	}
	oldKey, oldID := newRingKey()
	newKey, newID := newRingKey()

	serverCA, clientCA := authNewCA(t, "server CA"), authNewCA(t, "client CA")
	mtls := authNewMTLSReceiver(t, serverCA, clientCA)
	clientCert, clientKey := clientCA.issue(t, "hookd-client", false)
	clientCert2, clientKey2 := clientCA.issue(t, "hookd-client-2", false)
	const clientSecret = "oauth-client-secret-5f0c2a9e41d7"
	const clientSecret2 = "oauth-client-secret-2-b83e6d1f07"
	ts := authNewTokenServer(t, "hookd", clientSecret, "", "")
	bearer := ts.receiver(t)

	var appID string
	var mep, oep authEndpoint
	// secrets are the clear values that must not be found: the keys'
	// base64 lines and the client secrets.
	var secrets []string
	addKey := func(pemKey string) {
		for _, line := range strings.Split(pemKey, "\n") {
			if line != "" && !strings.HasPrefix(line, "-----") {
				secrets = append(secrets, line)
			}
		}
	}
	noClearSecret := func(where, text string) {
		t.Helper()
		if strings.Contains(text, "PRIVATE KEY") {
			t.Errorf("%s holds a PEM private key", where)
		}
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s holds the secret %.8s...", where, s)
			}
		}
	}
	// columns returns the stored client keys and client secrets.
	columns := func(h *harness) []string {
		t.Helper()
		var keys, secrets []string
		err := h.db.NewRaw("SELECT tls_client_key FROM endpoints WHERE tls_client_key IS NOT NULL ORDER BY id").Scan(t.Context(), &keys)
		if err == nil {
			err = h.db.NewRaw("SELECT oauth_client_secret FROM endpoints WHERE oauth_client_secret IS NOT NULL ORDER BY id").Scan(t.Context(), &secrets)
		}
		if err != nil {
			t.Fatal(err)
		}
		return append(keys, secrets...)
	}
	// wholeRows is every endpoints row as text.
	wholeRows := func(h *harness) string {
		t.Helper()
		var rows []string
		if err := h.db.NewRaw("SELECT e::text FROM endpoints e").Scan(t.Context(), &rows); err != nil {
			t.Fatal(err)
		}
		return strings.Join(rows, "\n")
	}
	checkSealed := func(h *harness, keyID string, want int) {
		t.Helper()
		got := columns(h)
		if len(got) != want {
			t.Fatalf("%d client keys and secrets stored, want %d", len(got), want)
		}
		for _, s := range got {
			if !strings.HasPrefix(s, "enc:v1:"+keyID+":") {
				t.Errorf("stored value %.20q..., want it sealed by key %s", s, keyID)
			}
		}
		noClearSecret("the endpoints table", wholeRows(h))
	}
	n := 0
	deliverAndVerify := func(h *harness) {
		t.Helper()
		n++
		id := h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.created", "payload": map[string]any{"n": n}}).ID
		if err := accVerify(t, mep.Secret, accWebhook(t, mtls.receiver, id)); err != nil {
			t.Errorf("webhook over mutual TLS does not verify: %v", err)
		}
		if err := accVerify(t, oep.Secret, accWebhook(t, bearer, id)); err != nil {
			t.Errorf("webhook with an OAuth token does not verify: %v", err)
		}
	}
	checkOutputs := func(h *harness) {
		t.Helper()
		resp, err := http.Get(h.metricsBase + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		noClearSecret("/metrics", string(b))
		h.logs.mu.Lock()
		logged := h.logs.b.String()
		h.logs.mu.Unlock()
		noClearSecret("the logs", logged)
		for _, ep := range []string{mep.ID, oep.ID} {
			noClearSecret("GET endpoint", string(accMust(t, h, http.MethodGet, "/v1/apps/"+appID+"/endpoints/"+ep, adminKey, nil, http.StatusOK, nil).body))
		}
	}
	rotateKey := func(keys string) (string, error) {
		var out bytes.Buffer
		env := map[string]string{"HOOKD_DATABASE_URL": dbURL, "HOOKD_SECRETS_KEY": keys}
		err := app.Main(t.Context(), []string{"secrets", "rotate-key"}, func(k string) string { return env[k] }, &out, slog.New(slog.DiscardHandler))
		return out.String(), err
	}

	t.Run("PlainWithoutKey", func(t *testing.T) {
		h := start(t, map[string]string{"HOOKD_DATABASE_URL": dbURL})
		appID = h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
		eps := "/v1/apps/" + appID + "/endpoints"
		accMust(t, h, http.MethodPost, eps, adminKey, map[string]any{"url": mtls.URL,
			"tls": map[string]any{"client_certificate": clientCert, "client_key": clientKey, "ca_bundle": serverCA.pem}}, http.StatusCreated, &mep)
		accMust(t, h, http.MethodPost, eps, adminKey, map[string]any{"url": bearer.URL,
			"oauth": map[string]any{"token_url": ts.URL, "client_id": "hookd", "client_secret": clientSecret}}, http.StatusCreated, &oep)
		addKey(clientKey)
		secrets = append(secrets, clientSecret)
		if got := strings.Join(columns(h), "\n"); !strings.Contains(got, clientKey) || !strings.Contains(got, clientSecret) {
			t.Fatal("without a key the columns do not hold the key and the secret as they are")
		}
		deliverAndVerify(h)
	})
	if t.Failed() {
		return
	}

	t.Run("SealedAtStart", func(t *testing.T) {
		h := start(t, map[string]string{"HOOKD_DATABASE_URL": dbURL, "HOOKD_SECRETS_KEY": oldKey})
		checkSealed(h, oldID, 2)
		deliverAndVerify(h)

		// Values set with a key are sealed from the start: a new key and
		// secret by PATCH (a new client certificate; a new secret the
		// token server expects).
		eps := "/v1/apps/" + appID + "/endpoints"
		accMust(t, h, http.MethodPatch, eps+"/"+mep.ID, adminKey, map[string]any{
			"tls": map[string]any{"client_certificate": clientCert2, "client_key": clientKey2, "ca_bundle": serverCA.pem}}, http.StatusOK, nil)
		ts.expect(clientSecret2, "")
		accMust(t, h, http.MethodPatch, eps+"/"+oep.ID, adminKey, map[string]any{
			"oauth": map[string]any{"token_url": ts.URL, "client_id": "hookd", "client_secret": clientSecret2}}, http.StatusOK, nil)
		addKey(clientKey2)
		secrets = append(secrets, clientSecret2)
		checkSealed(h, oldID, 2)
		deliverAndVerify(h)
		checkOutputs(h)
	})
	if t.Failed() {
		return
	}

	t.Run("RotateKey", func(t *testing.T) {
		out, err := rotateKey(newKey + "," + oldKey)
		var count int
		var id string
		// Two signing keys, one client key, one client secret.
		if _, scanErr := fmt.Sscanf(out, "re-encrypted %d secrets with key %s", &count, &id); err != nil || scanErr != nil || count != 4 || id != newID {
			t.Fatalf("secrets rotate-key: %q, %v; want 4 secrets re-encrypted with key %s", out, err, newID)
		}
		if out, err := rotateKey(newKey + "," + oldKey); err != nil || !strings.Contains(out, "re-encrypted 0 secrets") {
			t.Errorf("second secrets rotate-key: %q, %v; want nothing left to do", out, err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("NewKeyOnly", func(t *testing.T) {
		h := start(t, map[string]string{"HOOKD_DATABASE_URL": dbURL, "HOOKD_SECRETS_KEY": newKey})
		checkSealed(h, newID, 2)
		deliverAndVerify(h)
		checkOutputs(h)
	})
}
