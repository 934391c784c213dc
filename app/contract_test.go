package app_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The contract tests check that the OpenAPI document states what the
// server enforces: a client that keeps to the document is not refused,
// and what the document refuses the server refuses too. Their helpers
// carry a con prefix.

// conDoc is the served OpenAPI document, for compiling the schema of a
// request body or parameter.
type conDoc struct {
	t    *testing.T
	root any
}

func conLoad(t *testing.T, h *harness) *conDoc {
	t.Helper()
	resp, err := http.Get(h.base + "/openapi.json")
	if err != nil {
		t.Fatalf("GET /openapi.json: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	root, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse /openapi.json: %v", err)
	}
	return &conDoc{t: t, root: root}
}

// schema compiles the schema at the JSON pointer ptr of the document
// (draft 2020-12, formats asserted).
func (d *conDoc) schema(ptr string) *jsonschema.Schema {
	d.t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("mem:///openapi.json", d.root); err != nil {
		d.t.Fatal(err)
	}
	sch, err := c.Compile("mem:///openapi.json#" + ptr)
	if err != nil {
		d.t.Fatalf("compile %s: %v", ptr, err)
	}
	return sch
}

// body returns the schema of the JSON request body of method path.
func (d *conDoc) body(method, path string) *jsonschema.Schema {
	d.t.Helper()
	return d.schema(conOp(method, path) + "/requestBody/content/application~1json/schema")
}

// header returns the schema of the header parameter name of method path.
func (d *conDoc) header(method, path, name string) *jsonschema.Schema {
	d.t.Helper()
	paths, _ := d.root.(map[string]any)["paths"].(map[string]any)
	item, _ := paths[path].(map[string]any)
	op, _ := item[strings.ToLower(method)].(map[string]any)
	params, _ := op["parameters"].([]any)
	for i, p := range params {
		if p, _ := p.(map[string]any); p["in"] == "header" && p["name"] == name {
			return d.schema(conOp(method, path) + "/parameters/" + strconv.Itoa(i) + "/schema")
		}
	}
	d.t.Fatalf("%s %s documents no header %s", method, path, name)
	return nil
}

// conOp returns the JSON pointer of operation method path in the
// document, percent-encoded for a URL fragment.
func conOp(method, path string) string {
	tok := strings.ReplaceAll(strings.ReplaceAll(path, "~", "~0"), "/", "~1")
	return "/paths/" + url.PathEscape(tok) + "/" + strings.ToLower(method)
}

// conAccepts reports whether sch accepts the JSON text v.
func conAccepts(t *testing.T, sch *jsonschema.Schema, v string) (bool, error) {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(v))
	if err != nil {
		t.Fatalf("%s: %v", v, err)
	}
	err = sch.Validate(inst)
	return err == nil, err
}

