package delivery

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

// put sets the value of key and returns the value it replaced or, when the
// cache was full, the least recently used one it dropped (dropped: true).
func (l *lru[V]) put(key string, v V) (old V, dropped bool) {
	if el, ok := l.byKey[key]; ok {
		e := el.Value.(*lruEntry[V])
		old, e.v = e.v, v
		l.order.MoveToFront(el)
		return old, true
	}
	if l.order.Len() >= l.max {
		oldest := l.order.Back()
		l.order.Remove(oldest)
		e := oldest.Value.(*lruEntry[V])
		delete(l.byKey, e.key)
		old, dropped = e.v, true
	}
	l.byKey[key] = l.order.PushFront(&lruEntry[V]{key: key, v: v})
	return old, dropped
}

func (l *lru[V]) len() int { return l.order.Len() }
