// Package filter owns endpoint payload filters: the JSON filter syntax
// (modelled on Convoy's MongoDB-like filters), its parsing and validation,
// and matching a filter against an event payload. It imports only the
// standard library and must not import any other hookd package.
package filter

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Limits on a filter, so that parsing and matching stay cheap. A filter's
// work on a payload is bounded by its conditions, except for $contains,
// which may scan a whole payload array or string: the number of those is
// bounded too, so that the worst filter Parse accepts takes fewer than
// DefaultBudget steps on a payload of 256 KiB (TestWorstCaseSteps).
const (
	maxSize   = 8 << 10 // bytes of raw filter JSON
	maxDepth  = 10      // nested JSON objects and arrays
	maxNodes  = 256     // conditions and logical operators
	maxScans  = 4       // $contains operators
	maxDigits = 1024    // characters of a payload number; longer ones never compare
)

// DefaultBudget is the number of steps a match may take unless its caller
// sets another budget. A step is about one value compared (a payload
// array element, an object member, a number) or 16 bytes of a string
// searched by $contains, some 20 to 50 ns of CPU: the budget bounds a match
// to tens of milliseconds, whatever the payload.
const DefaultBudget = 1 << 20

// ErrBudget is returned by Eval when a match needs more steps than its
// budget. What it means is the caller's choice; hookd's fan-out treats it
// as no match.
var ErrBudget = errors.New("filter needs more steps than its budget")

// Error is a filter that does not parse; Path locates the offending part,
// e.g. `$or[1].amount.$gte`, and is empty for the filter as a whole.
type Error struct {
	Path, Msg string
}

// Error returns the path and the message.
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Filter is a parsed, validated filter. A nil *Filter matches every payload.
// A Filter is immutable and safe for concurrent use.
type Filter struct {
	root *node
}

// node is a logical operator ($and, $or, $not) over kids, or a field
// operator ($eq, $gt, ...) applied to the value at path with operand arg.
type node struct {
	op   string
	path []string
	arg  any
	kids []*node
}

// Parse parses and validates raw. Empty input, `null` and `{}` give a nil
// Filter (match all). Any other failure is an *Error.
func Parse(raw []byte) (*Filter, error) {
	return parse(raw, maxScans)
}

// ParseStored is Parse for a filter that an earlier hookd validated and
// stored, when filters could hold any number of $contains: it does not
// count them, and Eval's budget bounds their work instead. The other
// limits are as old as filters.
func ParseStored(raw []byte) (*Filter, error) {
	return parse(raw, maxNodes)
}

// parse parses raw, allowing at most scans $contains operators.
func parse(raw []byte, scans int) (*Filter, error) {
	if len(raw) > maxSize {
		return nil, &Error{Msg: fmt.Sprintf("filter is larger than %d bytes", maxSize)}
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	v, err := decode(raw)
	if err != nil {
		return nil, &Error{Msg: err.Error()}
	}
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &Error{Msg: "filter must be a JSON object"}
	}
	if len(m) == 0 {
		return nil, nil
	}
	if err := checkDepth(v, "", 0); err != nil {
		return nil, err
	}
	p := parser{maxScans: scans}
	root, err := p.filter(m, "")
	if err != nil {
		return nil, err
	}
	return &Filter{root: root}, nil
}

// Match reports whether payload (a JSON document, typically an object)
// satisfies f. An invalid payload matches only a nil filter.
func (f *Filter) Match(payload []byte) bool {
	if f == nil {
		return true
	}
	doc, err := decode(payload)
	if err != nil {
		return false
	}
	return f.MatchValue(doc)
}

// MatchValue is Match on an already decoded document: one decoded by
// encoding/json into any, with json.Decoder.UseNumber so that numbers are
// exact json.Numbers. A float64 is accepted too, and compares as the
// shortest decimal that round-trips to it (0.1 equals 0.1). A match that
// needs more than DefaultBudget steps is false.
func (f *Filter) MatchValue(doc any) bool {
	ok, _, _ := f.Eval(doc, 0)
	return ok
}

// Eval is MatchValue within a budget of steps (DefaultBudget when budget
// is not positive). It returns the steps the match took and, when it ran
// out of them, ErrBudget with match false.
func (f *Filter) Eval(doc any, budget int) (match bool, steps int, err error) {
	if f == nil {
		return true, 0, nil
	}
	if budget <= 0 {
		budget = DefaultBudget
	}
	m := &meter{left: budget}
	match = f.root.match(doc, m)
	if m.out() {
		return false, budget, ErrBudget
	}
	return match, budget - m.left, nil
}

