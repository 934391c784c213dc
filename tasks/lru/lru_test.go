package lru_test

import (
	"slices"
	"testing"

	"github.com/hookd/hookd/tasks/lru"
)

func TestCache(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name string
		ops  func(l *lru.Cache[int])
		want []string // most recently used first
	}{
		{"DropsLeastRecentlyPut", func(l *lru.Cache[int]) {
			l.Put("a", 1)
			l.Put("b", 2)
			l.Put("c", 3)
			l.Put("d", 4)
		}, []string{"d", "c", "b"}},
		{"GetKeepsAKey", func(l *lru.Cache[int]) {
			l.Put("a", 1)
			l.Put("b", 2)
			l.Put("c", 3)
			l.Get("a")
			l.Put("d", 4)
		}, []string{"d", "a", "c"}},
		{"PutAgainReplacesInPlace", func(l *lru.Cache[int]) {
			l.Put("a", 1)
			l.Put("b", 2)
			l.Put("c", 3)
			l.Put("a", 10)
			l.Put("d", 4)
		}, []string{"d", "a", "c"}},
		{"RemoveMakesRoom", func(l *lru.Cache[int]) {
			l.Put("a", 1)
			l.Put("b", 2)
			l.Put("c", 3)
			l.Remove("b")
			l.Remove("missing")
			l.Put("d", 4)
		}, []string{"d", "c", "a"}},
		{"Clear", func(l *lru.Cache[int]) {
			l.Put("a", 1)
			l.Put("b", 2)
			l.Clear()
			l.Put("c", 3)
		}, []string{"c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := lru.New[int](3)
			tc.ops(l)
			if got := l.Keys(); !slices.Equal(got, tc.want) || l.Len() != len(tc.want) {
				t.Errorf("keys %v (len %d), want %v", got, l.Len(), tc.want)
			}
		})
	}

	l := lru.New[int](2)
	l.Put("a", 1)
	l.Put("a", 2)
	if v, ok := l.Get("a"); !ok || v != 2 {
		t.Errorf("get(a) = %d, %v; want 2, true", v, ok)
	}
	if _, ok := l.Get("b"); ok {
		t.Error("get(b) found a key never put")
	}
}
