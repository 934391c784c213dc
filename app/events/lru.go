package events

import "container/list"

// lru holds at most max values by key and drops the least recently used
// one to make room. It is not safe for concurrent use.
type lru[V any] struct {
	max   int
	order *list.List // of *lruEntry[V], most recently used first
	byKey map[string]*list.Element
}

type lruEntry[V any] struct {
	key string
	v   V
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the value of key and marks it used.
func (l *lru[V]) get(key string) (V, bool) {
	el, ok := l.byKey[key]
	if !ok {
		var zero V
		return zero, false
	}
	l.order.MoveToFront(el)
	return el.Value.(*lruEntry[V]).v, true
}

// put sets the value of key, dropping the least recently used value when
// the cache is full.
func (l *lru[V]) put(key string, v V) {
	if el, ok := l.byKey[key]; ok {
		el.Value.(*lruEntry[V]).v = v
		l.order.MoveToFront(el)
		return
	}
	if l.order.Len() >= l.max {
		oldest := l.order.Back()
		l.order.Remove(oldest)
		delete(l.byKey, oldest.Value.(*lruEntry[V]).key)
	}
	l.byKey[key] = l.order.PushFront(&lruEntry[V]{key: key, v: v})
}

// remove drops key.
func (l *lru[V]) remove(key string) {
	if el, ok := l.byKey[key]; ok {
		l.order.Remove(el)
		delete(l.byKey, key)
	}
}

// clear drops everything.
func (l *lru[V]) clear() {
	l.order.Init()
	clear(l.byKey)
}

func (l *lru[V]) len() int { return l.order.Len() }
