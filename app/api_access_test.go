package app_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/app/api/openapitest"
	"github.com/hookd/hookd/outbox/outboxtest"
)

// The access tests drive authentication and app-scoped authorization, event
// idempotency, secret rotation and endpoint headers and filters through the
// /v1 API of a running hookd. Their helpers carry an acc prefix so that they
// cannot clash with other tests of the package.

// accResp is a response read in full.
type accResp struct {
	code   int
	body   []byte
	header http.Header
}

func (r accResp) String() string { return fmt.Sprintf("%d %s", r.code, bytes.TrimSpace(r.body)) }

// accSend sends a request to hookd with key as bearer token (none when
// empty), the extra headers, and body: nil for none, a string as is,
// anything else encoded as JSON. Responses are checked against the OpenAPI
// document by h.client. accSend does not fail the test, so that goroutines
// may call it.
func accSend(h *harness, method, path, key string, body any, header map[string]string) (accResp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return accResp{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.base+path, rd)
	if err != nil {
		return accResp{}, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return accResp{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return accResp{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return accResp{code: resp.StatusCode, body: b, header: resp.Header}, nil
}

// accDo is accSend for the test goroutine.
func accDo(t *testing.T, h *harness, method, path, key string, body any) accResp {
	t.Helper()
	r, err := accSend(h, method, path, key, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// accMust sends a request, fails the test unless hookd answers want, and
// decodes the body into out when out is not nil.
func accMust(t *testing.T, h *harness, method, path, key string, body any, want int, out any) accResp {
	t.Helper()
	r := accDo(t, h, method, path, key, body)
	if r.code != want {
		t.Fatalf("%s %s = %s, want %d", method, path, r, want)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, r.body, err)
		}
	}
	return r
}

// accCheckProblem reports unless r is an RFC 9457 problem with status and,
// when field is not empty, that field.
func accCheckProblem(t *testing.T, what string, r accResp, status int, field string) {
	t.Helper()
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
		Field  string `json:"field"`
	}
	ct := r.header.Get("Content-Type")
	if r.code != status || !strings.HasPrefix(ct, "application/problem+json") || json.Unmarshal(r.body, &p) != nil ||
		p.Status != status || !strings.HasPrefix(p.Type, "urn:hookd:problem:") || p.Detail == "" {
		t.Errorf("%s = %s (%s), want a %d problem", what, r, ct, status)
		return
	}
	if field != "" && p.Field != field {
		t.Errorf("%s: problem field = %q, want %q (%s)", what, p.Field, field, r)
	}
}

type accKey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	AppID      *string    `json:"app_id"`
	Prefix     string     `json:"prefix"`
	Key        string     `json:"key"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

type accEvent struct {
	ID      string          `json:"id"`
	AppID   string          `json:"app_id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

type accList[T any] struct {
	Data []T `json:"data"`
}

// accOp is a documented operation with what /openapi.json says of its
// security and request body.
type accOp struct {
	openapitest.Operation
	secured bool
	body    bool
}

// accOps lists h.doc.Operations() with their effective security (their
// own, or the document's) and whether they take a request body.
func accOps(t *testing.T, h *harness) []accOp {
	t.Helper()
	resp, err := http.Get(h.base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Security []map[string][]string                 `json:"security"`
		Paths    map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("decode /openapi.json: %v", err)
	}
	var ops []accOp
	for _, op := range h.doc.Operations() {
		raw, ok := doc.Paths[op.Path][strings.ToLower(op.Method)]
		if !ok {
			t.Fatalf("%s is not in /openapi.json", op)
		}
		var o struct {
			Security    *[]map[string][]string `json:"security"`
			RequestBody json.RawMessage        `json:"requestBody"`
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		sec := doc.Security
		if o.Security != nil {
			sec = *o.Security
		}
		ops = append(ops, accOp{Operation: op, secured: len(sec) > 0, body: len(o.RequestBody) > 0})
	}
	if len(ops) == 0 {
		t.Fatal("the document has no operations")
	}
	return ops
}

var accParam = regexp.MustCompile(`\{([^}/]+)\}`)

// accPath fills the parameters of a path template from ids.
func accPath(t *testing.T, tmpl string, ids map[string]string) string {
	t.Helper()
	return accParam.ReplaceAllStringFunc(tmpl, func(m string) string {
		v, ok := ids[m[1:len(m)-1]]
		if !ok {
			t.Fatalf("%s: the test has no ID for path parameter %s; teach it", tmpl, m)
		}
		return v
	})
}

// accAdminOnly reports whether op is refused to app-scoped keys.
func accAdminOnly(op openapitest.Operation) bool {
	switch op.String() {
	case "POST /v1/apps", "DELETE /v1/apps/{app_id}",
		"POST /v1/event-types", "PATCH /v1/event-types/{name}", "POST /v1/event-types/{name}/archive":
		return true
	}
	return op.Path == "/v1/api-keys" || strings.HasPrefix(op.Path, "/v1/api-keys/")
}

// accState is a snapshot of everything the API can change, to compare
// before and after requests that must change nothing. It leaves out what
// authentication itself updates (api_keys.last_used_at) and the outbox's
// bookkeeping columns.
func accState(t *testing.T, h *harness) string {
	t.Helper()
	var s string
	err := h.db.NewRaw(`SELECT json_build_object(
		'apps', (SELECT json_agg(a ORDER BY id) FROM applications a),
		'endpoints', (SELECT json_agg(e ORDER BY id) FROM endpoints e),
		'secrets', (SELECT json_agg(s ORDER BY id) FROM endpoint_secrets s),
		'events', (SELECT json_agg(json_build_object('id', id, 'tenant', tenant, 'topic', topic) ORDER BY id) FROM outbox_events),
		'deliveries', (SELECT json_agg(json_build_object('id', id, 'status', status, 'attempts', attempts) ORDER BY id) FROM deliveries),
		'links', (SELECT json_agg(l ORDER BY id) FROM links l),
		'keys', (SELECT json_agg(json_build_object('id', id, 'name', name, 'app_id', app_id, 'revoked_at', revoked_at) ORDER BY id) FROM api_keys),
		'event_types', (SELECT json_agg(et ORDER BY name) FROM event_types et),
		'idempotency', (SELECT json_agg(i ORDER BY app_id, key) FROM event_idempotency i),
		'portal_sessions', (SELECT json_agg(json_build_object('id', id, 'app_id', app_id, 'revoked_at', revoked_at) ORDER BY id) FROM portal_sessions)
	)::text`).Scan(t.Context(), &s)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return s
}

// accDatabaseURL returns a database URL on the harness's own schema, for
// the CLI. It reads the schema from the harness's connection.
func accDatabaseURL(t *testing.T, h *harness) string {
	t.Helper()
	var schema string
	if err := h.db.NewRaw(`SELECT current_schema()`).Scan(t.Context(), &schema); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(schema, "test_") {
		t.Fatalf("current schema %q is not a test schema", schema)
	}
	u, err := url.Parse(outboxtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// accWebhook waits for the webhook of event id at r.
func accWebhook(t *testing.T, r *receiver, id string) received {
	t.Helper()
	var got received
	waitFor(t, "the webhook of "+id, func() bool {
		for _, req := range r.got() {
			if req.header.Get("webhook-id") == id {
				got = req
				return true
			}
		}
		return false
	})
	return got
}

// accVerify reports whether the reference Standard Webhooks verifier
// accepts w with secret.
func accVerify(t *testing.T, secret string, w received) error {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("NewWebhook(%q): %v", secret, err)
	}
	return wh.Verify(w.body, w.header)
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	h := start(t, nil)

	// Created through the API, the key is in the response and nowhere else.
	var k accKey
	r := accMust(t, h, http.MethodPost, "/v1/api-keys", adminKey, map[string]any{"name": "deploy"}, http.StatusCreated, &k)
	if !strings.HasPrefix(k.Key, "hk_") || len(k.Key) < 32 || !strings.HasPrefix(k.ID, "key_") || k.Name != "deploy" ||
		k.Prefix == "" || !strings.HasPrefix(k.Key, k.Prefix) || len(k.Prefix) >= len(k.Key)/2 || k.AppID != nil || k.RevokedAt != nil {
		t.Fatalf("POST /v1/api-keys = %s, want an admin key hk_... with its prefix", r)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.body, &fields); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(k.Key))
	for name := range fields {
		if strings.Contains(strings.ToLower(name), "hash") {
			t.Errorf("creation response has field %s", name)
		}
	}
	for _, leak := range []string{hex.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString(sum[:]), base64.RawURLEncoding.EncodeToString(sum[:])} {
		if bytes.Contains(r.body, []byte(leak)) {
			t.Errorf("creation response carries the key's hash: %s", r.body)
		}
	}
	if n := bytes.Count(r.body, []byte(k.Key)); n != 1 {
		t.Errorf("creation response carries the key %d times, want once (as key)", n)
	}

	// The key works on /v1, as an admin.
	accMust(t, h, http.MethodGet, "/v1/apps", k.Key, nil, http.StatusOK, nil)
	accMust(t, h, http.MethodPost, "/v1/apps", k.Key, map[string]any{"name": "made-by-key"}, http.StatusCreated, nil)

	// Listed and read without the key.
	var list accList[json.RawMessage]
	r = accMust(t, h, http.MethodGet, "/v1/api-keys", adminKey, nil, http.StatusOK, &list)
	secretPart := strings.TrimPrefix(k.Key, k.Prefix)
	if bytes.Contains(r.body, []byte(secretPart)) {
		t.Errorf("GET /v1/api-keys shows the key: %s", r.body)
	}
	var listed *accKey
	for _, raw := range list.Data {
		var item accKey
		if err := json.Unmarshal(raw, &item); err != nil {
			t.Fatal(err)
		}
		if item.ID == k.ID {
			listed = &item
			var m map[string]any
			_ = json.Unmarshal(raw, &m)
			if _, ok := m["key"]; ok {
				t.Errorf("listed key has a key field: %s", raw)
			}
		}
	}
	if listed == nil {
		t.Fatalf("GET /v1/api-keys = %s, want it to list %s", r, k.ID)
	}
	if listed.Prefix != k.Prefix || listed.Name != "deploy" || listed.LastUsedAt == nil || listed.RevokedAt != nil {
		t.Errorf("listed key = %+v, want prefix %s, name deploy, used and not revoked", *listed, k.Prefix)
	}
	var got accKey
	r = accMust(t, h, http.MethodGet, "/v1/api-keys/"+k.ID, adminKey, nil, http.StatusOK, &got)
	if got.ID != k.ID || got.Key != "" || bytes.Contains(r.body, []byte(secretPart)) {
		t.Errorf("GET /v1/api-keys/%s = %s, want the key without its secret", k.ID, r)
	}

	// The database holds a SHA-256 of the key, and the key in no column.
	var rows []string
	if err := h.db.NewRaw(`SELECT row_to_json(k)::text FROM api_keys k`).Scan(t.Context(), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("%d api_keys rows, want 1", len(rows))
	}
	for _, leak := range []string{k.Key, secretPart, hex.EncodeToString([]byte(k.Key)), base64.StdEncoding.EncodeToString([]byte(k.Key))} {
		if strings.Contains(rows[0], leak) {
			t.Errorf("api_keys stores the key in plain text: %s", rows[0])
		}
	}
	var hash []byte
	if err := h.db.NewRaw(`SELECT hash FROM api_keys WHERE id = ?`, k.ID).Scan(t.Context(), &hash); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hash, sum[:]) {
		t.Errorf("stored hash = %x, want the SHA-256 of the key %x", hash, sum)
	}

	// Revoked, it stops working at once; revoking again is harmless.
	var revoked accKey
	accMust(t, h, http.MethodPost, "/v1/api-keys/"+k.ID+"/revoke", adminKey, nil, http.StatusOK, &revoked)
	if revoked.RevokedAt == nil {
		t.Fatalf("revoke returned %+v without revoked_at", revoked)
	}
	accCheckProblem(t, "GET /v1/apps with a revoked key", accDo(t, h, http.MethodGet, "/v1/apps", k.Key, nil), http.StatusUnauthorized, "")
	var again accKey
	accMust(t, h, http.MethodPost, "/v1/api-keys/"+k.ID+"/revoke", adminKey, nil, http.StatusOK, &again)
	if again.RevokedAt == nil || !again.RevokedAt.Equal(*revoked.RevokedAt) {
		t.Errorf("second revoke: revoked_at = %v, want the first %v", again.RevokedAt, revoked.RevokedAt)
	}
	accCheckProblem(t, "revoke of a missing key", accDo(t, h, http.MethodPost, "/v1/api-keys/key_00000000000000000000000000/revoke", adminKey, nil), http.StatusNotFound, "")
	accCheckProblem(t, "key for a missing app", accDo(t, h, http.MethodPost, "/v1/api-keys", adminKey, map[string]any{"name": "x", "app_id": missingApp}), http.StatusUnprocessableEntity, "app_id")
	accCheckProblem(t, "key without a name", accDo(t, h, http.MethodPost, "/v1/api-keys", adminKey, map[string]any{"name": " "}), http.StatusUnprocessableEntity, "name")

	// The CLI, in process, on the harness's database.
	dbURL := accDatabaseURL(t, h)
	getenv := func(name string) string {
		if name == "HOOKD_DATABASE_URL" {
			return dbURL
		}
		return ""
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := app.Main(t.Context(), args, getenv, &out, log)
		return out.String(), err
	}
	keyID := func(name string) string {
		var l accList[accKey]
		accMust(t, h, http.MethodGet, "/v1/api-keys", adminKey, nil, http.StatusOK, &l)
		for _, item := range l.Data {
			if item.Name == name {
				return item.ID
			}
		}
		t.Fatalf("no key named %s in %+v", name, l.Data)
		return ""
	}
	lineOf := func(out, id string) string {
		for line := range strings.Lines(out) {
			if strings.HasPrefix(line, id+" ") {
				return line
			}
		}
		return ""
	}

	out, err := cli("apikey", "create", "--name", "ci")
	cliKey := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(cliKey, "hk_") || strings.ContainsAny(cliKey, " \n") {
		t.Fatalf("apikey create = %q, %v; want one hk_ key", out, err)
	}
	accMust(t, h, http.MethodGet, "/v1/apps", cliKey, nil, http.StatusOK, nil)
	ciID := keyID("ci")
	out, err = cli("apikey", "list")
	if line := lineOf(out, ciID); err != nil || !strings.Contains(line, " ci ") || !strings.Contains(line, " admin ") {
		t.Errorf("apikey list = %q, %v; want a line for %s, ci, admin", out, err, ciID)
	}
	if strings.Contains(out, cliKey[len(cliKey)-20:]) {
		t.Errorf("apikey list shows the key: %q", out)
	}
	out, err = cli("apikey", "revoke", ciID)
	if err != nil || !strings.Contains(out, "revoked "+ciID) {
		t.Errorf("apikey revoke = %q, %v", out, err)
	}
	accCheckProblem(t, "GET /v1/apps with a key revoked by the CLI", accDo(t, h, http.MethodGet, "/v1/apps", cliKey, nil), http.StatusUnauthorized, "")
	if out, err := cli("apikey", "revoke", "key_00000000000000000000000000"); err == nil {
		t.Errorf("apikey revoke of a missing key = %q, nil; want an error", out)
	}

	keys := h.count(`SELECT count(*) FROM api_keys`)
	for _, args := range [][]string{
		{"apikey", "create"},
		{"apikey", "create", "--name", ""},
		{"apikey", "create", "--name", "x", "extra"},
		{"apikey", "create", "--name", "x", "--app", missingApp},
	} {
		if out, err := cli(args...); err == nil {
			t.Errorf("%q = %q, nil; want an error", args, out)
		}
	}
	if n := h.count(`SELECT count(*) FROM api_keys`); n != keys {
		t.Errorf("failed creations left %d keys, want %d", n, keys)
	}

	// --app scopes the key to one application.
	var scopedApp, otherApp struct {
		ID string `json:"id"`
	}
	accMust(t, h, http.MethodPost, "/v1/apps", adminKey, map[string]any{"name": "scoped"}, http.StatusCreated, &scopedApp)
	accMust(t, h, http.MethodPost, "/v1/apps", adminKey, map[string]any{"name": "other"}, http.StatusCreated, &otherApp)
	out, err = cli("apikey", "create", "--name", "tenant", "--app", scopedApp.ID)
	scopedKey := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(scopedKey, "hk_") {
		t.Fatalf("apikey create --app = %q, %v", out, err)
	}
	var apps accList[struct {
		ID string `json:"id"`
	}]
	accMust(t, h, http.MethodGet, "/v1/apps", scopedKey, nil, http.StatusOK, &apps)
	if len(apps.Data) != 1 || apps.Data[0].ID != scopedApp.ID {
		t.Errorf("GET /v1/apps with the scoped key = %+v, want only %s", apps.Data, scopedApp.ID)
	}
	accMust(t, h, http.MethodGet, "/v1/apps/"+scopedApp.ID, scopedKey, nil, http.StatusOK, nil)
	accCheckProblem(t, "scoped CLI key on another app", accDo(t, h, http.MethodGet, "/v1/apps/"+otherApp.ID, scopedKey, nil), http.StatusNotFound, "")
	accCheckProblem(t, "scoped CLI key creating an app", accDo(t, h, http.MethodPost, "/v1/apps", scopedKey, map[string]any{"name": "x"}), http.StatusForbidden, "")
	tenantID := keyID("tenant")
	var tenant accKey
	accMust(t, h, http.MethodGet, "/v1/api-keys/"+tenantID, adminKey, nil, http.StatusOK, &tenant)
	if tenant.AppID == nil || *tenant.AppID != scopedApp.ID {
		t.Errorf("key made with --app has app_id %v, want %s", tenant.AppID, scopedApp.ID)
	}
	out, _ = cli("apikey", "list")
	if line := lineOf(out, tenantID); !strings.Contains(line, " "+scopedApp.ID+" ") || strings.Contains(line, " admin ") {
		t.Errorf("apikey list line of the scoped key = %q, want scope %s", line, scopedApp.ID)
	}
}

func TestAppScopedKeys(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, nil)

	type fixture struct{ app, endpoint, event, delivery, recovery, session string }
	setup := func(name string) fixture {
		var f fixture
		f.app = h.mustCreate("/v1/apps", map[string]any{"name": name}).ID
		f.endpoint = h.mustCreate("/v1/apps/"+f.app+"/endpoints", map[string]any{"url": recv.URL + "/" + name}).ID
		f.event = h.mustCreate("/v1/apps/"+f.app+"/events", map[string]any{"type": "order.created", "payload": map[string]any{"app": name}}).ID
		waitFor(t, "the delivery of "+name, func() bool {
			return h.count(`SELECT count(*) FROM deliveries WHERE event_id = ? AND status = 'succeeded'`, f.event) == 1
		})
		if err := h.db.NewRaw(`SELECT id FROM deliveries WHERE event_id = ?`, f.event).Scan(t.Context(), &f.delivery); err != nil {
			t.Fatal(err)
		}
		var rcv struct {
			ID string `json:"id"`
		}
		accMust(t, h, http.MethodPost, "/v1/apps/"+f.app+"/endpoints/"+f.endpoint+"/recover", adminKey,
			map[string]any{"since": time.Now().Add(-time.Hour), "dry_run": true}, http.StatusAccepted, &rcv)
		f.recovery = rcv.ID
		f.session = h.openPortal(f.app, nil).ID
		return f
	}
	a, b := setup("a"), setup("b")

	var scoped, other, revoked accKey
	accMust(t, h, http.MethodPost, "/v1/api-keys", adminKey, map[string]any{"name": "a-only", "app_id": a.app}, http.StatusCreated, &scoped)
	if scoped.AppID == nil || *scoped.AppID != a.app {
		t.Fatalf("scoped key app_id = %v, want %s", scoped.AppID, a.app)
	}
	accMust(t, h, http.MethodPost, "/v1/api-keys", adminKey, map[string]any{"name": "other admin"}, http.StatusCreated, &other)
	accMust(t, h, http.MethodPost, "/v1/api-keys", adminKey, map[string]any{"name": "revoked", "app_id": a.app}, http.StatusCreated, &revoked)
	accMust(t, h, http.MethodPost, "/v1/api-keys/"+revoked.ID+"/revoke", adminKey, nil, http.StatusOK, nil)
	// A bulk retry of B's dead letters, started by an admin.
	var job struct {
		ID string `json:"id"`
	}
	accMust(t, h, http.MethodPost, "/v1/dead-letters/retry", adminKey, map[string]any{"app_id": b.app}, http.StatusAccepted, &job)

	idsOf := func(f fixture) map[string]string {
		return map[string]string{
			"app_id": f.app, "endpoint_id": f.endpoint, "event_id": f.event, "delivery_id": f.delivery,
			"key_id": other.ID, "name": "link.clicked", "job_id": job.ID, "recovery_id": f.recovery,
			"session_id": f.session,
		}
	}
	// A minimal valid body for every operation that takes one.
	bodies := map[string]any{
		"POST /v1/api-keys":                                            map[string]any{"name": "sneaky"},
		"POST /v1/apps":                                                map[string]any{"name": "sneaky"},
		"PATCH /v1/apps/{app_id}":                                      map[string]any{"name": "renamed"},
		"POST /v1/apps/{app_id}/endpoints":                             map[string]any{"url": recv.URL + "/new"},
		"PATCH /v1/apps/{app_id}/endpoints/{endpoint_id}":              map[string]any{"description": "changed"},
		"POST /v1/apps/{app_id}/endpoints/{endpoint_id}/disable":       map[string]any{"reason": "testing"},
		"POST /v1/apps/{app_id}/endpoints/{endpoint_id}/secret/rotate": map[string]any{"grace_period_seconds": 0},
		"POST /v1/apps/{app_id}/events":                                map[string]any{"type": "order.created", "payload": map[string]any{"n": 1}},
		"POST /v1/apps/{app_id}/links":                                 map[string]any{"url": "https://example.com/"},
		"POST /v1/event-types":                                         map[string]any{"name": "acc.sneaky"},
		"PATCH /v1/event-types/{name}":                                 map[string]any{"description": "changed"},
		"POST /v1/dead-letters/retry":                                  map[string]any{},
		"POST /v1/apps/{app_id}/endpoints/{endpoint_id}/recover":       map[string]any{"since": time.Now().Add(-time.Hour), "dry_run": true},
		"POST /v1/apps/{app_id}/portal-sessions":                       map[string]any{"expires_in_seconds": 600},
	}
	ops := accOps(t, h)
	bodyOf := func(op accOp) any {
		body, ok := bodies[op.String()]
		if op.body && !ok {
			t.Errorf("%s takes a body the test does not know; add one", op)
		}
		return body
	}

	// Only the health checks and the short link redirect go without a key.
	var open []string
	for _, op := range ops {
		if !op.secured {
			open = append(open, op.String())
		} else if !strings.HasPrefix(op.Path, "/v1/") {
			t.Errorf("%s needs a key but is outside /v1", op)
		}
	}
	if want := []string{"GET /healthz", "GET /r/{code}", "GET /readyz"}; !slices.Equal(open, want) {
		t.Errorf("operations without security = %q, want %q", open, want)
	}
	for _, path := range []string{"/openapi.json", "/docs"} {
		resp, err := http.Get(h.base + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a key = %d, want 200", path, resp.StatusCode)
		}
	}

	before := accState(t, h)

	// Every secured operation answers 401 to a missing, wrong or revoked key.
	for name, key := range map[string]string{
		"no key":      "",
		"wrong key":   "hk_" + strings.ToLower(rand.Text()),
		"not a key":   "wrong",
		"revoked key": revoked.Key,
	} {
		for _, op := range ops {
			if !op.secured {
				continue
			}
			path := accPath(t, op.Path, idsOf(a))
			r := accDo(t, h, op.Method, path, key, bodyOf(op))
			accCheckProblem(t, fmt.Sprintf("%s %s with %s", op.Method, path, name), r, http.StatusUnauthorized, "")
			if r.code == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s with %s: WWW-Authenticate = %q", op, name, r.header.Get("WWW-Authenticate"))
			}
		}
	}
	if after := accState(t, h); after != before {
		t.Errorf("unauthenticated requests changed the state:\nbefore %s\nafter  %s", before, after)
	}

	// The scoped key gets 404 for every operation on B, 403 for admin-only
	// ones, and 404 for B's resources under A's path.
	var global []accOp
	for _, op := range ops {
		if !op.secured {
			continue
		}
		if !strings.Contains(op.Path, "{app_id}") {
			if !accAdminOnly(op.Operation) {
				global = append(global, op)
			}
			continue
		}
		want := http.StatusNotFound
		if accAdminOnly(op.Operation) {
			want = http.StatusForbidden
		}
		path := accPath(t, op.Path, idsOf(b))
		accCheckProblem(t, "scoped key: "+op.Method+" "+path+" (app B)", accDo(t, h, op.Method, path, scoped.Key, bodyOf(op)), want, "")

		if want == http.StatusNotFound && len(accParam.FindAllString(op.Path, -1)) > 1 {
			// More IDs than the app's: A's app with B's resources.
			mixed := idsOf(b)
			mixed["app_id"] = a.app
			path := accPath(t, op.Path, mixed)
			accCheckProblem(t, "scoped key: "+op.Method+" "+path+" (A's path, B's IDs)", accDo(t, h, op.Method, path, scoped.Key, bodyOf(op)), http.StatusNotFound, "")
		}
	}
	// Admin-only operations are refused even on the key's own app.
	for _, op := range ops {
		if op.secured && accAdminOnly(op.Operation) {
			path := accPath(t, op.Path, idsOf(a))
			accCheckProblem(t, "scoped key: "+op.Method+" "+path+" (admin only)", accDo(t, h, op.Method, path, scoped.Key, bodyOf(op)), http.StatusForbidden, "")
		}
	}
	if after := accState(t, h); after != before {
		t.Errorf("refused requests of the scoped key changed the state:\nbefore %s\nafter  %s", before, after)
	}

	// Reads outside any app: only its app is listed; event types are shared.
	// Dead letters are filtered to the key's app: B's are not found.
	want := map[string]int{
		"GET /v1/apps": http.StatusOK, "GET /v1/event-types": http.StatusOK, "GET /v1/event-types/{name}": http.StatusOK,
		"GET /v1/dead-letters": http.StatusOK, "POST /v1/dead-letters/retry": http.StatusAccepted,
		"POST /v1/dead-letters/{delivery_id}/retry": http.StatusConflict, // A's delivery succeeded
		"GET /v1/dead-letters/retries/{job_id}":     http.StatusNotFound, // an admin's job on B
	}
	for _, op := range global {
		status, ok := want[op.String()]
		if !ok {
			t.Errorf("%s: the test does not know whether app-scoped keys may call it; classify it", op)
			continue
		}
		r := accDo(t, h, op.Method, accPath(t, op.Path, idsOf(a)), scoped.Key, bodyOf(op))
		if r.code != status {
			t.Errorf("scoped key: %s = %d, want %d", op, r.code, status)
		}
	}
	accCheckProblem(t, "scoped key: retry of B's delivery", accDo(t, h, http.MethodPost, "/v1/dead-letters/"+b.delivery+"/retry", scoped.Key, nil), http.StatusNotFound, "")
	accCheckProblem(t, "scoped key: list of B's dead letters", accDo(t, h, http.MethodGet, "/v1/dead-letters?app_id="+b.app, scoped.Key, nil), http.StatusNotFound, "")
	accCheckProblem(t, "scoped key: bulk retry of B's dead letters", accDo(t, h, http.MethodPost, "/v1/dead-letters/retry", scoped.Key, map[string]any{"app_id": b.app}), http.StatusNotFound, "")
	var apps accList[struct {
		ID string `json:"id"`
	}]
	accMust(t, h, http.MethodGet, "/v1/apps", scoped.Key, nil, http.StatusOK, &apps)
	if len(apps.Data) != 1 || apps.Data[0].ID != a.app {
		t.Errorf("GET /v1/apps with the scoped key = %+v, want only %s", apps.Data, a.app)
	}
	var types accList[struct {
		Name string `json:"name"`
	}]
	accMust(t, h, http.MethodGet, "/v1/event-types", scoped.Key, nil, http.StatusOK, &types)
	if !slices.ContainsFunc(types.Data, func(et struct {
		Name string `json:"name"`
	}) bool {
		return et.Name == "link.clicked"
	}) {
		t.Errorf("GET /v1/event-types with the scoped key = %+v, want link.clicked", types.Data)
	}
	// Query filters naming B's resources find nothing under A.
	for _, q := range []string{"endpoint_id=" + b.endpoint, "event_id=" + b.event} {
		var l accList[json.RawMessage]
		accMust(t, h, http.MethodGet, "/v1/apps/"+a.app+"/deliveries?"+q, scoped.Key, nil, http.StatusOK, &l)
		if len(l.Data) != 0 {
			t.Errorf("deliveries of A with %s = %d items, want none", q, len(l.Data))
		}
	}

	// Everything under A works with the scoped key; deletions go last.
	var own []accOp
	for _, op := range ops {
		if op.secured && strings.Contains(op.Path, "{app_id}") && !accAdminOnly(op.Operation) {
			own = append(own, op)
		}
	}
	slices.SortStableFunc(own, func(x, y accOp) int {
		return accBoolCmp(x.Method == http.MethodDelete, y.Method == http.MethodDelete)
	})
	for _, op := range own {
		path := accPath(t, op.Path, idsOf(a))
		r := accDo(t, h, op.Method, path, scoped.Key, bodyOf(op))
		if r.code < 200 || r.code > 299 {
			t.Errorf("scoped key: %s %s = %s, want success", op.Method, path, r)
			continue
		}
		// Whatever it returns belongs to A.
		var v struct {
			AppID *string `json:"app_id"`
			Data  []struct {
				AppID *string `json:"app_id"`
			} `json:"data"`
		}
		if len(r.body) > 0 {
			if err := json.Unmarshal(r.body, &v); err != nil {
				t.Errorf("%s %s: %v", op.Method, path, err)
			}
		}
		if v.AppID != nil && *v.AppID != a.app {
			t.Errorf("%s %s returned app %s", op.Method, path, *v.AppID)
		}
		for _, item := range v.Data {
			if item.AppID != nil && *item.AppID != a.app {
				t.Errorf("%s %s listed an item of app %s", op.Method, path, *item.AppID)
			}
		}
	}
	var renamed struct {
		Name string `json:"name"`
	}
	accMust(t, h, http.MethodGet, "/v1/apps/"+a.app, scoped.Key, nil, http.StatusOK, &renamed)
	if renamed.Name != "renamed" {
		t.Errorf("A's name = %q after PATCH with the scoped key, want renamed", renamed.Name)
	}
	if n := h.count(`SELECT count(*) FROM endpoints WHERE id = ?`, a.endpoint); n != 0 {
		t.Errorf("A's endpoint survived DELETE with the scoped key")
	}
	if n := h.count(`SELECT count(*) FROM outbox_events WHERE tenant = ?`, a.app); n != 2 {
		t.Errorf("A has %d events, want 2 (setup and the scoped key's)", n)
	}
	if n := h.count(`SELECT count(*) FROM outbox_events WHERE tenant = ?`, b.app); n != 1 {
		t.Errorf("B has %d events, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM api_keys WHERE revoked_at IS NULL AND id = ?`, other.ID); n != 1 {
		t.Errorf("the scoped key revoked another key")
	}
}

func accBoolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func TestEventIdempotency(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	path := "/v1/apps/" + appID + "/events"
	publish := func(key string, body any) accResp {
		t.Helper()
		var hdr map[string]string
		if key != "" {
			hdr = map[string]string{"Idempotency-Key": key}
		}
		r, err := accSend(h, http.MethodPost, path, adminKey, body, hdr)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	decode := func(r accResp) accEvent {
		t.Helper()
		var ev accEvent
		if err := json.Unmarshal(r.body, &ev); err != nil || !strings.HasPrefix(ev.ID, "evt_") {
			t.Fatalf("event response %s: %v", r, err)
		}
		return ev
	}
	mustPublish := func(what, key string, body any, status int) accEvent {
		t.Helper()
		r := publish(key, body)
		replayed := r.header.Get("Idempotent-Replayed")
		switch {
		case r.code != status:
			t.Fatalf("%s = %s, want %d", what, r, status)
		case status == http.StatusOK && replayed != "true":
			t.Errorf("%s: Idempotent-Replayed = %q, want true", what, replayed)
		case status == http.StatusCreated && replayed == "true":
			t.Errorf("%s: a new event says Idempotent-Replayed: true", what)
		}
		return decode(r)
	}
	events := func() int { return h.count(`SELECT count(*) FROM outbox_events WHERE tenant = ?`, appID) }

	order := map[string]any{"type": "order.created", "payload": map[string]any{"order": 1, "total": "9.99"}}
	first := mustPublish("first publish", "k-1", order, http.StatusCreated)
	again := mustPublish("repeat", "k-1", order, http.StatusOK)
	if again.ID != first.ID || again.Type != "order.created" || !bytes.Equal(accCompact(t, again.Payload), accCompact(t, first.Payload)) {
		t.Errorf("repeat returned %+v, want the first event %+v", again, first)
	}
	for what, body := range map[string]any{
		"other payload": map[string]any{"type": "order.created", "payload": map[string]any{"order": 2}},
		"other type":    map[string]any{"type": "order.updated", "payload": map[string]any{"order": 1, "total": "9.99"}},
	} {
		accCheckProblem(t, "same key, "+what, publish("k-1", body), http.StatusConflict, "")
	}
	if n := events(); n != 1 {
		t.Errorf("%d events after replays and conflicts, want 1", n)
	}

	// The body's id is the key when no header is sent.
	withID := map[string]any{"type": "order.created", "payload": map[string]any{"order": 7}, "id": "order-7"}
	byID := mustPublish("publish with id", "", withID, http.StatusCreated)
	if byID.ID == first.ID {
		t.Fatal("a new key returned the first event")
	}
	if ev := mustPublish("repeat with id", "", withID, http.StatusOK); ev.ID != byID.ID {
		t.Errorf("repeat with id returned %s, want %s", ev.ID, byID.ID)
	}
	if ev := mustPublish("header equal to the id", "order-7", withID, http.StatusOK); ev.ID != byID.ID {
		t.Errorf("header equal to the id returned %s, want %s", ev.ID, byID.ID)
	}
	accCheckProblem(t, "header and another id", publish("k-2", withID), http.StatusUnprocessableEntity, "id")
	if n := events(); n != 2 {
		t.Errorf("%d events, want 2", n)
	}

	// A key older than the window publishes anew, even another payload.
	if _, err := h.db.NewRaw(`UPDATE event_idempotency SET created_at = clock_timestamp() - interval '25 hours' WHERE app_id = ? AND key = 'k-1'`, appID).Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	renewed := mustPublish("publish with an expired key", "k-1", map[string]any{"type": "order.created", "payload": map[string]any{"order": 3}}, http.StatusCreated)
	if renewed.ID == first.ID {
		t.Errorf("an expired key returned the old event %s", first.ID)
	}
	if ev := mustPublish("repeat of the renewed key", "k-1", map[string]any{"type": "order.created", "payload": map[string]any{"order": 3}}, http.StatusOK); ev.ID != renewed.ID {
		t.Errorf("repeat of the renewed key returned %s, want %s", ev.ID, renewed.ID)
	}
	if n := events(); n != 3 {
		t.Errorf("%d events, want 3", n)
	}

	// Concurrent requests with one key publish one event.
	app2 := h.mustCreate("/v1/apps", map[string]any{"name": "race"}).ID
	const n = 20
	var (
		wg      sync.WaitGroup
		ready   = make(chan struct{})
		results [n]accResp
		errs    [n]error
	)
	body := `{"type":"order.created","payload":{"order":42}}`
	for i := range n {
		wg.Go(func() {
			<-ready
			results[i], errs[i] = accSend(h, http.MethodPost, "/v1/apps/"+app2+"/events", adminKey, body, map[string]string{"Idempotency-Key": "race"})
		})
	}
	close(ready)
	wg.Wait()
	ids, created := map[string]int{}, 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		switch r.code {
		case http.StatusCreated:
			created++
		case http.StatusOK:
			if r.header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("request %d: 200 without Idempotent-Replayed: true", i)
			}
		default:
			t.Errorf("request %d = %s, want 201 or 200", i, r)
			continue
		}
		ids[decode(r).ID]++
	}
	if created != 1 || len(ids) != 1 {
		t.Errorf("%d concurrent requests: %d created, event IDs %v; want one 201 and one ID", n, created, ids)
	}
	if c := h.count(`SELECT count(*) FROM outbox_events WHERE tenant = ?`, app2); c != 1 {
		t.Errorf("%d events in the outbox after %d concurrent requests, want 1", c, n)
	}
}

