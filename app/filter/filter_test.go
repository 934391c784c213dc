package filter_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/hookd/hookd/app/filter"
)

// payload is the document most match cases run against.
const payload = `{
	"country": "NL",
	"amount": 42,
	"price": 10.50,
	"big": 9007199254740993,
	"neg": -3,
	"active": true,
	"deleted": false,
	"note": null,
	"tags": ["a", "b", 3, {"k": "v"}],
	"link": {"code": "abc", "hits": 10, "meta": {"utm": {"source": "mail"}}},
	"items": [{"sku": "x", "qty": 2}, {"sku": "y", "qty": 0}],
	"matrix": [[1, 2], [3, 4]],
	"obj": {"0": "zero"},
	"dotted.key": 1,
	"empty": {},
	"list": []
}`

var matchCases = []struct {
	filter  string
	payload string // the document; payload when empty
	want    bool
}{
	// nil filters match everything, even invalid payloads.
	{filter: ``, want: true},
	{filter: `null`, want: true},
	{filter: `{}`, want: true},
	{filter: ` {} `, payload: `not json`, want: true},

	// Equality.
	{filter: `{"country": "NL"}`, want: true},
	{filter: `{"country": "nl"}`, want: false},
	{filter: `{"country": "NL", "amount": 42}`, want: true},
	{filter: `{"country": "NL", "amount": 43}`, want: false},
	{filter: `{"amount": 42.0}`, want: true},
	{filter: `{"amount": 4.2e1}`, want: true},
	{filter: `{"amount": 420e-1}`, want: true},
	{filter: `{"amount": "42"}`, want: false},
	{filter: `{"price": 10.5}`, want: true},
	{filter: `{"price": 10.500000000000000000001}`, want: false},
	{filter: `{"big": 9007199254740993}`, want: true},
	{filter: `{"big": 9007199254740992}`, want: false},
	{filter: `{"big": 9007199254740993.0}`, want: true},
	{filter: `{"neg": -3}`, want: true},
	{filter: `{"neg": 3}`, want: false},
	{filter: `{"n": 0}`, payload: `{"n": -0.0}`, want: true},
	{filter: `{"n": 0}`, payload: `{"n": 0e99999999999999999999}`, want: true},
	{filter: `{"n": 1e400}`, payload: `{"n": 10e399}`, want: true},
	{filter: `{"n": 1e-400}`, payload: `{"n": 0}`, want: false},
	{filter: `{"n": 1e999999999999999999999999}`, payload: `{"n": 1e999999999999999999999998}`, want: true}, // exponents saturate
	{filter: `{"n": 2e999999999999999999999999}`, payload: `{"n": 1e999999999999999999999999}`, want: false},
	{filter: `{"n": 1e200}`, payload: `{"n": 1` + strings.Repeat("0", 200) + `}`, want: true},
	{filter: `{"n": 1` + strings.Repeat("0", 1100) + `}`, payload: `{"n": 1e1100}`, want: true},
	{filter: `{"n": {"$gt": 0}}`, payload: `{"n": 1` + strings.Repeat("0", 1023) + `}`, want: true},
	// Payload numbers longer than 1024 characters never compare.
	{filter: `{"n": {"$gt": 0}}`, payload: `{"n": 1` + strings.Repeat("0", 1024) + `}`, want: false},
	{filter: `{"n": {"$neq": 1}}`, payload: `{"n": 1` + strings.Repeat("0", 1024) + `}`, want: true},
	{filter: `{"active": true}`, want: true},
	{filter: `{"active": 1}`, want: false},
	{filter: `{"deleted": false}`, want: true},
	{filter: `{"deleted": null}`, want: false},
	{filter: `{"note": null}`, want: true},
	{filter: `{"missing": null}`, want: false},
	{filter: `{"link": {"code": "abc", "hits": 10.0, "meta": {"utm": {"source": "mail"}}}}`, want: true},
	{filter: `{"link": {"code": "abc"}}`, want: false},
	{filter: `{"tags": ["a", "b", 3.0, {"k": "v"}]}`, want: true},
	{filter: `{"tags": ["b", "a", 3, {"k": "v"}]}`, want: false},
	{filter: `{"tags": ["a"]}`, want: false},
	{filter: `{"empty": {}}`, want: true},
	{filter: `{"list": []}`, want: true},
	{filter: `{"list": {}}`, want: false},
	{filter: `{"country": {"$eq": "NL"}}`, want: true},
	{filter: `{"link": {"$eq": {"code": "abc"}}}`, want: false},

	// Dotted paths and array indexes.
	{filter: `{"link.code": "abc"}`, want: true},
	{filter: `{"link.meta.utm.source": "mail"}`, want: true},
	{filter: `{"link.meta.utm.source": "web"}`, want: false},
	{filter: `{"link.code.x": "abc"}`, want: false},
	{filter: `{"items.0.sku": "x"}`, want: true},
	{filter: `{"items.1.sku": "y"}`, want: true},
	{filter: `{"items.2.sku": "y"}`, want: false},
	{filter: `{"items.99999999999999999999999.sku": "y"}`, want: false},
	{filter: `{"items.-1.sku": "y"}`, want: false},
	{filter: `{"items.+1.sku": "y"}`, want: false},
	{filter: `{"items.sku": "x"}`, want: false},
	{filter: `{"matrix.1.0": 3}`, want: true},
	{filter: `{"tags.3.k": "v"}`, want: true},
	{filter: `{"obj.0": "zero"}`, want: true},
	{filter: `{"dotted.key": 1}`, want: false},
	{filter: `{"0": 1}`, payload: `[1]`, want: true},
	{filter: `{"a": 1}`, payload: `"a"`, want: false},

	// $neq.
	{filter: `{"country": {"$neq": "DE"}}`, want: true},
	{filter: `{"country": {"$neq": "NL"}}`, want: false},
	{filter: `{"amount": {"$neq": 42.00}}`, want: false},
	{filter: `{"missing": {"$neq": "NL"}}`, want: true},
	{filter: `{"note": {"$neq": null}}`, want: false},

	// Ordering.
	{filter: `{"amount": {"$gt": 41}}`, want: true},
	{filter: `{"amount": {"$gt": 42}}`, want: false},
	{filter: `{"amount": {"$gte": 42}}`, want: true},
	{filter: `{"amount": {"$gte": 42.000001}}`, want: false},
	{filter: `{"amount": {"$lt": 100}}`, want: true},
	{filter: `{"amount": {"$lt": 42}}`, want: false},
	{filter: `{"amount": {"$lte": 42}}`, want: true},
	{filter: `{"amount": {"$lte": 41.9999}}`, want: false},
	{filter: `{"amount": {"$gte": 10, "$lt": 100}}`, want: true},
	{filter: `{"amount": {"$gte": 10, "$lt": 42}}`, want: false},
	{filter: `{"amount": {"$gt": "1"}}`, want: false},
	{filter: `{"amount": {"$lt": "1"}}`, want: false},
	{filter: `{"price": {"$gt": 10.49, "$lt": 10.51}}`, want: true},
	{filter: `{"big": {"$gt": 9007199254740992}}`, want: true},
	{filter: `{"neg": {"$lt": -2.5}}`, want: true},
	{filter: `{"neg": {"$gt": -3.5}}`, want: true},
	{filter: `{"neg": {"$lt": 0}}`, want: true},
	{filter: `{"n": {"$gt": 0}}`, payload: `{"n": 1e-400}`, want: true},
	{filter: `{"n": {"$lt": -1e400}}`, payload: `{"n": -1e401}`, want: true},
	{filter: `{"n": {"$gt": 99}}`, payload: `{"n": 1e2}`, want: true},
	{filter: `{"n": {"$gt": 0.09}}`, payload: `{"n": 0.1}`, want: true},
	{filter: `{"n": {"$lt": 0.011}}`, payload: `{"n": 0.01}`, want: true},
	{filter: `{"country": {"$gt": "DE"}}`, want: true},
	{filter: `{"country": {"$lt": "DE"}}`, want: false},
	{filter: `{"country": {"$gte": "NL", "$lte": "NL"}}`, want: true},
	{filter: `{"country": {"$gt": 1}}`, want: false},
	{filter: `{"active": {"$gt": "a"}}`, want: false},
	{filter: `{"missing": {"$gt": 0}}`, want: false},
	{filter: `{"missing": {"$lt": 0}}`, want: false},

	// $in and $nin.
	{filter: `{"country": {"$in": ["DE", "NL"]}}`, want: true},
	{filter: `{"country": {"$in": ["DE", "FR"]}}`, want: false},
	{filter: `{"country": {"$in": []}}`, want: false},
	{filter: `{"amount": {"$in": [1, 42.0]}}`, want: true},
	{filter: `{"link": {"$in": [{"code": "abc"}]}}`, want: false},
	{filter: `{"tags": {"$in": [["a", "b", 3, {"k": "v"}]]}}`, want: true},
	{filter: `{"note": {"$in": [null]}}`, want: true},
	{filter: `{"missing": {"$in": [null]}}`, want: false},
	{filter: `{"country": {"$nin": ["DE", "FR"]}}`, want: true},
	{filter: `{"country": {"$nin": ["DE", "NL"]}}`, want: false},
	{filter: `{"country": {"$nin": []}}`, want: true},
	{filter: `{"missing": {"$nin": ["NL"]}}`, want: true},

	// $exist.
	{filter: `{"country": {"$exist": true}}`, want: true},
	{filter: `{"country": {"$exist": false}}`, want: false},
	{filter: `{"note": {"$exist": true}}`, want: true},
	{filter: `{"missing": {"$exist": true}}`, want: false},
	{filter: `{"missing": {"$exist": false}}`, want: true},
	{filter: `{"link.meta.utm": {"$exist": true}}`, want: true},
	{filter: `{"items.5": {"$exist": false}}`, want: true},
	{filter: `{"a.b": {"$exist": false}}`, payload: `null`, want: true},

	// $contains.
	{filter: `{"tags": {"$contains": "a"}}`, want: true},
	{filter: `{"tags": {"$contains": "c"}}`, want: false},
	{filter: `{"tags": {"$contains": 3.0}}`, want: true},
	{filter: `{"tags": {"$contains": {"k": "v"}}}`, want: true},
	{filter: `{"country": {"$contains": "N"}}`, want: true},
	{filter: `{"country": {"$contains": "X"}}`, want: false},
	{filter: `{"country": {"$contains": ""}}`, want: true},
	{filter: `{"amount": {"$contains": "4"}}`, want: false},
	{filter: `{"amount": {"$contains": 4}}`, want: false},
	{filter: `{"country": {"$contains": ["N"]}}`, want: false},
	{filter: `{"link": {"$contains": "abc"}}`, want: false},
	{filter: `{"missing": {"$contains": "a"}}`, want: false},
	{filter: `{"list": {"$contains": null}}`, want: false},

	// Logical operators.
	{filter: `{"$or": [{"country": "DE"}, {"amount": 42}]}`, want: true},
	{filter: `{"$or": [{"country": "DE"}, {"amount": 43}]}`, want: false},
	{filter: `{"$or": [{}]}`, want: true},
	{filter: `{"$and": [{"country": "NL"}, {"amount": {"$gt": 40}}]}`, want: true},
	{filter: `{"$and": [{"country": "NL"}, {"amount": {"$gt": 50}}]}`, want: false},
	{filter: `{"$not": {"country": "DE"}}`, want: true},
	{filter: `{"$not": {"country": "NL"}}`, want: false},
	{filter: `{"$not": {}}`, want: false},
	{filter: `{"$not": {"missing": 1}}`, want: true},
	{filter: `{"country": "NL", "$or": [{"amount": 1}, {"link.code": "abc"}]}`, want: true},
	{filter: `{"country": "DE", "$or": [{"amount": 1}, {"link.code": "abc"}]}`, want: false},
	{filter: `{"$and": [{"$or": [{"a": 1}, {"country": "NL"}]}, {"$not": {"$or": [{"active": false}, {"deleted": true}]}}]}`, want: true},
	{filter: `{"$or": [{"$and": [{"a": 1}]}, {"$not": {"$not": {"country": "NL"}}}]}`, want: true},

	// Non-object payloads and invalid payloads.
	{filter: `{"country": "NL"}`, payload: `not json`, want: false},
	{filter: `{"country": "NL"}`, payload: " ", want: false},
	{filter: `{"country": "NL"}`, payload: `{"country": "NL"} {}`, want: false},
	{filter: `{"country": "NL"}`, payload: `{"country": "NL"}` + "\n", want: true},
	{filter: `{"missing": {"$exist": false}}`, payload: `{`, want: false},
	{filter: `{"country": "NL"}`, payload: `["NL"]`, want: false},
	{filter: `{"country": "NL"}`, payload: `null`, want: false},
}

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range matchCases {
		p := cmp.Or(tc.payload, payload)
		f, err := filter.Parse([]byte(tc.filter))
		if err != nil {
			t.Errorf("Parse(%s): %v", tc.filter, err)
			continue
		}
		if got := f.Match([]byte(p)); got != tc.want {
			t.Errorf("Parse(%s).Match(%.40q) = %v, want %v", tc.filter, p, got, tc.want)
		}
	}
}

