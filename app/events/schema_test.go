package events

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// chain returns a schema whose $defs d0 ... dn each apply the next one
// twice to the same value, through kw (anyOf, allOf, oneOf): validating a
// value evaluates about 2^(n+2) subschemas (each {"$ref"} counts). At n = 21
// it is the 1.4 KB schema that made each publish take 5.4 s.
func chain(n int, kw string) string {
	var b strings.Builder
	b.WriteString(`{"$ref":"#/$defs/d0","$defs":{`)
	for i := range n {
		fmt.Fprintf(&b, `"d%d":{"%s":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d"}]},`, i, kw, i+1, i+1)
	}
	fmt.Fprintf(&b, `"d%d":{"type":"string"}}}`, n)
	return b.String()
}

func TestCheckEvaluations(t *testing.T) {
	t.Parallel()
	tree := `{"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{` +
		`"left":{"$ref":"#/$defs/node"},"right":{"$ref":"#/$defs/node"},` +
		`"children":{"type":"array","items":{"$ref":"#/$defs/node"}}}}}}`
	variants := make([]string, 10)
	for i := range variants {
		variants[i] = fmt.Sprintf(`{"allOf":[{"$ref":"#/$defs/base"},{"properties":{"kind":{"const":"k%d"},"n":{"type":"integer"}}}]}`, i)
	}
	union := `{"oneOf":[` + strings.Join(variants, ",") + `],"$defs":{"base":{"type":"object","required":["kind"]}}}`
	for _, tc := range []struct {
		name, schema string
		ok           bool
	}{
		{"Object", `{"type":"object","required":["amount"],"properties":{"amount":{"type":"integer","minimum":0},"tags":{"type":"array","items":{"type":"string"}}}}`, true},
		{"RecursiveTree", tree, true},
		{"Union", union, true},
		{"PatternProperties", `{"patternProperties":{"^a":{"$ref":"#"},"^b":{"type":"string"}},"additionalProperties":false}`, true},
		{"ChainUnderTheLimit", chain(6, "anyOf"), true}, // 254 evaluations
		{"ChainAnyOf", chain(7, "anyOf"), false},        // 510
		{"ChainAllOf", chain(7, "allOf"), false},
		{"ChainOneOf", chain(7, "oneOf"), false},
		{"ChainOfThe1.4KBSchema", chain(21, "anyOf"), false},
		{"ThenElse", `{"if":{"$ref":"#/$defs/a"},"then":{"$ref":"#/$defs/a"},"else":{"$ref":"#/$defs/a"},"$defs":{"a":{"anyOf":[{"type":"string"},{"type":"number"}]}}}`, true},
		// Subschemas applied to the same member twice double at each level
		// of the payload.
		{"MembersDoubling", `{"allOf":[{"properties":{"a":{"$ref":"#"}}},{"properties":{"a":{"$ref":"#"}}}]}`, false},
		{"ItemsDoubling", `{"items":{"$ref":"#"},"contains":{"$ref":"#"}}`, false},
		{"PatternsDoubling", `{"patternProperties":{"^a":{"$ref":"#"},"a$":{"$ref":"#"}}}`, false},
		{"InPlaceCycle", `{"anyOf":[{"type":"string"},{"$ref":"#"}]}`, false},
		{"DynamicRef", `{"$dynamicAnchor":"n","properties":{"a":{"$dynamicRef":"#n"}}}`, false},
	} {
		sch, err := compileSchema([]byte(tc.schema))
		if err != nil {
			t.Fatalf("%s: compile: %v", tc.name, err)
		}
		err = checkEvaluations(sch)
		if (err == nil) != tc.ok {
			t.Errorf("%s: checkEvaluations = %v, want ok %t", tc.name, err, tc.ok)
		}
	}
}

func TestNumberSize(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]int{
		"1": 1, "-12.5": 5, "1e10": 11, "1E+10": 11, "2e-007": 8, "1e99999": 100000, "1e999999": maxNumberSize + 1, "-1.5e-0000012": 16,
	} {
		if got := numberSize(s); got != want {
			t.Errorf("numberSize(%s) = %d, want %d", s, got, want)
		}
	}
}