// TestOpenAPIStatesWhatIsEnforced sends requests to hookd and validates
// each against the document's schema for it: both must accept it, or both
// refuse it (the server with a 422 problem naming the field). Each rule
// here is one the document states: names are not empty, URLs are absolute
// URIs, a payload is an object, a filter an object or null, a JSON Schema
// an object or a boolean, a rotated secret is whsec_ and base64, an
// Idempotency-Key printable ASCII; PATCH takes null for rate_limit,
// event_types, tls and oauth; OAuth credentials have a token URL, a client
// id and, at creation, a secret; a client key is at most 16 KiB.
func TestOpenAPIStatesWhatIsEnforced(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	doc := conLoad(t, h)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	// The events published below go to the endpoints created here.
	recv := newReceiver(t, nil)
	ep := h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL + "/hook"})
	apps := "/v1/apps"
	endpoints := "/v1/apps/" + appID + "/endpoints"
	endpoint := endpoints + "/" + ep.ID
	events := "/v1/apps/" + appID + "/events"
	links := "/v1/apps/" + appID + "/links"
	secret := func(n int) string { return "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, n)) }

	for _, tc := range []struct {
		name, method, template, path, body string
		header                             map[string]string
		field                              string // of the server's 422, "" when it accepts
	}{
		{"AppName", http.MethodPost, "/v1/apps", apps, `{"name":"a"}`, nil, ""},
		{"EmptyAppName", http.MethodPost, "/v1/apps", apps, `{"name":""}`, nil, "name"},
		{"BlankAppName", http.MethodPost, "/v1/apps", apps, `{"name":"  "}`, nil, "name"},
		{"EmptyAppNamePatch", http.MethodPatch, "/v1/apps/{app_id}", apps + "/" + appID, `{"name":""}`, nil, "name"},
		{"EmptyKeyName", http.MethodPost, "/v1/api-keys", "/v1/api-keys", `{"name":""}`, nil, "name"},

		{"EndpointURL", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"` + recv.URL + `/a"}`, nil, ""},
		{"RelativeEndpointURL", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"/hook"}`, nil, "url"},
		{"NotAURL", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"localhost"}`, nil, "url"},
		{"RelativeEndpointURLPatch", http.MethodPatch, "/v1/apps/{app_id}/endpoints/{endpoint_id}", endpoint, `{"url":"hook"}`, nil, "url"},
		{"RelativeLinkURL", http.MethodPost, "/v1/apps/{app_id}/links", links, `{"url":"/landing"}`, nil, "url"},
		{"EmptyLinkCode", http.MethodPost, "/v1/apps/{app_id}/links", links, `{"url":"https://example.com/","code":""}`, nil, ""},
		{"LinkCode", http.MethodPost, "/v1/apps/{app_id}/links", links, `{"url":"https://example.com/","code":"c-1_x"}`, nil, ""},
		{"LinkCodeSlash", http.MethodPost, "/v1/apps/{app_id}/links", links, `{"url":"https://example.com/","code":"a/b"}`, nil, "code"},

		{"ObjectFilter", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"` + recv.URL + `/","filter":{"a":1}}`, nil, ""},
		{"NullFilter", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"` + recv.URL + `/","filter":null}`, nil, ""},
		{"ArrayFilter", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"` + recv.URL + `/","filter":[1]}`, nil, "filter"},
		{"StringFilterPatch", http.MethodPatch, "/v1/apps/{app_id}/endpoints/{endpoint_id}", endpoint, `{"filter":"a"}`, nil, "filter"},
		{"NullRateLimit", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"` + recv.URL + `/","rate_limit":null}`, nil, ""},
		{"NullEventTypes", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"` + recv.URL + `/","event_types":null}`, nil, ""},
		{"NullRateLimitPatch", http.MethodPatch, "/v1/apps/{app_id}/endpoints/{endpoint_id}", endpoint, `{"rate_limit":null}`, nil, ""},
		{"NullEventTypesPatch", http.MethodPatch, "/v1/apps/{app_id}/endpoints/{endpoint_id}", endpoint, `{"event_types":null}`, nil, ""},
		{"NullTLSPatch", http.MethodPatch, "/v1/apps/{app_id}/endpoints/{endpoint_id}", endpoint, `{"tls":null}`, nil, ""},
		{"EmptyTLSPatch", http.MethodPatch, "/v1/apps/{app_id}/endpoints/{endpoint_id}", endpoint, `{"tls":{}}`, nil, ""},
		{"NullOAuthPatch", http.MethodPatch, "/v1/apps/{app_id}/endpoints/{endpoint_id}", endpoint, `{"oauth":null}`, nil, ""},
		{"RelativeTokenURL", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"` + recv.URL + `/","oauth":{"token_url":"/token","client_id":"a","client_secret":"b"}}`, nil, "oauth.token_url"},
		{"OAuthWithoutSecret", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"` + recv.URL + `/","oauth":{"token_url":"` + recv.URL + `/token","client_id":"a"}}`, nil, "oauth.client_secret"},
		{"OAuthEmptyClientID", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"` + recv.URL + `/","oauth":{"token_url":"` + recv.URL + `/token","client_id":"","client_secret":"b"}}`, nil, "oauth.client_id"},
		{"TLSKeyTooLong", http.MethodPost, "/v1/apps/{app_id}/endpoints", endpoints, `{"url":"` + recv.URL + `/","tls":{"client_key":"` + strings.Repeat("k", 16385) + `"}}`, nil, "tls.client_key"},

		{"Secret", http.MethodPost, "/v1/apps/{app_id}/endpoints/{endpoint_id}/secret/rotate", endpoint + "/secret/rotate", `{"secret":"` + secret(24) + `"}`, nil, ""},
		{"LongestSecret", http.MethodPost, "/v1/apps/{app_id}/endpoints/{endpoint_id}/secret/rotate", endpoint + "/secret/rotate", `{"secret":"` + secret(64) + `"}`, nil, ""},
		{"OddSecret", http.MethodPost, "/v1/apps/{app_id}/endpoints/{endpoint_id}/secret/rotate", endpoint + "/secret/rotate", `{"secret":"` + secret(38) + `"}`, nil, ""},
		{"ShortSecret", http.MethodPost, "/v1/apps/{app_id}/endpoints/{endpoint_id}/secret/rotate", endpoint + "/secret/rotate", `{"secret":"` + secret(23) + `"}`, nil, "secret"},
		{"LongSecret", http.MethodPost, "/v1/apps/{app_id}/endpoints/{endpoint_id}/secret/rotate", endpoint + "/secret/rotate", `{"secret":"` + secret(65) + `"}`, nil, "secret"},
		{"SecretWithoutPrefix", http.MethodPost, "/v1/apps/{app_id}/endpoints/{endpoint_id}/secret/rotate", endpoint + "/secret/rotate", `{"secret":"` + secret(32)[6:] + `"}`, nil, "secret"},
		{"SecretNotBase64", http.MethodPost, "/v1/apps/{app_id}/endpoints/{endpoint_id}/secret/rotate", endpoint + "/secret/rotate", `{"secret":"whsec_` + strings.Repeat("!", 32) + `"}`, nil, "secret"},

		{"ObjectSchema", http.MethodPost, "/v1/event-types", "/v1/event-types", `{"name":"t.object","schema":{"type":"object"}}`, nil, ""},
		{"TrueSchema", http.MethodPost, "/v1/event-types", "/v1/event-types", `{"name":"t.true","schema":true}`, nil, ""},
		{"FalseSchema", http.MethodPost, "/v1/event-types", "/v1/event-types", `{"name":"t.false","schema":false}`, nil, ""},
		{"NullSchema", http.MethodPost, "/v1/event-types", "/v1/event-types", `{"name":"t.null","schema":null}`, nil, ""},
		{"ArraySchema", http.MethodPost, "/v1/event-types", "/v1/event-types", `{"name":"t.array","schema":[]}`, nil, "schema"},
		{"NumberSchema", http.MethodPost, "/v1/event-types", "/v1/event-types", `{"name":"t.number","schema":1}`, nil, "schema"},
		{"TrueSchemaPatch", http.MethodPatch, "/v1/event-types/{name}", "/v1/event-types/t.object", `{"schema":true}`, nil, ""},
		{"StringSchemaPatch", http.MethodPatch, "/v1/event-types/{name}", "/v1/event-types/t.object", `{"schema":"x"}`, nil, "schema"},

		{"ObjectPayload", http.MethodPost, "/v1/apps/{app_id}/events", events, `{"type":"a.b","payload":{}}`, nil, ""},
		{"ArrayPayload", http.MethodPost, "/v1/apps/{app_id}/events", events, `{"type":"a.b","payload":[]}`, nil, "payload"},
		{"StringPayload", http.MethodPost, "/v1/apps/{app_id}/events", events, `{"type":"a.b","payload":"x"}`, nil, "payload"},
		{"NullPayload", http.MethodPost, "/v1/apps/{app_id}/events", events, `{"type":"a.b","payload":null}`, nil, "payload"},
		{"IdempotencyKey", http.MethodPost, "/v1/apps/{app_id}/events", events, `{"type":"a.b","payload":{}}`, map[string]string{"Idempotency-Key": "order-42 paid"}, ""},
		{"NonASCIIIdempotencyKey", http.MethodPost, "/v1/apps/{app_id}/events", events, `{"type":"a.b","payload":{}}`, map[string]string{"Idempotency-Key": "clé"}, "Idempotency-Key"},
		{"TabInIdempotencyKey", http.MethodPost, "/v1/apps/{app_id}/events", events, `{"type":"a.b","payload":{}}`, map[string]string{"Idempotency-Key": "a\tb"}, "Idempotency-Key"},
		{"NonASCIIID", http.MethodPost, "/v1/apps/{app_id}/events", events, `{"type":"a.b","payload":{},"id":"clé"}`, nil, "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docOK, docErr := conAccepts(t, doc.body(tc.method, tc.template), tc.body)
			for name, value := range tc.header {
				v, _ := json.Marshal(value)
				ok, err := conAccepts(t, doc.header(tc.method, tc.template, name), string(v))
				docOK, docErr = docOK && ok, errors.Join(docErr, err)
			}
			r, err := accSend(h, tc.method, tc.path, adminKey, tc.body, tc.header)
			if err != nil {
				t.Fatal(err)
			}
			conAgree(t, tc.name, docOK, docErr, r, tc.field)
		})
	}
}

// TestPatchNull: in a PATCH of an endpoint, null removes the rate limit
// and subscribes to every event type, as 0 and [] do; a field left out
// stays.
func TestPatchNull(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	path := "/v1/apps/" + appID + "/endpoints/" + h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{
		"url": "http://127.0.0.1:9/hook", "rate_limit": 5, "event_types": []string{"order.paid"},
	}).ID

	var ep resEndpoint
	resMust(h, http.MethodPatch, path, `{"description":"kept"}`, http.StatusOK, &ep)
	if ep.RateLimit == nil || *ep.RateLimit != 5 || !slices.Equal(ep.EventTypes, []string{"order.paid"}) {
		t.Fatalf("after a PATCH without them: rate_limit %s, event_types %v; want 5 and [order.paid]", conJSON(ep.RateLimit), ep.EventTypes)
	}
	resMust(h, http.MethodPatch, path, `{"rate_limit":null}`, http.StatusOK, &ep)
	if ep.RateLimit != nil || !slices.Equal(ep.EventTypes, []string{"order.paid"}) {
		t.Errorf("after rate_limit null: rate_limit %s, event_types %v; want null and [order.paid]", conJSON(ep.RateLimit), ep.EventTypes)
	}
	resMust(h, http.MethodPatch, path, `{"event_types":null}`, http.StatusOK, &ep)
	if ep.EventTypes == nil || len(ep.EventTypes) != 0 || ep.Description != "kept" {
		t.Errorf("after event_types null: event_types %#v, description %q; want [] and kept", ep.EventTypes, ep.Description)
	}
}

// TestBooleanSchemas: an event type's schema may be true (every payload
// matches) or false (none does), as JSON Schema draft 2020-12 allows.
func TestBooleanSchemas(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	publish := func(typ string) (int, []byte, http.Header) {
		return resDo(h, http.MethodPost, "/v1/apps/"+appID+"/events", `{"type":"`+typ+`","payload":{"a":1}}`)
	}

	var et resEventType
	resMust(h, http.MethodPost, "/v1/event-types", `{"name":"any.thing","schema":true}`, http.StatusCreated, &et)
	if et.Schema != true {
		t.Errorf("schema = %#v, want true", et.Schema)
	}
	if code, b, _ := publish("any.thing"); code != http.StatusCreated {
		t.Errorf("publish under the true schema = %d %s, want 201", code, b)
	}
	resMust(h, http.MethodPatch, "/v1/event-types/any.thing", `{"schema":false}`, http.StatusOK, &et)
	if et.Schema != false {
		t.Errorf("schema = %#v, want false", et.Schema)
	}
	resMust(h, http.MethodGet, "/v1/event-types/any.thing", "", http.StatusOK, &et)
	if et.Schema != false {
		t.Errorf("schema read again = %#v, want false", et.Schema)
	}
	code, b, hdr := publish("any.thing")
	resCheckProblem(t, "PublishUnderFalse", code, b, hdr, http.StatusUnprocessableEntity, "payload")
	resMust(h, http.MethodPost, "/v1/event-types", `{"name":"no.thing","schema":false}`, http.StatusCreated, nil)
	code, b, hdr = publish("no.thing")
	resCheckProblem(t, "PublishUnderFalseCreated", code, b, hdr, http.StatusUnprocessableEntity, "payload")
}

// TestPayloadSchemaErrors: a payload refused by its event type's schema
// answers a problem whose errors list each violation with its location,
// as for the errors of any other request field.
func TestPayloadSchemaErrors(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	resMust(h, http.MethodPost, "/v1/event-types", `{"name":"invoice.paid","schema":{"type":"object",`+
		`"required":["amount","currency"],"properties":{"amount":{"type":"integer","minimum":0},"currency":{"type":"string"},`+
		`"lines":{"type":"array","items":{"type":"string"}}}}}`, http.StatusCreated, nil)

	code, b, hdr := resDo(h, http.MethodPost, "/v1/apps/"+appID+"/events",
		`{"type":"invoice.paid","payload":{"amount":-1,"lines":["a",2,"c",4]}}`)
	resCheckProblem(t, "Publish", code, b, hdr, http.StatusUnprocessableEntity, "payload")
	var p struct {
		Field  string `json:"field"`
		Errors []struct {
			Location string `json:"location"`
			Message  string `json:"message"`
		} `json:"errors"`
	}
	resDecode(t, b, &p)
	var got []string
	for _, e := range p.Errors {
		if e.Message == "" {
			t.Errorf("error at %s has no message", e.Location)
		}
		got = append(got, e.Location)
	}
	slices.Sort(got)
	want := []string{"body.payload", "body.payload/amount", "body.payload/lines/1", "body.payload/lines/3"}
	if !slices.Equal(got, want) {
		t.Errorf("errors located at %v, want %v (%s)", got, want, b)
	}
	if len(p.Errors) > 0 && p.Errors[0].Location != "body."+p.Field {
		t.Errorf("the first error is at %s, the field is %s", p.Errors[0].Location, p.Field)
	}
}

func conJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestOpenAPIResponsesTyped: every value a response carries has a JSON
// type in the document (but the value of an ErrorDetail: any JSON), and no
// list is typed nullable, since none is ever null.
func TestOpenAPIResponsesTyped(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	doc := conLoad(t, h)
	root := doc.root.(map[string]any)
	untypedAllowed := map[string]bool{
		"/components/schemas/ErrorDetail/properties/value": true, // the offending value, whatever it is
	}
	seen := map[string]bool{}
	var walk func(ptr string, v any)
	walk = func(ptr string, v any) {
		s, ok := v.(map[string]any)
		if !ok || seen[ptr] {
			return
		}
		seen[ptr] = true
		if ref, ok := s["$ref"].(string); ok {
			target := strings.TrimPrefix(ref, "#")
			var node any = root
			for _, tok := range strings.Split(target, "/")[1:] {
				node = node.(map[string]any)[strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")]
			}
			walk(target, node)
			return
		}
		_, typed := s["type"]
		_, anyOf := s["anyOf"]
		if !typed && !anyOf && !untypedAllowed[ptr] {
			t.Errorf("%s has no type", ptr)
		}
		if types, ok := s["type"].([]any); ok && slices.Contains(types, "array") && slices.Contains(types, "null") {
			t.Errorf("%s is a list typed nullable", ptr)
		}
		if props, ok := s["properties"].(map[string]any); ok {
			for name, p := range props {
				walk(ptr+"/properties/"+name, p)
			}
		}
		walk(ptr+"/items", s["items"])
		walk(ptr+"/additionalProperties", s["additionalProperties"])
		if subs, ok := s["anyOf"].([]any); ok {
			for i, sub := range subs {
				walk(ptr+"/anyOf/"+strconv.Itoa(i), sub)
			}
		}
	}
	for path, item := range root["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			responses, _ := op.(map[string]any)["responses"].(map[string]any)
			for status, r := range responses {
				content, _ := r.(map[string]any)["content"].(map[string]any)
				for mt, m := range content {
					walk(strings.Join([]string{"paths", path, method, "responses", status, "content", mt, "schema"}, " "), m.(map[string]any)["schema"])
				}
			}
		}
	}
	if len(seen) < 50 {
		t.Fatalf("walked %d schemas, want every response's", len(seen))
	}
}

// conAgree checks that the server answered r as field says (accepted
// when field is empty, else a 422 on field) and as the document said
// (docOK, with docErr for why not).
func conAgree(t *testing.T, name string, docOK bool, docErr error, r accResp, field string) {
	t.Helper()
	serverOK := r.code < 300
	switch {
	case serverOK && field != "":
		t.Errorf("server accepted it: %s", r)
	case !serverOK && field == "":
		t.Errorf("server refused it: %s", r)
	case !serverOK:
		accCheckProblem(t, name, r, http.StatusUnprocessableEntity, field)
	}
	if docOK != serverOK {
		t.Errorf("the document accepts it: %t (%v); the server: %t (%s)", docOK, docErr, serverOK, r)
	}
}