func TestMatchValue(t *testing.T) {
	t.Parallel()

	t.Run("UseNumber", func(t *testing.T) {
		t.Parallel()
		for _, tc := range matchCases {
			doc, ok := decodeNumbers(cmp.Or(tc.payload, payload))
			if !ok {
				continue
			}
			f, err := filter.Parse([]byte(tc.filter))
			if err != nil {
				t.Fatalf("Parse(%s): %v", tc.filter, err)
			}
			if got := f.MatchValue(doc); got != tc.want {
				t.Errorf("Parse(%s).MatchValue(%.40q) = %v, want %v", tc.filter, cmp.Or(tc.payload, payload), got, tc.want)
			}
		}
	})

	t.Run("Float64", func(t *testing.T) {
		t.Parallel()
		var doc any
		if err := json.Unmarshal([]byte(`{"amount": 42, "price": 0.1, "huge": 1e300, "tiny": 5e-324, "neg": -2.5, "ids": [1, 2.5]}`), &doc); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			filter string
			want   bool
		}{
			{`{"amount": 42}`, true},
			{`{"amount": 42.0}`, true},
			{`{"amount": 42.000000000000000001}`, false},
			{`{"amount": {"$gt": 41.99, "$lte": 42}}`, true},
			{`{"price": 0.1}`, true},
			{`{"price": 0.10}`, true},
			{`{"price": 1e-1}`, true},
			{`{"price": 0.1000000000000000055511151231257827}`, false},
			{`{"price": {"$gt": 0.09999999999999999, "$lt": 0.10000000000000001}}`, true},
			{`{"huge": 1e300}`, true},
			{`{"huge": {"$gt": 9.99e299}}`, true},
			{`{"tiny": 5e-324}`, true},
			{`{"tiny": {"$gt": 0}}`, true},
			{`{"neg": -2.5}`, true},
			{`{"neg": {"$lt": -2}}`, true},
			{`{"ids": {"$contains": 2.5}}`, true},
			{`{"ids": [1.0, 2.50]}`, true},
			{`{"amount": {"$in": [1, 42]}}`, true},
		} {
			f, err := filter.Parse([]byte(tc.filter))
			if err != nil {
				t.Fatalf("Parse(%s): %v", tc.filter, err)
			}
			if got := f.MatchValue(doc); got != tc.want {
				t.Errorf("Parse(%s).MatchValue = %v, want %v", tc.filter, got, tc.want)
			}
		}
	})

	t.Run("OddValues", func(t *testing.T) {
		t.Parallel()
		f, err := filter.Parse([]byte(`{"n": {"$gte": 1}}`))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []any{json.Number("x"), json.Number(""), json.Number("1.2.3"), json.Number("1e"), 7, math.NaN(), math.Inf(1), struct{}{}} {
			if f.MatchValue(map[string]any{"n": v}) {
				t.Errorf("MatchValue(%#v) = true, want false", v)
			}
		}
		if !f.MatchValue(map[string]any{"n": json.Number("1E+0")}) {
			t.Error("MatchValue(1E+0) = false, want true")
		}
		var nilFilter *filter.Filter
		if !nilFilter.MatchValue(nil) || !nilFilter.Match([]byte("not json")) {
			t.Error("nil filter does not match everything")
		}
	})
}

