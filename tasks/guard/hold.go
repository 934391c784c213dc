package guard

import (
	"context"
	"sync"
	"time"
)

// A slot lasts a SlotLease past its last renewal. The process that Enter
// admitted renews the delivery's two slots (its endpoint's and its app's)
// every third of a lease until Leave, or until SlotTTL has passed should
// Leave never come. So a delivery whose POST hangs keeps its slots while
// its process lives, and a process that dies (SIGKILL, OOM, a lost node)
// loses its slots one lease after its last renewal, instead of holding its
// app's share of the workers for a whole SlotTTL.

// holder names an admitted ticket: its slots' member and keys.
type holder struct{ app, endpoint, delivery string }

func holderOf(t Ticket) holder { return holder{t.AppID, t.EndpointID, t.DeliveryID} }

// hold renews one admitted ticket's slots. mu is held while a renewal
// runs, so that stopping it waits for one under way.
type hold struct {
	mu      sync.Mutex
	stopped bool
	timer   *time.Timer
}

// renewEvery is how often a held slot is renewed: a renewal may fail, or
// come late on a loaded machine, once without the slot lapsing.
func (g *Gate) renewEvery() time.Duration { return g.cfg.SlotLease / 3 }

// hold starts renewing t's slots, which Enter has just taken. A ticket
// already held keeps its renewal.
func (g *Gate) hold(ctx context.Context, t Ticket) {
	ctx = context.WithoutCancel(ctx) // renewals outlast the call that admitted t
	until := time.Now().Add(g.cfg.SlotTTL)
	h := &hold{}
	h.mu.Lock()
	h.timer = time.AfterFunc(g.renewEvery(), func() { g.renewHold(ctx, t, h, until) })
	h.mu.Unlock()
	g.mu.Lock()
	_, held := g.holds[holderOf(t)]
	if !held {
		g.holds[holderOf(t)] = h
	}
	g.mu.Unlock()
	if held {
		h.stop()
	}
}

// renewHold extends t's slots by a lease and schedules the next renewal,
// unless h was stopped or until has passed. A failed renewal is retried at
// the next; the slots lapse if none succeeds for a lease.
func (g *Gate) renewHold(ctx context.Context, t Ticket, h *hold, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	// The next renewal is due a third of a lease after this one began,
	// however long this one takes.
	every := g.renewEvery()
	next := time.Now().Add(every)
	ctx, cancel := context.WithDeadline(ctx, next)
	p := prefix(t.AppID)
	_ = g.renew.Run(ctx, g.rdb, []string{p + "slots:" + t.EndpointID, p + "slots"}, t.DeliveryID, g.cfg.SlotLease.Milliseconds()).Err()
	cancel()
	if next.Before(until) {
		h.timer.Reset(time.Until(next))
		return
	}
	// Leave never came: the slots lapse a lease from now.
	h.stopped = true
	g.mu.Lock()
	if g.holds[holderOf(t)] == h {
		delete(g.holds, holderOf(t))
	}
	g.mu.Unlock()
}

// unhold stops renewing t's slots and waits for a renewal under way. A
// ticket this process does not hold (a waiter given up with Forgo) has
// nothing to stop.
func (g *Gate) unhold(t Ticket) {
	g.mu.Lock()
	h := g.holds[holderOf(t)]
	delete(g.holds, holderOf(t))
	g.mu.Unlock()
	if h != nil {
		h.stop()
	}
}

// stop ends h's renewals, waiting for one under way.
func (h *hold) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	h.timer.Stop()
}
