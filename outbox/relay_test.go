package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/outbox/outboxtest"
)

// recordingPublisher records every published ID, or fails while err is set.
type recordingPublisher struct {
	mu  sync.Mutex
	ids []string
	err error
}

func (p *recordingPublisher) Publish(_ context.Context, batch []outbox.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	for _, m := range batch {
		p.ids = append(p.ids, m.ID)
	}
	return nil
}

func (p *recordingPublisher) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

func (p *recordingPublisher) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ids)
}

func unpublished(t *testing.T, db *bun.DB) int64 {
	t.Helper()
	n, err := db.NewSelect().Model((*outbox.Message)(nil)).Where("published_at IS NULL").Count(t.Context())
	if err != nil {
		t.Fatalf("count unpublished: %v", err)
	}
	return n
}

func TestRelay(t *testing.T) {
	t.Parallel()

	type testBundle struct {
		db  *bun.DB
		pub *recordingPublisher
	}

	setup := func(t *testing.T, cfg outbox.RelayConfig) (*outbox.Relay, *testBundle) {
		t.Helper()
		b := &testBundle{db: outboxtest.DB(t), pub: &recordingPublisher{}}
		log := slog.New(slog.NewTextHandler(t.Output(), nil))
		return outbox.NewRelay(b.db, b.pub, log, cfg), b
	}

	t.Run("PublishesInCommitOrder", func(t *testing.T) {
		t.Parallel()
		relay, b := setup(t, outbox.RelayConfig{BatchSize: 4})
		want := outboxtest.Seed(t, b.db, "app_1", "link.clicked", 10)

		for {
			n, err := relay.RelayBatch(t.Context())
			if err != nil {
				t.Fatalf("RelayBatch: %v", err)
			}
			if n == 0 {
				break
			}
		}
		if diff := cmp.Diff(want, b.pub.published()); diff != "" {
			t.Errorf("published IDs (-want +got):\n%s", diff)
		}
		if n := unpublished(t, b.db); n != 0 {
			t.Errorf("%d events left unpublished", n)
		}
	})

	t.Run("PublisherErrorLeavesBatchForNextPass", func(t *testing.T) {
		t.Parallel()
		relay, b := setup(t, outbox.RelayConfig{})
		want := outboxtest.Seed(t, b.db, "app_1", "link.clicked", 3)

		b.pub.err = errors.New("redis down")
		if _, err := relay.RelayBatch(t.Context()); !errors.Is(err, b.pub.err) {
			t.Fatalf("RelayBatch error = %v, want %v", err, b.pub.err)
		}
		if n := unpublished(t, b.db); n != 3 {
			t.Fatalf("after a failed publish %d events are unpublished, want 3", n)
		}

		b.pub.err = nil
		if n, err := relay.RelayBatch(t.Context()); err != nil || n != 3 {
			t.Fatalf("RelayBatch = %d, %v; want 3, nil", n, err)
		}
		if diff := cmp.Diff(want, b.pub.published()); diff != "" {
			t.Errorf("published IDs (-want +got):\n%s", diff)
		}
	})

	t.Run("RolledBackEventIsNeverPublished", func(t *testing.T) {
		t.Parallel()
		relay, b := setup(t, outbox.RelayConfig{})
		rollback := errors.New("rollback")
		err := b.db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
			if err := outbox.Publish(ctx, tx, &outbox.Message{Tenant: "app_1", Topic: "t", Payload: []byte(`{}`)}); err != nil {
				return err
			}
			return rollback
		})
		if !errors.Is(err, rollback) {
			t.Fatalf("RunInTx = %v", err)
		}
		if n, err := relay.RelayBatch(t.Context()); err != nil || n != 0 {
			t.Fatalf("RelayBatch = %d, %v; want 0, nil", n, err)
		}
	})

	t.Run("TwoRelaysPublishEveryEventExactlyOnce", func(t *testing.T) {
		t.Parallel()
		relay1, b := setup(t, outbox.RelayConfig{BatchSize: 50})
		relay2 := outbox.NewRelay(b.db, b.pub, slog.New(slog.DiscardHandler), outbox.RelayConfig{BatchSize: 50})
		const total = 3000
		want := outboxtest.Seed(t, b.db, "app_1", "link.clicked", total)

		var wg sync.WaitGroup
		for _, r := range []*outbox.Relay{relay1, relay2} {
			wg.Go(func() {
				for {
					n, err := r.RelayBatch(t.Context())
					if err != nil {
						t.Errorf("RelayBatch: %v", err)
						return
					}
					if n == 0 {
						return
					}
				}
			})
		}
		wg.Wait()

		got := b.pub.published()
		seen := make(map[string]int, len(got))
		for _, id := range got {
			seen[id]++
		}
		for _, id := range want {
			if seen[id] != 1 {
				t.Errorf("event %s published %d times, want 1", id, seen[id])
			}
		}
		if len(got) != total {
			t.Errorf("published %d events, want %d", len(got), total)
		}
	})

	t.Run("RunBacksOffAndRecovers", func(t *testing.T) {
		t.Parallel()
		relay, b := setup(t, outbox.RelayConfig{ErrorBackoff: 5 * time.Millisecond, MaxErrorBackoff: 20 * time.Millisecond})
		b.pub.setErr(errors.New("redis down"))
		want := outboxtest.Seed(t, b.db, "app_1", "link.clicked", 3)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- relay.Run(ctx) }()

		time.Sleep(200 * time.Millisecond) // several failed passes
		b.pub.setErr(nil)
		deadline := time.Now().Add(10 * time.Second)
		for len(b.pub.published()) < len(want) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if diff := cmp.Diff(want, b.pub.published()); diff != "" {
			t.Errorf("published IDs after recovery (-want +got):\n%s", diff)
		}
	})

	t.Run("RunWakesOnNotify", func(t *testing.T) {
		t.Parallel()
		// Polling is off in practice: only LISTEN/NOTIFY can wake the relay.
		relay, b := setup(t, outbox.RelayConfig{PollInterval: time.Hour})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- relay.Run(ctx) }()

		// The listener subscribes in the background: an event committed
		// before it does is only found by polling, which is off. So commit
		// one event at a time until a notification picks one up.
		var seeded []string
		for try := 0; try < 5 && len(b.pub.published()) == 0; try++ {
			seeded = append(seeded, outboxtest.Seed(t, b.db, "app_1", "link.clicked", 1)...)
			deadline := time.Now().Add(2 * time.Second)
			for len(b.pub.published()) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		// Woken once, the relay publishes everything pending, in order.
		if diff := cmp.Diff(seeded, b.pub.published()); diff != "" {
			t.Errorf("published IDs (-want +got):\n%s", diff)
		}
	})
}

func TestPublishRejectsInvalidMessages(t *testing.T) {
	t.Parallel()
	db := outboxtest.DB(t)
	for name, m := range map[string]*outbox.Message{
		"NoTenant":     {Topic: "t", Payload: []byte(`{}`)},
		"NoTopic":      {Tenant: "app_1", Payload: []byte(`{}`)},
		"BadJSON":      {Tenant: "app_1", Topic: "t", Payload: []byte(`{`)},
		"EmptyPayload": {Tenant: "app_1", Topic: "t"},
	} {
		err := db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
			return outbox.Publish(ctx, tx, m)
		})
		if !errors.Is(err, outbox.ErrInvalidMessage) {
			t.Errorf("%s: Publish = %v, want ErrInvalidMessage", name, err)
		}
	}
}
