// Package lru is a cache of at most a given number of values by key, which
// drops the least recently used one to make room. It is not safe for
// concurrent use: its users hold their own lock.
package lru

import "container/list"

// Cache holds at most max values by key.
type Cache[V any] struct {
	max   int
	order *list.List // of *entry[V], most recently used first
	byKey map[string]*list.Element
}

type entry[V any] struct {
	key string
	v   V
}

// New returns a Cache of at most max values.
func New[V any](max int) *Cache[V] {
	return &Cache[V]{max: max, order: list.New(), byKey: map[string]*list.Element{}}
}

// Get returns the value of key and marks it used.
func (l *Cache[V]) Get(key string) (V, bool) {
	el, ok := l.byKey[key]
	if !ok {
		var zero V
		return zero, false
	}
	l.order.MoveToFront(el)
	return el.Value.(*entry[V]).v, true
}

// Put sets the value of key and returns the value it replaced or, when the
// cache was full, the least recently used one it dropped (dropped: true).
func (l *Cache[V]) Put(key string, v V) (old V, dropped bool) {
	if el, ok := l.byKey[key]; ok {
		e := el.Value.(*entry[V])
		old, e.v = e.v, v
		l.order.MoveToFront(el)
		return old, true
	}
	if l.order.Len() >= l.max {
		oldest := l.order.Back()
		e := oldest.Value.(*entry[V])
		delete(l.byKey, e.key)
		old, dropped = e.v, true
		l.order.Remove(oldest)
	}
	l.byKey[key] = l.order.PushFront(&entry[V]{key: key, v: v})
	return old, dropped
}

// Remove drops key.
func (l *Cache[V]) Remove(key string) {
	if el, ok := l.byKey[key]; ok {
		l.order.Remove(el)
		delete(l.byKey, key)
	}
}

// Clear drops everything.
func (l *Cache[V]) Clear() {
	l.order.Init()
	clear(l.byKey)
}

// Keys returns the keys, most recently used first.
func (l *Cache[V]) Keys() []string {
	ks := make([]string, 0, l.order.Len())
	for el := l.order.Front(); el != nil; el = el.Next() {
		ks = append(ks, el.Value.(*entry[V]).key)
	}
	return ks
}

// Len returns how many values the cache holds.
func (l *Cache[V]) Len() int { return l.order.Len() }
