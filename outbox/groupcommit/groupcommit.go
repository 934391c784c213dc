// Package groupcommit runs the writes of concurrent callers together: each
// caller hands its items to a Batcher and waits; one caller at a time
// flushes everything waiting in one statement, so that n concurrent writes
// cost one round trip and one commit instead of n.
//
// It suits Postgres writes whose commits queue behind one another (a WAL
// flush each, or a lock held until it): while one flush runs, the next
// batch gathers.
package groupcommit

import (
	"context"
	"sync"
	"time"
)

// FlushFunc writes items in one go, all or nothing.
type FlushFunc[T any] func(ctx context.Context, items []T) error

// Batcher gathers items of concurrent callers and flushes them together.
type Batcher[T any] struct {
	flush   FlushFunc[T]
	max     int
	timeout time.Duration

	mu      sync.Mutex
	waiting []*waiter[T]
	leading bool // a caller is flushing
}

type waiter[T any] struct {
	items []T
	done  chan error
}

// New returns a Batcher that flushes at most max items at once (a caller's
// items are never split) and gives each flush timeout.
func New[T any](max int, timeout time.Duration, flush FlushFunc[T]) *Batcher[T] {
	return &Batcher[T]{flush: flush, max: max, timeout: timeout}
}

// Do writes items with those of other callers and returns once they are
// written or failed. A failed batch is flushed again caller by caller, so
// that one caller's bad item fails only that caller. When ctx ends first,
// Do returns its error, and the items may still be written.
func (b *Batcher[T]) Do(ctx context.Context, items ...T) error {
	if len(items) == 0 {
		return nil
	}
	w := &waiter[T]{items: items, done: make(chan error, 1)}
	b.mu.Lock()
	b.waiting = append(b.waiting, w)
	if b.leading {
		b.mu.Unlock()
		select {
		case err := <-w.done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// This caller flushes batches until none wait, its own first.
	b.leading = true
	for {
		batch := b.take()
		b.mu.Unlock()
		if len(batch) == 0 {
			break
		}
		b.run(ctx, batch)
		b.mu.Lock()
	}
	return <-w.done
}

// take removes the next batch of waiters, or ends the lead when none
// wait; b.mu is held.
func (b *Batcher[T]) take() []*waiter[T] {
	if len(b.waiting) == 0 {
		b.leading = false
		return nil
	}
	n, items := 0, 0
	for n < len(b.waiting) && (n == 0 || items+len(b.waiting[n].items) <= b.max) {
		items += len(b.waiting[n].items)
		n++
	}
	batch := b.waiting[:n:n]
	b.waiting = b.waiting[n:]
	return batch
}

// run flushes a batch for all its callers, so it outlives the flushing
// caller's cancellation.
func (b *Batcher[T]) run(ctx context.Context, batch []*waiter[T]) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
	defer cancel()
	if len(batch) == 1 {
		batch[0].done <- b.flush(ctx, batch[0].items)
		return
	}
	var all []T
	for _, w := range batch {
		all = append(all, w.items...)
	}
	if err := b.flush(ctx, all); err == nil {
		for _, w := range batch {
			w.done <- nil
		}
		return
	}
	for _, w := range batch {
		w.done <- b.flush(ctx, w.items)
	}
}
