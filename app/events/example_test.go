package events_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hookd/hookd/app/events"
)

func TestExample(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, schema, want string }{
		{"NoSchema", ``, `{}`},
		{"BooleanSchema", `true`, `{}`},
		{"ExamplesFirstObject", `{"type":"object","examples":[1,{"id":"inv_1","amount":5}]}`, `{"id":"inv_1","amount":5}`},
		{"MadeFromProperties", `{"type":"object","required":["id"],"properties":{
			"id":{"type":"string"},"amount":{"type":"integer","minimum":1},"currency":{"enum":["EUR","USD"]},
			"paid":{"type":"boolean"},"at":{"type":"string","format":"date-time"},"kind":{"const":"invoice"},
			"lines":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string","default":"A-1"}}}},
			"note":{"type":["string","null"]}}}`,
			`{"id":"string","amount":1,"currency":"EUR","paid":true,"at":"2026-01-01T00:00:00Z","kind":"invoice","lines":[{"sku":"A-1"}],"note":"string"}`},
		{"NotAnObject", `{"type":"string"}`, `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got, want any
			if err := json.Unmarshal(events.Example(json.RawMessage(tc.schema)), &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("Example(%s) (-want +got):\n%s", tc.schema, d)
			}
		})
	}
}

func TestExampleDeepSchema(t *testing.T) {
	t.Parallel()
	s := `{"type":"string"}`
	for range 200 {
		s = `{"type":"object","properties":{"a":` + s + `}}`
	}
	if out := events.Example(json.RawMessage(s)); len(out) > 4096 {
		t.Errorf("Example of a 200-level schema: %d bytes, want it cut at a bounded depth", len(out))
	}
}
