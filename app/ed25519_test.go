package app_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// edSpecVerify checks the v1a signatures of a webhook with the whpk_ public
// key pub, as a receiver written from the Standard Webhooks specification
// would, with crypto/ed25519 alone: the key is "whpk_" and the standard
// base64 of the 32-byte public key; the signed content is
// "id.timestamp.body"; webhook-signature is a space-separated list of
// "version,base64" entries, of which the v1a ones are ed25519 signatures.
// It returns nil when any v1a entry verifies.
func edSpecVerify(pub string, w received) error {
	raw, ok := strings.CutPrefix(pub, "whpk_")
	if !ok {
		return fmt.Errorf("public key %q lacks whpk_", pub)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("public key %q is not the base64 of 32 bytes", pub)
	}
	id, ts := w.header.Get("webhook-id"), w.header.Get("webhook-timestamp")
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" {
		return fmt.Errorf("webhook-id %q, webhook-timestamp %q", id, ts)
	}
	if d := time.Since(time.Unix(unix, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s is out of tolerance", ts)
	}
	content := []byte(id + "." + ts + "." + string(w.body))
	for _, entry := range strings.Split(w.header.Get("webhook-signature"), " ") {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1a" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		if ed25519.Verify(ed25519.PublicKey(key), content, b) {
			return nil
		}
	}
	return errors.New("no v1a signature verifies")
}

// edPublicOf derives, with crypto/ed25519, the whpk_ public key of a whsk_
// private key (the 64-byte key or its 32-byte seed).
func edPublicOf(t *testing.T, priv string) string {
	t.Helper()
	raw, ok := strings.CutPrefix(priv, "whsk_")
	b, err := base64.StdEncoding.DecodeString(raw)
	if !ok || err != nil || (len(b) != ed25519.SeedSize && len(b) != ed25519.PrivateKeySize) {
		t.Fatalf("private key %q is not whsk_ and the base64 of 32 or 64 bytes", priv)
	}
	pub := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize]).Public().(ed25519.PublicKey)
	return "whpk_" + base64.StdEncoding.EncodeToString(pub)
}

// edSignatures returns the versions of a webhook's signature entries.
func edSignatures(w received) []string {
	var versions []string
	for _, entry := range strings.Fields(w.header.Get("webhook-signature")) {
		v, _, _ := strings.Cut(entry, ",")
		versions = append(versions, v)
	}
	return versions
}

type edEndpoint struct {
	ID              string  `json:"id"`
	Secret          string  `json:"secret"`
	SignatureScheme string  `json:"signature_scheme"`
	PublicKey       *string `json:"public_key"`
}

type edSecret struct {
	Secret          string    `json:"secret"`
	SignatureScheme string    `json:"signature_scheme"`
	PublicKey       string    `json:"public_key"`
	CreatedAt       time.Time `json:"created_at"`
}

