package events

import (
	"slices"
	"testing"
)

func TestLRU(t *testing.T) {
	t.Parallel()

	keys := func(l *lru[int]) []string {
		var ks []string
		for el := l.order.Front(); el != nil; el = el.Next() {
			ks = append(ks, el.Value.(*lruEntry[int]).key)
		}
		return ks
	}

	for _, tc := range []struct {
		name string
		ops  func(l *lru[int])
		want []string // most recently used first
	}{
		{"DropsLeastRecentlyPut", func(l *lru[int]) {
			l.put("a", 1)
			l.put("b", 2)
			l.put("c", 3)
			l.put("d", 4)
		}, []string{"d", "c", "b"}},
		{"GetKeepsAKey", func(l *lru[int]) {
			l.put("a", 1)
			l.put("b", 2)
			l.put("c", 3)
			l.get("a")
			l.put("d", 4)
		}, []string{"d", "a", "c"}},
		{"PutAgainReplacesInPlace", func(l *lru[int]) {
			l.put("a", 1)
			l.put("b", 2)
			l.put("c", 3)
			l.put("a", 10)
			l.put("d", 4)
		}, []string{"d", "a", "c"}},
		{"RemoveMakesRoom", func(l *lru[int]) {
			l.put("a", 1)
			l.put("b", 2)
			l.put("c", 3)
			l.remove("b")
			l.remove("missing")
			l.put("d", 4)
		}, []string{"d", "c", "a"}},
		{"Clear", func(l *lru[int]) {
			l.put("a", 1)
			l.put("b", 2)
			l.clear()
			l.put("c", 3)
		}, []string{"c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLRU[int](3)
			tc.ops(l)
			if got := keys(l); !slices.Equal(got, tc.want) || l.len() != len(tc.want) || len(l.byKey) != len(tc.want) {
				t.Errorf("keys %v (len %d, map %d), want %v", got, l.len(), len(l.byKey), tc.want)
			}
		})
	}

	l := newLRU[int](2)
	l.put("a", 1)
	l.put("a", 2)
	if v, ok := l.get("a"); !ok || v != 2 {
		t.Errorf("get(a) = %d, %v; want 2, true", v, ok)
	}
	if _, ok := l.get("b"); ok {
		t.Error("get(b) found a key never put")
	}
}