func accCompact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("compact %s: %v", b, err)
	}
	return out.Bytes()
}

func TestSecretRotation(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	recv := newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	ep := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL})
	base := "/v1/apps/" + appID + "/endpoints/" + ep.ID
	type secret struct {
		Secret    string    `json:"secret"`
		CreatedAt time.Time `json:"created_at"`
	}
	current := func() string {
		t.Helper()
		var s secret
		accMust(t, h, http.MethodGet, base+"/secret", adminKey, nil, http.StatusOK, &s)
		return s.Secret
	}
	rotate := func(body any) string {
		t.Helper()
		var s secret
		accMust(t, h, http.MethodPost, base+"/secret/rotate", adminKey, body, http.StatusOK, &s)
		if !strings.HasPrefix(s.Secret, "whsec_") || s.CreatedAt.IsZero() {
			t.Fatalf("rotation returned %+v", s)
		}
		return s.Secret
	}
	n := 0
	deliver := func() received {
		t.Helper()
		n++
		id := h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.created", "payload": map[string]any{"n": n}}).ID
		return accWebhook(t, recv, id)
	}
	signatures := func(w received) []string {
		sigs := strings.Fields(w.header.Get("webhook-signature"))
		for _, s := range sigs {
			if !strings.HasPrefix(s, "v1,") {
				t.Errorf("signature %q is not v1,...", s)
			}
		}
		return sigs
	}

	s1 := ep.Secret
	if got := current(); got != s1 {
		t.Fatalf("GET secret = %q, want the creation secret %q", got, s1)
	}

	// During the grace period both secrets sign.
	s2 := rotate(map[string]any{"grace_period_seconds": 3600})
	if s2 == s1 {
		t.Fatal("rotation kept the secret")
	}
	if got := current(); got != s2 {
		t.Errorf("GET secret after rotation = %q, want the new one", got)
	}
	w := deliver()
	if sigs := signatures(w); len(sigs) != 2 {
		t.Errorf("webhook-signature = %q, want two signatures", w.header.Get("webhook-signature"))
	}
	for name, s := range map[string]string{"old": s1, "new": s2} {
		if err := accVerify(t, s, w); err != nil {
			t.Errorf("the %s secret does not verify a webhook in the grace period: %v", name, err)
		}
	}

	// After a short grace, the secret it retired stops signing; the first
	// one keeps the grace of its own rotation.
	s3 := rotate(map[string]any{"grace_period_seconds": 1})
	if s3 == s2 || s3 == s1 {
		t.Fatal("rotation kept the secret")
	}
	if got := current(); got != s3 {
		t.Errorf("GET secret after the second rotation = %q, want the newest", got)
	}
	waitFor(t, "the grace period to pass", func() bool {
		return h.count(`SELECT count(*) FROM endpoint_secrets WHERE endpoint_id = ? AND (expires_at IS NULL OR expires_at > clock_timestamp())`, ep.ID) == 2
	})
	w = deliver()
	if sigs := signatures(w); len(sigs) != 2 {
		t.Errorf("webhook-signature = %q after the short grace period, want two signatures", w.header.Get("webhook-signature"))
	}
	for name, s := range map[string]string{"newest": s3, "first, in its own grace period": s1} {
		if err := accVerify(t, s, w); err != nil {
			t.Errorf("the %s secret does not verify: %v", name, err)
		}
	}
	if err := accVerify(t, s2, w); err == nil {
		t.Error("secret #2 still verifies after its grace period")
	}
	if got := current(); got != s3 {
		t.Errorf("GET secret = %q, want the newest", got)
	}

	// Bad rotations change nothing.
	short := "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, tc := range []struct {
		name  string
		body  any
		field string
	}{
		{"NegativeGrace", map[string]any{"grace_period_seconds": -1}, "grace_period_seconds"},
		{"GraceOverAWeek", map[string]any{"grace_period_seconds": 604801}, "grace_period_seconds"},
		{"NoPrefix", map[string]any{"secret": base64.StdEncoding.EncodeToString(make([]byte, 32))}, "secret"},
		{"NotBase64", map[string]any{"secret": "whsec_not*base64!"}, "secret"},
		{"TooShort", map[string]any{"secret": short}, "secret"},
	} {
		accCheckProblem(t, tc.name, accDo(t, h, http.MethodPost, base+"/secret/rotate", adminKey, tc.body), http.StatusUnprocessableEntity, tc.field)
	}
	if got := current(); got != s3 {
		t.Errorf("GET secret after refused rotations = %q, want the newest", got)
	}

	// An explicit secret is used as given.
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	s4 := "whsec_" + base64.StdEncoding.EncodeToString(key)
	if got := rotate(map[string]any{"secret": s4, "grace_period_seconds": 0}); got != s4 {
		t.Errorf("rotation with an explicit secret returned %q, want it", got)
	}
	if got := current(); got != s4 {
		t.Errorf("GET secret = %q, want the explicit one", got)
	}
	w = deliver()
	if err := accVerify(t, s4, w); err != nil {
		t.Errorf("the explicit secret does not verify: %v", err)
	}
	if err := accVerify(t, s3, w); err == nil {
		t.Error("the secret replaced without grace still verifies")
	}
}

