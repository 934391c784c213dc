package outbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/outbox/outboxtest"
)

// publishAll publishes n events from 32 goroutines with publish and
// returns how long it took.
func publishAll(b *testing.B, n int, publish func(context.Context, *outbox.Message) error) time.Duration {
	var wg sync.WaitGroup
	work := make(chan int, n)
	for i := range n {
		work <- i
	}
	close(work)
	start := time.Now()
	for range 32 {
		wg.Go(func() {
			for range work {
				msg := &outbox.Message{Tenant: "app_1", Topic: "bench.event", Payload: []byte(`{"n":1}`)}
				if err := publish(b.Context(), msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkGroupCommit publishes 256 standalone events from 32 goroutines
// through a Batcher, and reports its speed-up over one transaction per
// event (outbox.Publish), measured in the same run: the notification
// trigger serializes outbox commits, so batching them is what scales.
func BenchmarkGroupCommit(b *testing.B) {
	const n = 256
	db := outboxtest.DB(b)
	each := publishAll(b, n, func(ctx context.Context, msg *outbox.Message) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error { return outbox.Publish(ctx, tx, msg) })
	})
	batcher := outbox.NewBatcher(db, 0)
	var grouped time.Duration
	for b.Loop() {
		grouped += publishAll(b, n, func(ctx context.Context, msg *outbox.Message) error { return batcher.Publish(ctx, msg) })
	}
	b.ReportMetric(n, "events/op")
	b.ReportMetric(float64(each)/(float64(grouped)/float64(b.N)), "x-transaction-each")
}