// TestEd25519Signatures: an endpoint created or rotated with the ed25519
// scheme signs with a whsk_ key that the API shows only in the response
// that makes it; every other response shows the whpk_ public key; its
// deliveries carry v1a signatures that an implementation of the
// specification verifies with that public key, the old and new keys' both
// during a rotation's grace, whatever scheme the rotation leaves.
func TestEd25519Signatures(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv, recvHMAC := newReceiver(t, nil), newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	eps := "/v1/apps/" + appID + "/endpoints"

	var ep edEndpoint
	accMust(t, h, http.MethodPost, eps, adminKey, map[string]any{"url": recv.URL, "signature_scheme": "ed25519"}, http.StatusCreated, &ep)
	if ep.SignatureScheme != "ed25519" || ep.PublicKey == nil || !strings.HasPrefix(ep.Secret, "whsk_") {
		t.Fatalf("created %+v, want the ed25519 scheme, a whsk_ secret and a public_key", ep)
	}
	pub1 := *ep.PublicKey
	if want := edPublicOf(t, ep.Secret); pub1 != want {
		t.Fatalf("public_key = %s, want %s, that of the private key", pub1, want)
	}
	base := eps + "/" + ep.ID
	privates := []string{ep.Secret}

	// Reads show the public key, never the private one.
	noPrivate := func(what string, r accResp) {
		t.Helper()
		for _, p := range privates {
			if strings.Contains(string(r.body), "whsk_") || strings.Contains(string(r.body), strings.TrimPrefix(p, "whsk_")[:40]) {
				t.Errorf("%s shows a private key: %s", what, r.body)
			}
		}
	}
	checkReads := func(wantPub string) {
		t.Helper()
		var got edEndpoint
		noPrivate("GET endpoint", accMust(t, h, http.MethodGet, base, adminKey, nil, http.StatusOK, &got))
		if got.SignatureScheme != "ed25519" || got.PublicKey == nil || *got.PublicKey != wantPub {
			t.Errorf("GET endpoint: scheme %q, public_key %v; want ed25519 and %s", got.SignatureScheme, got.PublicKey, wantPub)
		}
		var sec edSecret
		noPrivate("GET secret", accMust(t, h, http.MethodGet, base+"/secret", adminKey, nil, http.StatusOK, &sec))
		if sec.Secret != "" || sec.SignatureScheme != "ed25519" || sec.PublicKey != wantPub {
			t.Errorf("GET secret = %+v, want no secret and the public key %s", sec, wantPub)
		}
		noPrivate("list endpoints", accMust(t, h, http.MethodGet, eps, adminKey, nil, http.StatusOK, nil))
	}
	checkReads(pub1)

	n := 0
	deliver := func(r *receiver) received {
		t.Helper()
		n++
		id := h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.created", "payload": map[string]any{"n": n}}).ID
		return accWebhook(t, r, id)
	}
	w := deliver(recv)
	if v := edSignatures(w); len(v) != 1 || v[0] != "v1a" {
		t.Errorf("webhook-signature = %q, want one v1a signature", w.header.Get("webhook-signature"))
	}
	if err := edSpecVerify(pub1, w); err != nil {
		t.Errorf("the public key does not verify the webhook: %v", err)
	}
	other := "whpk_" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	if err := edSpecVerify(other, w); err == nil {
		t.Error("another public key verifies the webhook")
	}

	// Rotation to a new ed25519 key (the endpoint's scheme by default):
	// both keys sign during the grace period.
	var rot edSecret
	accMust(t, h, http.MethodPost, base+"/secret/rotate", adminKey, map[string]any{"grace_period_seconds": 3600}, http.StatusOK, &rot)
	if rot.SignatureScheme != "ed25519" || !strings.HasPrefix(rot.Secret, "whsk_") || rot.PublicKey != edPublicOf(t, rot.Secret) || rot.PublicKey == pub1 {
		t.Fatalf("rotation returned %+v, want a new whsk_ key and its public key", rot)
	}
	pub2 := rot.PublicKey
	privates = append(privates, rot.Secret)
	checkReads(pub2)
	w = deliver(recv)
	if v := edSignatures(w); len(v) != 2 || v[0] != "v1a" || v[1] != "v1a" {
		t.Errorf("webhook-signature = %q in the grace period, want two v1a signatures", w.header.Get("webhook-signature"))
	}
	for name, pub := range map[string]string{"old": pub1, "new": pub2} {
		if err := edSpecVerify(pub, w); err != nil {
			t.Errorf("the %s public key does not verify a webhook in the grace period: %v", name, err)
		}
	}

	// A rotation from HMAC to ed25519: the whsec_ secret keeps signing (v1)
	// next to the new key (v1a) during the grace period.
	var hm edEndpoint
	accMust(t, h, http.MethodPost, eps, adminKey, map[string]any{"url": recvHMAC.URL}, http.StatusCreated, &hm)
	if hm.SignatureScheme != "hmac-sha256" || hm.PublicKey != nil || !strings.HasPrefix(hm.Secret, "whsec_") {
		t.Fatalf("created %+v, want hmac-sha256 by default, with no public key", hm)
	}
	accMust(t, h, http.MethodPost, eps+"/"+hm.ID+"/secret/rotate", adminKey,
		map[string]any{"grace_period_seconds": 3600, "signature_scheme": "ed25519"}, http.StatusOK, &rot)
	if rot.SignatureScheme != "ed25519" || rot.PublicKey != edPublicOf(t, rot.Secret) {
		t.Fatalf("rotation to ed25519 returned %+v", rot)
	}
	privates = append(privates, rot.Secret)
	var got edEndpoint
	accMust(t, h, http.MethodGet, eps+"/"+hm.ID, adminKey, nil, http.StatusOK, &got)
	if got.SignatureScheme != "ed25519" || got.PublicKey == nil || *got.PublicKey != rot.PublicKey {
		t.Errorf("GET endpoint after the switch: %+v, want ed25519 and %s", got, rot.PublicKey)
	}
	w = deliver(recvHMAC)
	if v := edSignatures(w); len(v) != 2 || v[0] != "v1" || v[1] != "v1a" {
		t.Errorf("webhook-signature = %q in the grace period, want a v1 and a v1a signature", w.header.Get("webhook-signature"))
	}
	if err := accVerify(t, hm.Secret, w); err != nil {
		t.Errorf("the old whsec_ secret does not verify (reference library): %v", err)
	}
	if err := edSpecVerify(rot.PublicKey, w); err != nil {
		t.Errorf("the new public key does not verify: %v", err)
	}

	// A key given in a rotation: a 32-byte seed.
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	given := "whsk_" + base64.StdEncoding.EncodeToString(seed)
	accMust(t, h, http.MethodPost, base+"/secret/rotate", adminKey, map[string]any{"secret": given, "grace_period_seconds": 0}, http.StatusOK, &rot)
	if rot.SignatureScheme != "ed25519" || rot.PublicKey != edPublicOf(t, given) {
		t.Errorf("rotation with a seed returned %+v, want its public key %s", rot, edPublicOf(t, given))
	}
	privates = append(privates, given)
	w = deliver(recv)
	// Key #1 keeps the grace of its own rotation; key #2 stopped at once.
	if v := edSignatures(w); len(v) != 2 {
		t.Errorf("webhook-signature = %q, want two v1a signatures", w.header.Get("webhook-signature"))
	}
	for name, pub := range map[string]string{"given": rot.PublicKey, "first, in its own grace period": pub1} {
		if err := edSpecVerify(pub, w); err != nil {
			t.Errorf("the %s key does not verify: %v", name, err)
		}
	}
	checkReads(rot.PublicKey)

	// Bad schemes are refused, naming the field.
	for _, tc := range []struct {
		name, path string
		body       any
		field      string
	}{
		{"CreateUnknownScheme", eps, map[string]any{"url": recv.URL, "signature_scheme": "rsa"}, "signature_scheme"},
		{"CreateUppercaseScheme", eps, map[string]any{"url": recv.URL, "signature_scheme": "HMAC-SHA256"}, "signature_scheme"},
		{"RotateUnknownScheme", base + "/secret/rotate", map[string]any{"signature_scheme": "v1a"}, "signature_scheme"},
		{"RotateKeyOfAnotherScheme", base + "/secret/rotate", map[string]any{"signature_scheme": "hmac-sha256", "secret": given}, "secret"},
		{"RotateShortKey", base + "/secret/rotate", map[string]any{"secret": "whsk_" + base64.StdEncoding.EncodeToString(seed[:31])}, "secret"},
	} {
		accCheckProblem(t, tc.name, accDo(t, h, http.MethodPost, tc.path, adminKey, tc.body), http.StatusUnprocessableEntity, tc.field)
	}
	checkReads(rot.PublicKey)

	// hookd logs no private key.
	for _, p := range privates {
		if h.logs.contains(strings.TrimPrefix(p, "whsk_")[:40]) || h.logs.contains("whsk_") {
			t.Errorf("a private key is in the logs")
		}
	}
}

