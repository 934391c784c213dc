package events

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// A schema's validation work is driven by how many times its subschemas
// are evaluated against each value of a payload. Subschemas reached
// through references are shared, so a few hundred bytes of $defs whose
// anyOf (allOf, oneOf, ...) refers twice to the next one double the
// evaluations at each level: 22 levels (1.4 KB) made one publish take
// 5.4 s. checkEvaluations bounds that count at creation; the validation
// budget (schemabudget.go) bounds the work of each publish.

// maxEvaluations is the most subschema evaluations validating one payload
// value may take, at any depth down to MaxPayloadDepth.
const maxEvaluations = 256

// maxAnalysisSteps bounds the work of checkEvaluations itself.
const maxAnalysisSteps = 1 << 22

// applicators are the subschemas one schema applies: to the value it
// is applied to (in place) and to the value's members and items.
type applicators struct {
	inPlace    []*jsonschema.Schema // all evaluated ($ref, allOf, anyOf, oneOf, not, if, dependent schemas)
	then, els  *jsonschema.Schema   // at most one of them is evaluated
	props      map[string]*jsonschema.Schema
	patterns   []*jsonschema.Schema // patternProperties, in patternKeys' order
	matching   map[string][]int     // per property name, the patterns that match it
	additional *jsonschema.Schema   // members matched by neither
	members    []*jsonschema.Schema // applied to any member: unevaluatedProperties
	keys       *jsonschema.Schema   // propertyNames, applied to member names
	prefix     []*jsonschema.Schema // items by position
	rest       *jsonschema.Schema   // items past prefix
	items      []*jsonschema.Schema // applied to any item: contains, unevaluatedItems
	content    *jsonschema.Schema   // contentSchema, applied to a string's content
}

// applicatorsOf lists the subschemas s applies. It returns an error for
// $dynamicRef and $recursiveRef, whose targets are chosen while
// validating: their cost cannot be known beforehand.
func applicatorsOf(s *jsonschema.Schema) (applicators, error) {
	var a applicators
	if s.DynamicRef != nil || s.RecursiveRef != nil {
		return a, errDynamicRef
	}
	add := func(list *[]*jsonschema.Schema, subs ...*jsonschema.Schema) {
		for _, sub := range subs {
			if sub != nil {
				*list = append(*list, sub)
			}
		}
	}
	add(&a.inPlace, s.Ref, s.Not, s.If)
	add(&a.inPlace, s.AllOf...)
	add(&a.inPlace, s.AnyOf...)
	add(&a.inPlace, s.OneOf...)
	for _, k := range sortedKeys(s.DependentSchemas) {
		add(&a.inPlace, s.DependentSchemas[k])
	}
	for _, k := range sortedKeys(s.Dependencies) {
		if sub, ok := s.Dependencies[k].(*jsonschema.Schema); ok {
			add(&a.inPlace, sub)
		}
	}
	a.then, a.els = s.Then, s.Else
	a.props = s.Properties
	patterns := slices.SortedFunc(maps.Keys(s.PatternProperties), func(x, y jsonschema.Regexp) int {
		return strings.Compare(x.String(), y.String())
	})
	for _, re := range patterns {
		a.patterns = append(a.patterns, s.PatternProperties[re])
	}
	if len(patterns) > 0 {
		a.matching = map[string][]int{}
		for name := range s.Properties {
			for i, re := range patterns {
				if re.MatchString(name) {
					a.matching[name] = append(a.matching[name], i)
				}
			}
		}
	}
	a.additional, _ = s.AdditionalProperties.(*jsonschema.Schema)
	add(&a.members, s.UnevaluatedProperties)
	a.keys = s.PropertyNames
	a.prefix = s.PrefixItems
	a.rest = s.Items2020
	switch items := s.Items.(type) { // drafts before 2020-12
	case *jsonschema.Schema:
		a.rest = items
	case []*jsonschema.Schema:
		a.prefix = items
		a.rest, _ = s.AdditionalItems.(*jsonschema.Schema)
	}
	add(&a.items, s.Contains, s.UnevaluatedItems)
	a.content = s.ContentSchema
	return a, nil
}

// sortedKeys returns the keys of m in order, so that the analysis and its
// errors do not depend on map order.
func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(m))
}

// each calls f on every subschema a lists.
func (a applicators) each(f func(*jsonschema.Schema)) {
	for _, list := range [][]*jsonschema.Schema{a.inPlace, {a.then, a.els, a.additional, a.keys, a.rest, a.content}, a.patterns, a.members, a.prefix, a.items} {
		for _, s := range list {
			if s != nil {
				f(s)
			}
		}
	}
	for _, k := range sortedKeys(a.props) {
		f(a.props[k])
	}
}

// schemaGraph is every subschema reachable from a root, with what each
// applies.
type schemaGraph struct {
	root  *jsonschema.Schema
	nodes []*jsonschema.Schema // in the order found
	apps  map[*jsonschema.Schema]applicators
	// order lists the nodes so that each comes after the subschemas it
	// applies in place (they form no cycle).
	order []*jsonschema.Schema
	steps int // analysis work so far
}