// TestWorstCaseSteps checks that the costliest filters Parse accepts stay
// within DefaultBudget on a payload of 256 KiB (the default event size
// limit): as many $contains as a filter may have, each scanning an array
// that fills the payload (elements chosen so that comparing each costs the
// most per byte), beside an $in spending the rest of the 8 KiB against a
// number of 1,000 digits. It counts steps, not time.
func TestWorstCaseSteps(t *testing.T) {
	t.Parallel()
	const (
		payloadBytes = 256 << 10
		filterBytes  = 8 << 10
		maxScans     = 4
	)
	long := strings.Repeat("7", 1000)
	for _, tc := range []struct {
		name, elem, arg string
	}{
		{"Numbers", "0", "1"},
		{"Exponents", "1e9", "1"},
		{"Strings", `""`, `"x"`},
		{"Arrays", "[0,0,0,0]", "[0,0,0,1]"},
		{"Nested", "[[[[0]]]]", "[[[[1]]]]"},
		{"Objects", `{"k":0}`, `{"k":1}`},
		{"Search", "", `"` + strings.Repeat("a", 60) + `b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var p strings.Builder
			p.WriteString(`{"n":` + long + `,"a":`)
			elems := 0
			if tc.elem == "" {
				// One string that fills the payload, searched for a
				// needle that nearly matches everywhere.
				p.WriteString(`"` + strings.Repeat("a", payloadBytes-p.Len()-3) + `"`)
				elems = 1
			} else {
				p.WriteString("[" + tc.elem)
				for elems = 1; p.Len()+len(tc.elem)+3 <= payloadBytes; elems++ {
					p.WriteString("," + tc.elem)
				}
				p.WriteString("]")
			}
			p.WriteString("}")
			if p.Len() > payloadBytes {
				t.Fatalf("payload of %d bytes", p.Len())
			}

			var f strings.Builder
			f.WriteString(`{"$or":[`)
			for range maxScans {
				f.WriteString(`{"a":{"$contains":` + tc.arg + `}},`)
			}
			f.WriteString(`{"n":{"$in":[0`)
			for f.Len()+len(`,0]}}]}`) <= filterBytes {
				f.WriteString(",0")
			}
			f.WriteString(`]}}]}`)
			fl, err := filter.Parse([]byte(f.String()))
			if err != nil {
				t.Fatalf("Parse(%d bytes): %v", f.Len(), err)
			}
			doc, ok := decodeNumbers(p.String())
			if !ok {
				t.Fatal("payload does not decode")
			}

			match, steps, err := fl.Eval(doc, math.MaxInt)
			if err != nil || match {
				t.Fatalf("Eval = %v, %v; want no match", match, err)
			}
			t.Logf("%d elements, filter %d bytes, payload %d bytes: %d steps", elems, f.Len(), p.Len(), steps)
			if steps > filter.DefaultBudget {
				t.Errorf("%d steps, more than DefaultBudget (%d)", steps, filter.DefaultBudget)
			}
			if elems > 1 && steps < maxScans*elems {
				t.Errorf("%d steps for %d scans of %d elements: the filter did not scan them", steps, maxScans, elems)
			}
			if _, _, err := fl.Eval(doc, 0); err != nil {
				t.Errorf("Eval with the default budget: %v", err)
			}
		})
	}
}

func TestBudget(t *testing.T) {
	t.Parallel()
	parse := func(raw string) *filter.Filter {
		t.Helper()
		f, err := filter.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	// Elements share one value, so that a long array costs no more memory
	// than its slice.
	array := func(n int) any {
		zero := any(json.Number("0"))
		a := make([]any, n)
		for i := range a {
			a[i] = zero
		}
		return map[string]any{"a": a}
	}
	scan, notScan := parse(`{"a": {"$contains": 1}}`), parse(`{"$not": {"a": {"$contains": 1}}}`)

	t.Run("Steps", func(t *testing.T) {
		t.Parallel()
		doc := array(1000)
		_, steps, err := scan.Eval(doc, 0)
		if err != nil || steps < 1000 || steps > 1010 {
			t.Errorf("Eval over 1,000 elements = %d steps, %v; want about 1,000", steps, err)
		}
		if _, again, _ := scan.Eval(doc, 0); again != steps {
			t.Errorf("Eval took %d steps, then %d", steps, again)
		}
		var nilFilter *filter.Filter
		if match, steps, err := nilFilter.Eval(doc, 1); !match || steps != 0 || err != nil {
			t.Errorf("nil filter: Eval = %v, %d, %v; want true, 0, nil", match, steps, err)
		}
	})

	t.Run("Exceeded", func(t *testing.T) {
		t.Parallel()
		doc := array(1000)
		for _, f := range []*filter.Filter{scan, notScan} {
			match, steps, err := f.Eval(doc, 100)
			if match || steps != 100 || !errors.Is(err, filter.ErrBudget) {
				t.Errorf("Eval with 100 steps = %v, %d, %v; want false, 100, ErrBudget", match, steps, err)
			}
		}
	})

	t.Run("DefaultBudget", func(t *testing.T) {
		t.Parallel()
		// Over the default budget, a filter and its $not both do not match.
		doc := array(filter.DefaultBudget)
		if scan.MatchValue(doc) || notScan.MatchValue(doc) {
			t.Error("a match over the default budget matched")
		}
		if _, _, err := scan.Eval(doc, 0); !errors.Is(err, filter.ErrBudget) {
			t.Errorf("Eval with the default budget: %v, want ErrBudget", err)
		}
		if match, _, err := notScan.Eval(doc, 2*filter.DefaultBudget); !match || err != nil {
			t.Errorf("Eval with twice the default budget = %v, %v; want a match", match, err)
		}
	})
}

func TestConcurrentMatch(t *testing.T) {
	t.Parallel()
	f, err := filter.Parse([]byte(`{"$or": [{"link.code": "abc"}, {"amount": {"$in": [1, 2.5]}}], "tags": {"$contains": 3}}`))
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := decodeNumbers(payload)
	done := make(chan bool)
	for range 4 {
		go func() {
			ok := true
			for range 100 {
				ok = ok && f.Match([]byte(payload)) && f.MatchValue(doc)
			}
			done <- ok
		}()
	}
	for range 4 {
		if !<-done {
			t.Error("concurrent matches disagree")
		}
	}
}

// TestNumberOrder checks the ordering operators against math/big on
// pseudo-random decimals, and against float64 on float64 documents.
func TestNumberOrder(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "0012345679"[r.IntN(10)]
		}
		return string(b)
	}
	number := func() string {
		s := []string{"", "-"}[r.IntN(2)] + cmp.Or(strings.TrimLeft(digits(r.IntN(4)), "0"), "0")
		if r.IntN(2) == 0 {
			s += "." + digits(1+r.IntN(4))
		}
		if r.IntN(3) == 0 {
			s += []string{"e", "E", "e+", "e-"}[r.IntN(4)] + strconv.Itoa(r.IntN(5))
		}
		return s
	}
	ops := []struct {
		op   string
		want func(c int) bool
	}{
		{"$lt", func(c int) bool { return c < 0 }},
		{"$lte", func(c int) bool { return c <= 0 }},
		{"$eq", func(c int) bool { return c == 0 }},
		{"$neq", func(c int) bool { return c != 0 }},
		{"$gte", func(c int) bool { return c >= 0 }},
		{"$gt", func(c int) bool { return c > 0 }},
	}
	for range 5000 {
		a, b := number(), number()
		x, _ := new(big.Rat).SetString(a)
		y, _ := new(big.Rat).SetString(b)
		fa, _ := strconv.ParseFloat(a, 64)
		fb, _ := strconv.ParseFloat(b, 64)
		for _, o := range ops {
			f, err := filter.Parse([]byte(`{"n": {"` + o.op + `": ` + b + `}}`))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := f.MatchValue(map[string]any{"n": json.Number(a)}), o.want(x.Cmp(y)); got != want {
				t.Fatalf("%s %s %s = %v, want %v", a, o.op, b, got, want)
			}
			// A float64 compares as the shortest decimal that round-trips to it.
			shortest, _ := new(big.Rat).SetString(strconv.FormatFloat(fa, 'g', -1, 64))
			if got, want := f.MatchValue(map[string]any{"n": fa}), o.want(shortest.Cmp(y)); got != want {
				t.Fatalf("float64 %v %s %s = %v, want %v", fa, o.op, b, got, want)
			}
			f, err = filter.Parse([]byte(`{"n": {"` + o.op + `": ` + strconv.FormatFloat(fb, 'g', -1, 64) + `}}`))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := f.MatchValue(map[string]any{"n": fa}), o.want(cmp.Compare(fa, fb)); got != want {
				t.Fatalf("float64 %v %s %v = %v, want %v", fa, o.op, fb, got, want)
			}
		}
	}
}

// nested returns n objects nested in one another: {"a":{"a":...1}}.
func nested(n int) string {
	return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n)
}

// conditions returns an $or of n conditions.
func conditions(n int) string {
	return `{"$or":[` + strings.TrimSuffix(strings.Repeat(`{"a":1},`, n), ",") + `]}`
}

// scans returns an $or of n $contains operators.
func scans(n int) string {
	return `{"$or":[` + strings.TrimSuffix(strings.Repeat(`{"a":{"$contains":1}},`, n), ",") + `]}`
}

var parseErrorCases = []struct {
	filter string
	path   string
}{
	{`[]`, ""},
	{`[{"a": 1}]`, ""},
	{`"a"`, ""},
	{`1`, ""},
	{`true`, ""},
	{`{`, ""},
	{`{"a": 1`, ""},
	{`{"a": 1}}`, ""},
	{`{"a": 1} x`, ""},
	{`{"a": 1} {}`, ""},
	{`{} {}`, ""},
	{`null null`, ""},
	{`{"a": 01}`, ""},
	{`{"a": NaN}`, ""},
	{`{"$foo": 1}`, "$foo"},
	{`{"$eq": 1}`, "$eq"},
	{`{"$exist": true}`, "$exist"},
	{`{"a": {"$foo": 1}}`, "a.$foo"},
	{`{"a": {"$exists": true}}`, "a.$exists"},
	{`{"a": {"$not": {"b": 1}}}`, "a.$not"},
	{`{"a": {"$or": [{"b": 1}]}}`, "a.$or"},
	{`{"a": {"$in": 1}}`, "a.$in"},
	{`{"a": {"$in": "ab"}}`, "a.$in"},
	{`{"a": {"$nin": {}}}`, "a.$nin"},
	{`{"a": {"$nin": null}}`, "a.$nin"},
	{`{"a": {"$exist": "yes"}}`, "a.$exist"},
	{`{"a": {"$exist": 1}}`, "a.$exist"},
	{`{"a": {"$exist": null}}`, "a.$exist"},
	{`{"a": {"$gt": {}}}`, "a.$gt"},
	{`{"a": {"$gte": []}}`, "a.$gte"},
	{`{"a": {"$lt": true}}`, "a.$lt"},
	{`{"a": {"$lte": null}}`, "a.$lte"},
	{`{"a": {"$gte": 1, "$lt": [2]}}`, "a.$lt"},
	{`{"a": {"$eq": 1, "b": 2}}`, "a.b"},
	{`{"a": {"b": 2, "$eq": 1}}`, "a.b"},
	{`{"$or": []}`, "$or"},
	{`{"$or": {}}`, "$or"},
	{`{"$or": null}`, "$or"},
	{`{"$or": {"a": 1}}`, "$or"},
	{`{"$or": [1]}`, "$or[0]"},
	{`{"$or": [{}, []]}`, "$or[1]"},
	{`{"$or": [{"a": 1}, {"amount": {"$gte": {}}}]}`, "$or[1].amount.$gte"},
	{`{"$and": []}`, "$and"},
	{`{"$and": "x"}`, "$and"},
	{`{"$and": [{"a": 1}, null]}`, "$and[1]"},
	{`{"$and": [{"$or": [{"x": 1}, {"y": {"$in": 2}}]}]}`, "$and[0].$or[1].y.$in"},
	{`{"$not": []}`, "$not"},
	{`{"$not": null}`, "$not"},
	{`{"$not": {"$or": [{"a..b": 1}]}}`, "$not.$or[0].a..b"},
	{`{"a..b": 1}`, "a..b"},
	{`{"": 1}`, ""},
	{`{".a": 1}`, ".a"},
	{`{"a.": 1}`, "a."},
	{`{"x": 1, "a..b": {"$eq": 1}}`, "a..b"},
	{nested(11), "a.a.a.a.a.a.a.a.a.a"},
	{`{"a": {"$in": [[[[[[[[[1]]]]]]]]]}}`, "a.$in[0][0][0][0][0][0][0][0]"},
	{`{"$or": [` + nested(10) + `]}`, "$or[0].a.a.a.a.a.a.a.a"},
	{conditions(256), "$or"},
	{scans(5), "$or[4].a.$contains"},
	{`{"a": {"$contains": 1}, "b": {"$contains": 1}, "c": {"$contains": 1}, "d": {"$contains": 1, "$eq": 2}, "e": {"$contains": 1}}`, "e.$contains"},
	{conditions(257), "$or[256].a"},
	{`{"a": {"$gt": 1, "$lt": 2}, "$or": [` + strings.TrimSuffix(strings.Repeat(`{"b":1},`, 254), ",") + `]}`, "a.$lt"},
	{`{"a": "` + strings.Repeat("x", 8<<10) + `"}`, ""},
	{strings.Repeat(" ", 8<<10+1), ""},
}

func TestParseError(t *testing.T) {
	t.Parallel()
	for _, tc := range parseErrorCases {
		f, err := filter.Parse([]byte(tc.filter))
		var fe *filter.Error
		if !errors.As(err, &fe) {
			t.Errorf("Parse(%.60s) = %v, %v; want *filter.Error", tc.filter, f, err)
			continue
		}
		if f != nil {
			t.Errorf("Parse(%.60s) returned a filter with an error", tc.filter)
		}
		if fe.Path != tc.path {
			t.Errorf("Parse(%.60s): path %q, want %q (%v)", tc.filter, fe.Path, tc.path, err)
		}
		if fe.Msg == "" || err.Error() == "" {
			t.Errorf("Parse(%.60s): empty message", tc.filter)
		}
	}
}

func TestParseLimits(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		nested(10),
		`{"a": {"$in": [[[[[[[[1]]]]]]]]}}`,
		conditions(255),
		scans(4),
		`{"a": 1` + strings.Repeat("0", 5000) + `}`,
		`{"a": "` + strings.Repeat("x", 8<<10-10) + `"}`,
		`{"a": 1}` + strings.Repeat(" ", 8<<10-8),
		" \n\t",
		"{ }",
	} {
		if _, err := filter.Parse([]byte(raw)); err != nil {
			t.Errorf("Parse(%.60s): %v", raw, err)
		}
	}
	for _, raw := range []string{"", "  ", "null", " null\n", "{}", " {\n} "} {
		f, err := filter.Parse([]byte(raw))
		if f != nil || err != nil {
			t.Errorf("Parse(%q) = %v, %v; want nil, nil", raw, f, err)
		}
	}
}

// TestParseStored parses filters stored before $contains was limited: the
// limit is lifted, the others hold, and the budget bounds the work.
func TestParseStored(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{scans(5), scans(255)} {
		if _, err := filter.Parse([]byte(raw)); err == nil {
			t.Fatalf("Parse(%d bytes) accepted more than 4 $contains", len(raw))
		}
		f, err := filter.ParseStored([]byte(raw))
		if err != nil {
			t.Fatalf("ParseStored(%d bytes): %v", len(raw), err)
		}
		if !f.MatchValue(map[string]any{"a": []any{json.Number("1")}}) {
			t.Error("a stored filter does not match")
		}
	}
	for _, tc := range parseErrorCases {
		if strings.Contains(tc.filter, "$contains") {
			continue
		}
		if _, err := filter.ParseStored([]byte(tc.filter)); err == nil {
			t.Errorf("ParseStored(%.60s) accepted what Parse refuses", tc.filter)
		}
	}
	f, err := filter.ParseStored([]byte(scans(255)))
	if err != nil {
		t.Fatal(err)
	}
	zero := any(json.Number("0"))
	a := make([]any, 1<<16)
	for i := range a {
		a[i] = zero
	}
	if match, steps, err := f.Eval(map[string]any{"a": a}, 0); match || steps != filter.DefaultBudget || !errors.Is(err, filter.ErrBudget) {
		t.Errorf("255 scans of %d elements: Eval = %v, %d, %v; want false, the budget, ErrBudget", len(a), match, steps, err)
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := filter.Parse([]byte(`{"$or": [{}, {"amount": {"$gte": {}}}]}`))
	if got, want := err.Error(), "$or[1].amount.$gte: must be a number or a string"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	_, err = filter.Parse([]byte(`[]`))
	if got, want := err.Error(), "filter must be a JSON object"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// fuzzPayloads are the payloads FuzzParse matches every filter against.
var fuzzPayloads = []string{
	payload,
	`null`,
	`[]`,
	`"NL"`,
	`{"a": [1, {"b": null}], "a.b": 2, "0": {"1": [true]}}`,
	`{"a": 1e400, "b": {"c": [[], {}]}, "country": ["NL"], "amount": "42"}`,
	`{"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": 1}}}}}}}}}}}}`,
	`not json`,
}

func FuzzParse(f *testing.F) {
	for _, tc := range matchCases {
		f.Add(tc.filter)
	}
	for _, tc := range parseErrorCases {
		f.Add(tc.filter)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		fl, err := filter.Parse([]byte(raw))
		if err != nil {
			var fe *filter.Error
			if !errors.As(err, &fe) || fl != nil {
				t.Fatalf("Parse(%q) = %v, %#v; want nil, *filter.Error", raw, fl, err)
			}
			return
		}
		want := make([]bool, len(fuzzPayloads))
		for i, p := range fuzzPayloads {
			want[i] = fl.Match([]byte(p))
		}
		// The registry stores filters compacted, and Postgres (jsonb)
		// reorders keys and drops duplicates: both forms must behave alike.
		var compact bytes.Buffer
		if json.Compact(&compact, []byte(raw)) == nil {
			sameMatches(t, raw, compact.Bytes(), want)
		}
		if v, ok := decodeNumbers(raw); ok {
			if canon, err := json.Marshal(v); err == nil && len(canon) <= 8<<10 {
				sameMatches(t, raw, canon, want)
			}
		}
	})
}

// sameMatches checks that form, another form of the filter raw, parses and
// matches fuzzPayloads as want says.
func sameMatches(t *testing.T, raw string, form []byte, want []bool) {
	t.Helper()
	fl, err := filter.Parse(form)
	if err != nil {
		t.Fatalf("Parse(%q) succeeded but Parse(%q): %v", raw, form, err)
	}
	for i, p := range fuzzPayloads {
		if got := fl.Match([]byte(p)); got != want[i] {
			t.Fatalf("Parse(%q).Match(%q) = %v but %v for %q", form, p, got, want[i], raw)
		}
	}
}

func FuzzMatch(f *testing.F) {
	for _, tc := range matchCases {
		f.Add(tc.filter, cmp.Or(tc.payload, payload))
	}
	f.Fuzz(func(t *testing.T, raw, p string) {
		fl, err := filter.Parse([]byte(raw))
		if err != nil {
			return
		}
		got := fl.Match([]byte(p))
		doc, ok := decodeNumbers(p)
		if !ok {
			if got && fl != nil {
				t.Fatalf("Parse(%q).Match(%q) = true for an invalid payload", raw, p)
			}
			return
		}
		if v := fl.MatchValue(doc); v != got {
			t.Fatalf("Parse(%q): Match(%q) = %v but MatchValue = %v", raw, p, got, v)
		}
		if not, err := filter.Parse([]byte(`{"$not":` + raw + `}`)); err == nil {
			if not.Match([]byte(p)) == got {
				t.Fatalf("Parse(%q).Match(%q) = %v, and so does its $not", raw, p, got)
			}
		}
	})
}

// decodeNumbers decodes one JSON document as Match does.
func decodeNumbers(s string) (any, bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false
	}
	return doc, true
}
