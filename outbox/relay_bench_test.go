package outbox_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/outbox/outboxtest"
)

type discardPublisher struct{}

func (discardPublisher) Publish(context.Context, []outbox.Message) error { return nil }

// BenchmarkRelayBatch measures claiming and marking a batch of 100 events
// against the real database (the publisher does nothing).
func BenchmarkRelayBatch(b *testing.B) {
	db := outboxtest.DB(b)
	relay := outbox.NewRelay(db, discardPublisher{}, slog.New(slog.DiscardHandler), outbox.RelayConfig{BatchSize: 100})
	b.ReportMetric(100, "events/op")
	for b.Loop() {
		b.StopTimer()
		outboxtest.Seed(b, db, "app_1", "bench.event", 100)
		b.StartTimer()
		if n, err := relay.RelayBatch(b.Context()); err != nil || n != 100 {
			b.Fatalf("RelayBatch = %d, %v", n, err)
		}
	}
}