// newSchemaGraph walks every subschema reachable from root.
func newSchemaGraph(root *jsonschema.Schema) (*schemaGraph, error) {
	g := &schemaGraph{root: root, apps: map[*jsonschema.Schema]applicators{}}
	queue := []*jsonschema.Schema{root}
	g.apps[root] = applicators{}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		a, err := applicatorsOf(s)
		if err != nil {
			return nil, err
		}
		g.apps[s] = a
		g.nodes = append(g.nodes, s)
		g.steps += 1 + len(a.props)*(1+len(a.patterns))
		if g.steps > maxAnalysisSteps {
			return nil, errTooComplex
		}
		a.each(func(sub *jsonschema.Schema) {
			if _, seen := g.apps[sub]; !seen {
				g.apps[sub] = applicators{}
				queue = append(queue, sub)
			}
		})
	}
	return g, nil
}

var (
	errTooComplex = fmt.Errorf("too complex to analyse (more than %d steps)", maxAnalysisSteps)
	errDynamicRef = errors.New("$dynamicRef and $recursiveRef are not supported")
)

// sortInPlace fills order, failing on a subschema that applies itself in
// place (through $ref, allOf, ...): validating it would loop on one value.
func (g *schemaGraph) sortInPlace() error {
	const (
		unseen = iota
		open
		done
	)
	state := make(map[*jsonschema.Schema]int, len(g.nodes))
	var visit func(s *jsonschema.Schema) error
	visit = func(s *jsonschema.Schema) error {
		switch state[s] {
		case open:
			return fmt.Errorf("%s applies itself to the same value (through $ref, allOf, anyOf, oneOf, not, if or dependentSchemas)", s.Location)
		case done:
			return nil
		}
		state[s] = open
		a := g.apps[s]
		for _, sub := range slices.Concat(a.inPlace, []*jsonschema.Schema{a.then, a.els}) {
			if sub == nil {
				continue
			}
			if err := visit(sub); err != nil {
				return err
			}
		}
		state[s] = done
		g.order = append(g.order, s)
		return nil
	}
	for _, s := range g.nodes {
		if err := visit(s); err != nil {
			return err
		}
	}
	return nil
}

// checkEvaluations returns an error when validating some value of a
// payload nested at most MaxPayloadDepth levels against root may evaluate
// more than maxEvaluations subschemas, or when that cannot be bounded.
//
// It counts, per schema, the evaluations on the value it is applied to
// (itself and what it applies in place, with references followed), then,
// level by level, the evaluations on a member or item of that value: the
// subschemas applied to it by everything evaluated on its parent. Members
// are counted by name (properties and the patternProperties matching it),
// or as any other name (every pattern, or additionalProperties); items by
// position. It errs on the high side: it assumes every branch of anyOf and
// oneOf is evaluated, and that the properties of different subschemas
// applied to one value may all be present.
func checkEvaluations(root *jsonschema.Schema) error {
	g, err := newSchemaGraph(root)
	if err != nil {
		return err
	}
	if err := g.sortInPlace(); err != nil {
		return err
	}
	const limit = maxEvaluations + 1 // counts saturate here
	add := func(a, b int) int { return min(a+b, limit) }

	// inPlaceSum computes, for every schema, own(s) plus the sums of what
	// it applies in place (then or else: the larger).
	inPlaceSum := func(own func(s *jsonschema.Schema) int) map[*jsonschema.Schema]int {
		sum := make(map[*jsonschema.Schema]int, len(g.order))
		for _, s := range g.order {
			a := g.apps[s]
			n := own(s)
			for _, sub := range a.inPlace {
				n = add(n, sum[sub])
			}
			n = add(n, max(sum[a.then], sum[a.els])) // sum[nil] is 0
			sum[s] = n
			g.steps += 1 + len(a.inPlace)
		}
		return sum
	}

	// evals[s] is the most evaluations on a value d levels below one s is
	// applied to; d = 0 first.
	evals := inPlaceSum(func(*jsonschema.Schema) int { return 1 })
	worst := evals[root]
	for depth := 1; depth <= MaxPayloadDepth && worst <= maxEvaluations; depth++ {
		prev := evals
		child := func(s *jsonschema.Schema) int { return g.childEvaluations(s, prev, add) }
		evals = inPlaceSum(child)
		worst = max(worst, evals[root])
		if g.steps > maxAnalysisSteps {
			return errTooComplex
		}
		if maps.Equal(evals, prev) {
			break // every deeper level counts the same
		}
	}
	if worst > maxEvaluations {
		return fmt.Errorf("validating one value may evaluate more than %d subschemas (subschemas applied to the same value more than once, e.g. through $ref from several branches of anyOf, allOf or oneOf, multiply at each level)", maxEvaluations)
	}
	return nil
}

// childEvaluations is the most evaluations that the subschemas s applies
// to one member or item of a value cost, evals counting them.
func (g *schemaGraph) childEvaluations(s *jsonschema.Schema, evals map[*jsonschema.Schema]int, add func(a, b int) int) int {
	a := g.apps[s]
	g.steps += 1 + len(a.props) + len(a.patterns) + len(a.prefix)
	sum := func(subs []*jsonschema.Schema) int {
		n := 0
		for _, sub := range subs {
			n = add(n, evals[sub])
		}
		return n
	}
	// A member named in properties, or any other.
	named := 0
	for name, sub := range a.props {
		n := evals[sub]
		for _, i := range a.matching[name] {
			n = add(n, evals[a.patterns[i]])
		}
		named = max(named, n)
	}
	member := add(max(named, sum(a.patterns), evals[a.additional]), sum(a.members))
	// An item by position.
	item := evals[a.rest]
	for _, sub := range a.prefix {
		item = max(item, evals[sub])
	}
	item = add(item, sum(a.items))
	return max(member, item, evals[a.keys], evals[a.content])
}
