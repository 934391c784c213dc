package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The validation of a payload against its event type's schema has a budget
// of steps, from the payload's size: schemaStepsBase plus
// schemaStepsPerByte per byte (1,064,960 for 256 KiB). A step is about one
// subschema evaluated, one member or item visited by a subschema, one enum
// value compared or 64 bytes of a string matched: some 0.3 to 1.3 µs. Plain
// schemas take 0.5 to 2 steps per byte of payload. A payload that would
// need more is refused (422), and the validation stops there: a 1.4 KB
// schema that took 11.9 s of CPU on {"a":1} stops after 16,413 steps, in
// 6 ms.
const (
	schemaStepsBase    = 1 << 14
	schemaStepsPerByte = 4
)

// maxNumberSize bounds the size, digits plus the magnitude of the exponent,
// of the payload numbers validated against a schema. The validator computes
// with exact rationals (math/big), whose work grows with it: 1e999999 took
// 22 ms for every keyword that read it.
const maxNumberSize = 1000

// validator is one compiled copy of a schema whose every subschema charges
// the validation that holds the copy, before doing its own work, for what
// it is about to evaluate. A validator serves one validation at a time.
type validator struct {
	schema *jsonschema.Schema
	left   int // steps left
}

// budgetSpent is the panic that ends a validation out of steps.
type budgetSpent struct{}

// charge takes n steps, ending the validation once they are spent.
func (v *validator) charge(n int) {
	if v.left -= n; v.left < 0 {
		panic(budgetSpent{})
	}
}

// newValidator compiles raw and meters each of its subschemas. It fails
// for a schema whose subschemas cannot all be found beforehand
// ($dynamicRef, $recursiveRef).
func newValidator(raw json.RawMessage) (*validator, error) {
	sch, err := compileSchema(raw)
	if err != nil {
		return nil, err
	}
	g, err := newSchemaGraph(sch)
	if err != nil {
		return nil, fmt.Errorf("meter schema: %w", err)
	}
	v := &validator{schema: sch}
	for _, s := range g.nodes {
		if s.Bool == nil {
			v.meter(s, g.apps[s])
		}
	}
	return v, nil
}

// first is what a validation is charged before it starts: the root's
// evaluation.
func (v *validator) first() int { return evaluationCost(v.schema) }

// evaluationCost is the work of evaluating s that happens before s
// charges anything itself: the evaluation, its enum and const.
func evaluationCost(s *jsonschema.Schema) int {
	if s == nil {
		return 0
	}
	n := 1
	if s.Enum != nil {
		n += len(s.Enum.Values)
	}
	if s.Const != nil {
		n++
	}
	return n
}

// meter makes s charge v as the validator evaluates it. It wraps s's
// format, which the validator checks before anything else s applies
// (formats that only annotate have none, and keep none in effect).
func (v *validator) meter(s *jsonschema.Schema, a applicators) {
	sum := func(subs ...*jsonschema.Schema) int {
		n := 0
		for _, sub := range subs {
			n += evaluationCost(sub)
		}
		return n
	}
	inPlace := sum(a.inPlace...) + sum(a.then, a.els)
	named := 0
	for _, sub := range a.props {
		named = max(named, evaluationCost(sub))
	}
	member := 1 + max(named, evaluationCost(a.additional)) + sum(a.patterns...) + len(a.patterns) + sum(a.members...) + sum(a.keys)
	item := evaluationCost(a.rest) + sum(a.prefix...) + sum(a.items...)
	required := len(s.Required)
	for _, names := range s.DependentRequired {
		required += len(names)
	}
	for _, dep := range s.Dependencies {
		if names, ok := dep.([]string); ok {
			required += len(names)
		}
	}
	format := s.Format
	scans := s.Pattern != nil || s.MinLength != nil || s.MaxLength != nil || format != nil || s.ContentEncoding != nil
	unique := s.UniqueItems
	name := ""
	if format != nil {
		name = format.Name
	}
	s.Format = &jsonschema.Format{Name: name, Validate: func(x any) error {
		v.charge(inPlace)
		switch x := x.(type) {
		case map[string]any:
			v.charge(len(x)*member + required)
		case []any:
			v.charge(len(x) * item)
			if unique {
				v.charge(countValues(x))
			}
		case string:
			if scans {
				v.charge(1 + len(x)/64)
			}
		}
		if format != nil {
			return format.Validate(x)
		}
		return nil
	}}
}

// countValues counts the values in x, x included.
func countValues(x any) int {
	n := 0
	stack := []any{x}
	for len(stack) > 0 {
		x, stack = stack[len(stack)-1], stack[:len(stack)-1]
		n++
		switch x := x.(type) {
		case map[string]any:
			for _, e := range x {
				stack = append(stack, e)
			}
		case []any:
			stack = append(stack, x...)
		}
	}
	return n
}

// errBudget reports a validation that ran out of steps.
var errBudget = errors.New("validation needs more steps than its budget")

// validate validates doc within budget steps. It returns errBudget when
// they do not suffice; the validator can be used again.
func (v *validator) validate(doc any, budget int) (err error) {
	v.left = budget
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(budgetSpent); !ok {
				panic(r)
			}
			err = errBudget
		}
	}()
	v.charge(v.first())
	return v.schema.Validate(doc)
}

// largeNumber returns the JSON pointer tokens of the first number in doc
// larger than maxNumberSize, if any. doc is nested at most MaxPayloadDepth
// levels.
func largeNumber(doc any) ([]string, bool) {
	switch x := doc.(type) {
	case json.Number:
		return nil, numberSize(string(x)) > maxNumberSize
	case map[string]any:
		for k, e := range x {
			if path, ok := largeNumber(e); ok {
				return append([]string{k}, path...), true
			}
		}
	case []any:
		for i, e := range x {
			if path, ok := largeNumber(e); ok {
				return append([]string{strconv.Itoa(i)}, path...), true
			}
		}
	}
	return nil, false
}

// numberSize is the count of digits of a JSON number plus the magnitude of
// its exponent, saturating past maxNumberSize.
func numberSize(s string) int {
	mantissa, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	n := len(mantissa)
	if hasExp {
		exp = strings.TrimLeft(exp, "+-")
		exp = strings.TrimLeft(exp, "0")
		if len(exp) > 5 {
			return maxNumberSize + 1
		}
		e, _ := strconv.Atoi(exp)
		n += e
	}
	return n
}
