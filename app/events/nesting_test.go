package events

import (
	"strings"
	"testing"
)

func TestNestedDeeper(t *testing.T) {
	t.Parallel()
	nest := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	for _, tc := range []struct {
		raw  string
		max  int
		want bool
	}{
		{`{}`, 1, false},
		{`{"a":[]}`, 1, true},
		{`{"a":[]}`, 2, false},
		{nest(64), 64, false},
		{nest(65), 64, true},
		{nest(9999), 64, true},
		{`{"a":"[[[[{{{{"}`, 1, false},
		{`{"a":"\"[[[[","b":"\\"}`, 1, false},
		{`{"a":"\\\"[["}`, 1, false},
		{`[[1],[2],[3]]`, 2, false},
		{`"[[["`, 0, false},
	} {
		if got := nestedDeeper([]byte(tc.raw), tc.max); got != tc.want {
			t.Errorf("nestedDeeper(%.40s, %d) = %v, want %v", tc.raw, tc.max, got, tc.want)
		}
	}
}