// TestSignatureSchemeContract: the document states the rules on
// signature_scheme and on an ed25519 key given to a rotation as the server
// enforces them (as TestOpenAPIStatesWhatIsEnforced does for the others).
func TestSignatureSchemeContract(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	doc := conLoad(t, h)
	recv := newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	endpoints := "/v1/apps/" + appID + "/endpoints"
	endpoint := endpoints + "/" + h.mustCreate(endpoints, map[string]any{"url": recv.URL}).ID
	const createT, rotateT = "/v1/apps/{app_id}/endpoints", "/v1/apps/{app_id}/endpoints/{endpoint_id}/secret/rotate"
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	key := func(b []byte) string { return "whsk_" + base64.StdEncoding.EncodeToString(b) }

	for _, tc := range []struct {
		name, method, template, path, body string
		field                              string // of the server's 422, "" when it accepts
	}{
		{"HMACScheme", http.MethodPost, createT, endpoints, `{"url":"` + recv.URL + `/a","signature_scheme":"hmac-sha256"}`, ""},
		{"Ed25519Scheme", http.MethodPost, createT, endpoints, `{"url":"` + recv.URL + `/a","signature_scheme":"ed25519"}`, ""},
		{"UnknownScheme", http.MethodPost, createT, endpoints, `{"url":"` + recv.URL + `/a","signature_scheme":"ed448"}`, "signature_scheme"},
		{"EmptyScheme", http.MethodPost, createT, endpoints, `{"url":"` + recv.URL + `/a","signature_scheme":""}`, "signature_scheme"},
		{"RotateEd25519", http.MethodPost, rotateT, endpoint + "/secret/rotate", `{"signature_scheme":"ed25519"}`, ""},
		{"RotateUnknownScheme", http.MethodPost, rotateT, endpoint + "/secret/rotate", `{"signature_scheme":"rsa"}`, "signature_scheme"},
		{"Seed", http.MethodPost, rotateT, endpoint + "/secret/rotate", `{"secret":"` + key(priv.Seed()) + `"}`, ""},
		{"PrivateKey", http.MethodPost, rotateT, endpoint + "/secret/rotate", `{"secret":"` + key(priv) + `"}`, ""},
		{"ShortSeed", http.MethodPost, rotateT, endpoint + "/secret/rotate", `{"secret":"` + key(priv[:31]) + `"}`, "secret"},
		{"KeyOf48Bytes", http.MethodPost, rotateT, endpoint + "/secret/rotate", `{"secret":"` + key(priv[:48]) + `"}`, "secret"},
		{"LongKey", http.MethodPost, rotateT, endpoint + "/secret/rotate", `{"secret":"` + key(append(priv, 0)) + `"}`, "secret"},
		{"PublicKeyGiven", http.MethodPost, rotateT, endpoint + "/secret/rotate", `{"secret":"whpk_` + base64.StdEncoding.EncodeToString(priv[32:]) + `"}`, "secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docOK, docErr := conAccepts(t, doc.body(tc.method, tc.template), tc.body)
			r, err := accSend(h, tc.method, tc.path, adminKey, tc.body, nil)
			if err != nil {
				t.Fatal(err)
			}
			conAgree(t, tc.name, docOK, docErr, r, tc.field)
		})
	}
}