func TestEndpointHeadersAndFilter(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	filtered, all, disabled := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	eps := "/v1/apps/" + appID + "/endpoints"

	var fep struct {
		ID      string            `json:"id"`
		Secret  string            `json:"secret"`
		Headers map[string]string `json:"headers"`
		Filter  json.RawMessage   `json:"filter"`
	}
	accMust(t, h, http.MethodPost, eps, adminKey, map[string]any{
		"url":     filtered.URL,
		"headers": map[string]string{"X-Tenant": "acme", "authorization": "Bearer t"},
		"filter":  map[string]any{"amount": map[string]any{"$gte": 100}, "currency": "EUR"},
	}, http.StatusCreated, &fep)
	if want := map[string]string{"X-Tenant": "acme", "Authorization": "Bearer t"}; len(fep.Headers) != 2 ||
		fep.Headers["X-Tenant"] != want["X-Tenant"] || fep.Headers["Authorization"] != want["Authorization"] {
		t.Errorf("endpoint headers = %v, want %v", fep.Headers, want)
	}
	if len(fep.Filter) == 0 || string(fep.Filter) == "null" {
		t.Errorf("endpoint filter = %s, want the filter", fep.Filter)
	}
	allID := h.mustCreate(eps, map[string]any{"url": all.URL}).ID
	offID := h.mustCreate(eps, map[string]any{"url": disabled.URL}).ID

	publish := func(payload map[string]any) string {
		t.Helper()
		return h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "payment.succeeded", "payload": payload}).ID
	}
	deliveries := func(endpointID string) int {
		return h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ?`, endpointID)
	}

	// Enabled, the third endpoint receives; disabled, it does not.
	warmup := publish(map[string]any{"n": 0})
	accWebhook(t, disabled, warmup)
	accWebhook(t, all, warmup)
	var off struct {
		Disabled bool `json:"disabled"`
	}
	accMust(t, h, http.MethodPost, eps+"/"+offID+"/disable", adminKey, nil, http.StatusOK, &off)
	if !off.Disabled {
		t.Fatal("disable did not disable the endpoint")
	}

	payments := []map[string]any{
		{"n": 1, "amount": 50, "currency": "EUR"},
		{"n": 2, "amount": 150, "currency": "EUR"},
		{"n": 3, "amount": 150, "currency": "USD"},
		{"n": 4, "amount": 500, "currency": "EUR"},
	}
	ids := make([]string, len(payments))
	for i, p := range payments {
		ids[i] = publish(p)
	}
	for _, id := range ids {
		accWebhook(t, all, id)
	}
	// Each event's deliveries are created together: once the unfiltered
	// endpoint has all of its rows, the fan-out is done for the others too.
	waitFor(t, "the fan-out of every event", func() bool {
		return deliveries(allID) == 1+len(payments) &&
			h.count(`SELECT count(*) FROM deliveries WHERE app_id = ? AND status <> 'succeeded'`, appID) == 0
	})
	if n := deliveries(fep.ID); n != 2 {
		t.Errorf("%d deliveries to the filtered endpoint, want 2", n)
	}
	if n := deliveries(offID); n != 1 {
		t.Errorf("%d deliveries to the disabled endpoint, want 1 (before it was disabled)", n)
	}

	got := filtered.got()
	var seen []string
	for _, w := range got {
		var b struct {
			Type string `json:"type"`
			Data struct {
				N        int    `json:"n"`
				Amount   int    `json:"amount"`
				Currency string `json:"currency"`
			} `json:"data"`
		}
		if err := json.Unmarshal(w.body, &b); err != nil {
			t.Fatalf("webhook body %s: %v", w.body, err)
		}
		seen = append(seen, w.header.Get("webhook-id"))
		if b.Type != "payment.succeeded" || b.Data.Currency != "EUR" || b.Data.Amount < 100 {
			t.Errorf("the filtered endpoint received %s", w.body)
		}
		for name, want := range map[string]string{"X-Tenant": "acme", "Authorization": "Bearer t", "Content-Type": "application/json"} {
			if v := w.header.Get(name); v != want {
				t.Errorf("%s = %q, want %q", name, v, want)
			}
		}
		ts, err := strconv.ParseInt(w.header.Get("webhook-timestamp"), 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
			t.Errorf("webhook-timestamp = %q, want about now in Unix seconds", w.header.Get("webhook-timestamp"))
		}
		if !strings.HasPrefix(w.header.Get("webhook-id"), "evt_") || !strings.HasPrefix(w.header.Get("webhook-signature"), "v1,") {
			t.Errorf("webhook headers = %v, want webhook-id, -timestamp and -signature", w.header)
		}
		if err := accVerify(t, fep.Secret, w); err != nil {
			t.Errorf("the filtered endpoint's webhook does not verify: %v", err)
		}
	}
	slices.Sort(seen)
	if want := []string{ids[1], ids[3]}; !slices.Equal(seen, slices.Sorted(slices.Values(want))) {
		t.Errorf("the filtered endpoint received events %v, want %v (150 EUR and 500 EUR)", seen, want)
	}
	if n := len(all.got()); n != 1+len(payments) {
		t.Errorf("the unfiltered endpoint received %d webhooks, want %d", n, 1+len(payments))
	}
	for _, w := range all.got() {
		if w.header.Get("X-Tenant") != "" || w.header.Get("Authorization") != "" {
			t.Errorf("another endpoint's headers leaked: %v", w.header)
		}
	}
	if got := disabled.got(); len(got) != 1 || got[0].header.Get("webhook-id") != warmup {
		t.Errorf("the disabled endpoint received %d webhooks, want only the one before it was disabled", len(got))
	}
}