// meter counts the steps left of a match's budget. Once they are spent,
// every function of a match returns at once, with a result that does not
// count.
type meter struct {
	left int
}

// spend takes n steps, reporting whether the budget still holds.
func (m *meter) spend(n int) bool {
	m.left -= n
	return m.left >= 0
}

// out reports whether the budget is spent.
func (m *meter) out() bool { return m.left < 0 }

// Costs of a match, in steps (see DefaultBudget).
const (
	searchBytesPerStep = 16   // of a string searched by $contains
	equalBytesPerStep  = 1024 // of two strings compared
	digitsPerStep      = 32   // of a payload number parsed
)

// decode decodes exactly one JSON value, with exact numbers.
func decode(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid JSON: data after the top-level value")
	}
	return v, nil
}

// checkDepth rejects objects and arrays nested more than maxDepth deep.
func checkDepth(v any, path string, depth int) error {
	switch v := v.(type) {
	case map[string]any:
		if depth >= maxDepth {
			return &Error{Path: path, Msg: fmt.Sprintf("nested more than %d levels deep", maxDepth)}
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if err := checkDepth(v[k], join(path, k), depth+1); err != nil {
				return err
			}
		}
	case []any:
		if depth >= maxDepth {
			return &Error{Path: path, Msg: fmt.Sprintf("nested more than %d levels deep", maxDepth)}
		}
		for i, e := range v {
			if err := checkDepth(e, index(path, i), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// parser turns decoded filter JSON into nodes, counting them.
type parser struct {
	nodes, scans int
	maxScans     int
}

// add counts n, failing once the filter has too many nodes or scans.
func (p *parser) add(n *node, path string) (*node, error) {
	if p.nodes++; p.nodes > maxNodes {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("filter has more than %d conditions", maxNodes)}
	}
	if n.op == "$contains" {
		if p.scans++; p.scans > p.maxScans {
			return nil, &Error{Path: path, Msg: fmt.Sprintf("filter has more than %d $contains operators", p.maxScans)}
		}
	}
	return n, nil
}

// filter parses a filter object: its keys are ANDed.
func (p *parser) filter(m map[string]any, path string) (*node, error) {
	all := &node{op: "$and"}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kids, err := p.entry(k, m[k], join(path, k))
		if err != nil {
			return nil, err
		}
		all.kids = append(all.kids, kids...)
	}
	if len(all.kids) == 1 {
		return all.kids[0], nil
	}
	return all, nil
}

// entry parses one key of a filter object: a logical operator or a field.
func (p *parser) entry(k string, v any, path string) ([]*node, error) {
	switch k {
	case "$and", "$or":
		list, ok := v.([]any)
		if !ok || len(list) == 0 {
			return nil, &Error{Path: path, Msg: "must be a non-empty array of filter objects"}
		}
		n := &node{op: k}
		for i, e := range list {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, &Error{Path: index(path, i), Msg: "must be a filter object"}
			}
			kid, err := p.filter(m, index(path, i))
			if err != nil {
				return nil, err
			}
			n.kids = append(n.kids, kid)
		}
		n, err := p.add(n, path)
		return []*node{n}, err
	case "$not":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, &Error{Path: path, Msg: "must be a filter object"}
		}
		kid, err := p.filter(m, path)
		if err != nil {
			return nil, err
		}
		n, err := p.add(&node{op: k, kids: []*node{kid}}, path)
		return []*node{n}, err
	}
	if strings.HasPrefix(k, "$") {
		if _, known := checkOperand(k, nil); known {
			return nil, &Error{Path: path, Msg: "operator " + k + " must be applied to a field"}
		}
		return nil, &Error{Path: path, Msg: "unknown operator " + k}
	}
	segs := strings.Split(k, ".")
	if slices.Contains(segs, "") {
		return nil, &Error{Path: path, Msg: "field path has an empty segment"}
	}
	ops, ok := v.(map[string]any)
	if !ok || !hasOperator(ops) {
		n, err := p.add(&node{op: "$eq", path: segs, arg: exact(v)}, path)
		return []*node{n}, err
	}
	var nodes []*node
	for _, op := range slices.Sorted(maps.Keys(ops)) {
		opPath := join(path, op)
		if !isOperator(op) {
			return nil, &Error{Path: opPath, Msg: "cannot mix operators and fields in one object"}
		}
		msg, known := checkOperand(op, ops[op])
		if !known {
			return nil, &Error{Path: opPath, Msg: "unknown field operator " + op}
		}
		if msg != "" {
			return nil, &Error{Path: opPath, Msg: msg}
		}
		n, err := p.add(&node{op: op, path: segs, arg: exact(ops[op])}, opPath)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// checkOperand reports whether op is a field operator and, if so, what is
// wrong with its operand v ("" for nothing).
func checkOperand(op string, v any) (msg string, known bool) {
	switch op {
	case "$eq", "$neq", "$contains":
		return "", true
	case "$gt", "$gte", "$lt", "$lte":
		switch v.(type) {
		case json.Number, string:
			return "", true
		}
		return "must be a number or a string", true
	case "$in", "$nin":
		if _, ok := v.([]any); !ok {
			return "must be an array", true
		}
		return "", true
	case "$exist":
		if _, ok := v.(bool); !ok {
			return "must be true or false", true
		}
		return "", true
	}
	return "", false
}

// hasOperator reports whether any key of m is an operator.
func hasOperator(m map[string]any) bool {
	for k := range m {
		if isOperator(k) {
			return true
		}
	}
	return false
}

func isOperator(k string) bool { return strings.HasPrefix(k, "$") }

// join appends key k to an error path.
func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// index appends array index i to an error path.
func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// exact replaces, in place, the numbers of an operand by decimals, so that
// they are parsed once.
func exact(v any) any {
	switch v := v.(type) {
	case json.Number:
		if d, ok := parseDecimal(string(v)); ok {
			return d
		}
	case []any:
		for i, e := range v {
			v[i] = exact(e)
		}
	case map[string]any:
		for k, e := range v {
			v[k] = exact(e)
		}
	}
	return v
}

// match reports whether doc satisfies n, spending steps of m.
func (n *node) match(doc any, m *meter) bool {
	if !m.spend(1) {
		return false
	}
	switch n.op {
	case "$and":
		for _, k := range n.kids {
			if !k.match(doc, m) || m.out() {
				return false
			}
		}
		return true
	case "$or":
		for _, k := range n.kids {
			if k.match(doc, m) || m.out() {
				return !m.out()
			}
		}
		return false
	case "$not":
		return !n.kids[0].match(doc, m)
	}
	v, ok := lookup(doc, n.path, m)
	if n.op == "$exist" {
		want, _ := n.arg.(bool)
		return ok == want
	}
	if !ok {
		return n.op == "$neq" || n.op == "$nin"
	}
	switch n.op {
	case "$eq":
		return equal(v, n.arg, m)
	case "$neq":
		return !equal(v, n.arg, m)
	case "$gt", "$gte", "$lt", "$lte":
		c, ok := compare(v, n.arg, m)
		if !ok {
			return false
		}
		switch n.op {
		case "$gt":
			return c > 0
		case "$gte":
			return c >= 0
		case "$lt":
			return c < 0
		}
		return c <= 0
	case "$in", "$nin":
		list, _ := n.arg.([]any)
		found := contains(list, v, m)
		return found == (n.op == "$in")
	case "$contains":
		switch v := v.(type) {
		case []any:
			return contains(v, n.arg, m)
		case string:
			s, ok := n.arg.(string)
			return ok && m.spend(1+len(v)/searchBytesPerStep) && strings.Contains(v, s)
		}
	}
	return false
}

// contains reports whether list has an element equal to v.
func contains(list []any, v any, m *meter) bool {
	for _, e := range list {
		if equal(e, v, m) {
			return true
		}
		if m.out() {
			return false
		}
	}
	return false
}

// lookup follows path into doc. An all-digit segment also indexes arrays.
func lookup(doc any, path []string, m *meter) (any, bool) {
	if !m.spend(len(path)) {
		return nil, false
	}
	for _, seg := range path {
		switch d := doc.(type) {
		case map[string]any:
			v, ok := d[seg]
			if !ok {
				return nil, false
			}
			doc = v
		case []any:
			if !allDigits(seg) {
				return nil, false
			}
			i, err := strconv.Atoi(seg)
			if err != nil || i >= len(d) {
				return nil, false
			}
			doc = d[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

// equal reports whether a and b are deeply equal JSON values; numbers are
// equal when their values are.
func equal(a, b any, m *meter) bool {
	if !m.spend(1) {
		return false
	}
	switch a := a.(type) {
	case nil:
		return b == nil
	case bool:
		b, ok := b.(bool)
		return ok && a == b
	case string:
		b, ok := b.(string)
		return ok && len(a) == len(b) && m.spend(len(a)/equalBytesPerStep) && a == b
	case json.Number, float64, decimal:
		c, ok := compare(a, b, m)
		return ok && c == 0
	case []any:
		b, ok := b.([]any)
		return ok && slices.EqualFunc(a, b, func(x, y any) bool { return equal(x, y, m) })
	case map[string]any:
		b, ok := b.(map[string]any)
		return ok && maps.EqualFunc(a, b, func(x, y any) bool { return equal(x, y, m) })
	}
	return false
}

// compare orders two numbers or two strings; ok is false for other pairs.
func compare(a, b any, m *meter) (c int, ok bool) {
	if a, ok := a.(string); ok {
		b, ok := b.(string)
		if !ok || !m.spend(min(len(a), len(b))/equalBytesPerStep) {
			return 0, false
		}
		return strings.Compare(a, b), true
	}
	x, ok := toDecimal(a, m)
	if !ok {
		return 0, false
	}
	y, ok := toDecimal(b, m)
	if !ok {
		return 0, false
	}
	return x.cmp(y), true
}

// decimal is a finite number, exactly: sign × 0.digits × 10^exp, where
// digits has no leading or trailing zeros and is empty for zero.
type decimal struct {
	sign   int
	digits string
	exp    int64
}

// maxExp bounds exponents; beyond it they saturate.
const maxExp = 1e18

// toDecimal converts a number to a decimal: a json.Number of at most
// maxDigits characters (bounding the work of a comparison), or a float64 by
// its shortest round-tripping form.
func toDecimal(v any, m *meter) (decimal, bool) {
	switch v := v.(type) {
	case decimal:
		return v, true
	case json.Number:
		if len(v) <= maxDigits && m.spend(len(v)/digitsPerStep) {
			return parseDecimal(string(v))
		}
	case float64:
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			return parseDecimal(strconv.FormatFloat(v, 'e', -1, 64))
		}
	}
	return decimal{}, false
}

// parseDecimal parses a JSON number exactly.
func parseDecimal(s string) (decimal, bool) {
	d := decimal{sign: 1}
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		d.sign, s = -1, rest
	}
	var exp int64
	for i := range len(s) {
		if s[i] == 'e' || s[i] == 'E' {
			e, ok := parseExp(s[i+1:])
			if !ok {
				return decimal{}, false
			}
			s, exp = s[:i], e
			break
		}
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if !allDigits(intPart) || hasDot && !allDigits(frac) {
		return decimal{}, false
	}
	// The value is 0.(intPart frac) × 10^(len(intPart)+exp); drop the zeros
	// around the digits, moving the point past leading ones.
	intPart, frac = strings.TrimLeft(intPart, "0"), strings.TrimRight(frac, "0")
	exp += int64(len(intPart))
	if intPart == "" {
		n := len(frac)
		frac = strings.TrimLeft(frac, "0")
		exp -= int64(n - len(frac))
	}
	d.digits = strings.TrimRight(intPart+frac, "0")
	if d.digits == "" {
		return decimal{}, true
	}
	d.exp = exp
	return d, true
}

// parseExp parses an exponent, saturating at ±maxExp.
func parseExp(s string) (int64, bool) {
	sign := int64(1)
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		sign, s = -1, rest
	} else {
		s = strings.TrimPrefix(s, "+")
	}
	if !allDigits(s) {
		return 0, false
	}
	s = strings.TrimLeft(s, "0")
	if s == "" {
		return 0, true
	}
	e, err := strconv.ParseInt(s, 10, 64)
	if err != nil || e > maxExp {
		e = maxExp
	}
	return sign * e, true
}

// cmp returns -1, 0 or +1 as d is less than, equal to or greater than e.
func (d decimal) cmp(e decimal) int {
	if d.sign != e.sign || d.digits == "" || e.digits == "" {
		return cmp.Compare(d.signum(), e.signum())
	}
	c := cmp.Compare(d.exp, e.exp)
	if c == 0 {
		c = strings.Compare(d.digits, e.digits)
	}
	return d.sign * c
}

func (d decimal) signum() int {
	if d.digits == "" {
		return 0
	}
	return d.sign
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