// TestValidatorBudget validates payloads against schemas stored before
// checkEvaluations existed: the budget stops the validation, whatever the
// schema, at a number of steps that grows with the payload only.
func TestValidatorBudget(t *testing.T) {
	t.Parallel()
	validate := func(t *testing.T, schema, payload string, budget int) (error, int) {
		t.Helper()
		v, err := newValidator([]byte(schema))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		err = v.validate(doc, budget)
		return err, budget - v.left
	}

	t.Run("Chain", func(t *testing.T) {
		t.Parallel()
		payload := `{"a":1}`
		budget := schemaStepsBase + schemaStepsPerByte*len(payload)
		start := time.Now()
		err, steps := validate(t, chain(21, "anyOf"), payload, budget)
		if !errors.Is(err, errBudget) {
			t.Fatalf("validate = %v, want errBudget", err)
		}
		t.Logf("stopped after %d steps (budget %d) in %v", steps, budget, time.Since(start))
		if steps > budget+64 {
			t.Errorf("%d steps, beyond the budget of %d", steps, budget)
		}
	})

	t.Run("Reusable", func(t *testing.T) {
		t.Parallel()
		v, err := newValidator([]byte(chain(3, "allOf")))
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			payload string
			budget  int
			want    error
		}{
			{`"x"`, 1000, nil},
			{`"x"`, 5, errBudget},
			{`"x"`, 1000, nil},
		} {
			doc, _ := jsonschema.UnmarshalJSON(strings.NewReader(tc.payload))
			if err := v.validate(doc, tc.budget); !errors.Is(err, tc.want) {
				t.Errorf("validate(%s, %d) = %v, want %v", tc.payload, tc.budget, err, tc.want)
			}
		}
	})

	t.Run("LargePayload", func(t *testing.T) {
		t.Parallel()
		// Plain schemas validate a payload of 64 KiB of small items, the
		// most values per byte, within its budget.
		items := strings.TrimSuffix(strings.Repeat("1,", 32<<10-8), ",")
		payload := `{"a":[` + items + `]}`
		budget := schemaStepsBase + schemaStepsPerByte*len(payload)
		for _, schema := range []string{
			`{"properties":{"a":{"items":{"type":"integer","minimum":0}}}}`,
			`{"properties":{"a":{"items":{"anyOf":[{"type":"string"},{"type":"boolean"},{"type":"integer"}]}}}}`,
			`{"properties":{"a":{"uniqueItems":false,"items":{"enum":[1,2,3]}}}}`,
		} {
			err, steps := validate(t, schema, payload, budget)
			if err != nil {
				t.Errorf("%s: %v", schema, err)
			}
			t.Logf("%s: %d steps of %d", schema, steps, budget)
		}
	})
}

// TestCompiledSchemaConcurrent validates at once from several goroutines:
// each validation holds its own compiled copy, so budgets do not mix.
func TestCompiledSchemaConcurrent(t *testing.T) {
	t.Parallel()
	c := &compiledSchema{raw: []byte(chain(3, "anyOf"))}
	cases := []struct {
		payload string
		budget  int
		want    error
	}{
		{`"x"`, 1000, nil},
		{`"x"`, 10, errBudget},
		{`1`, 1000, nil}, // invalid, within budget: a validation error
	}
	done := make(chan error)
	for g := range 8 {
		go func() {
			for i := range 50 {
				tc := cases[(g+i)%len(cases)]
				v, err := c.get()
				if err != nil {
					done <- err
					return
				}
				doc, _ := jsonschema.UnmarshalJSON(strings.NewReader(tc.payload))
				err = v.validate(doc, tc.budget)
				c.put(v)
				if tc.want == nil && errors.Is(err, errBudget) || tc.want != nil && !errors.Is(err, tc.want) {
					done <- fmt.Errorf("validate(%s, %d) = %v, want %v", tc.payload, tc.budget, err, tc.want)
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
