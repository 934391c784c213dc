package groupcommit_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookd/hookd/outbox/groupcommit"
)

// flusher records the batches it flushes; the first flush waits for
// release, so that the callers arriving meanwhile gather into the next.
type flusher struct {
	mu      sync.Mutex
	batches [][]int
	started chan struct{} // closed when the first flush begins
	release chan struct{}
	once    sync.Once
}

func newFlusher() *flusher {
	return &flusher{started: make(chan struct{}), release: make(chan struct{})}
}

func (f *flusher) flush(_ context.Context, items []int) error {
	f.once.Do(func() {
		close(f.started)
		<-f.release
	})
	f.mu.Lock()
	f.batches = append(f.batches, slices.Clone(items))
	f.mu.Unlock()
	if slices.Contains(items, -1) {
		return errors.New("bad item")
	}
	return nil
}

// start runs Do for each item list in its own goroutine, the first alone
// until it flushes, and returns the results by index once all are done.
func start(t *testing.T, b *groupcommit.Batcher[int], f *flusher, ctxs []context.Context, items ...[]int) []error {
	t.Helper()
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = b.Do(ctxs[0], items[0]...) })
	// Wait until the first caller is flushing, then queue the others.
	select {
	case <-f.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the first caller did not flush")
	}
	for i := 1; i < len(items); i++ {
		wg.Go(func() { errs[i] = b.Do(ctxs[i], items[i]...) })
	}
	time.Sleep(200 * time.Millisecond) // let them queue behind the flush
	close(f.release)
	wg.Wait()
	return errs
}

func contexts(n int) []context.Context {
	ctxs := make([]context.Context, n)
	for i := range ctxs {
		ctxs[i] = context.Background()
	}
	return ctxs
}

func TestCallersArrivingDuringAFlushShareTheNext(t *testing.T) {
	f := newFlusher()
	b := groupcommit.New(100, time.Second, f.flush)
	errs := start(t, b, f, contexts(4), []int{1}, []int{2, 3}, []int{4}, []int{5})
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	// The three later callers queued during the first flush: they share
	// the next (on a loaded machine one may come late, into a third).
	if len(f.batches) > 3 || !slices.Equal(f.batches[0], []int{1}) || len(f.batches[1]) < 3 {
		t.Fatalf("batches = %v, want [1] then the other four items together", f.batches)
	}
}

func TestBatchesStopAtMaxWithoutSplittingACaller(t *testing.T) {
	f := newFlusher()
	b := groupcommit.New(3, time.Second, f.flush)
	start(t, b, f, contexts(4), []int{1}, []int{2, 3}, []int{4, 5}, []int{6})
	for _, batch := range f.batches {
		if len(batch) > 3 {
			t.Errorf("batch %v exceeds 3 items", batch)
		}
	}
	var all []int
	for _, batch := range f.batches {
		all = append(all, batch...)
	}
	slices.Sort(all)
	if !slices.Equal(all, []int{1, 2, 3, 4, 5, 6}) {
		t.Errorf("flushed %v, want each item once", all)
	}
}

func TestAFailedBatchFailsOnlyTheBadCaller(t *testing.T) {
	f := newFlusher()
	b := groupcommit.New(100, time.Second, f.flush)
	errs := start(t, b, f, contexts(4), []int{1}, []int{2}, []int{-1}, []int{3})
	if errs[0] != nil || errs[1] != nil || errs[3] != nil {
		t.Errorf("good callers failed: %v", errs)
	}
	if errs[2] == nil {
		t.Error("the bad caller succeeded")
	}
}

func TestTheFlushingCallersCancellationSparesTheOthers(t *testing.T) {
	f := newFlusher()
	b := groupcommit.New(100, time.Second, func(ctx context.Context, items []int) error {
		if err := f.flush(ctx, items); err != nil {
			return err
		}
		return ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	ctxs := contexts(3)
	ctxs[0] = ctx
	cancel() // the first caller flushes with a context already cancelled
	errs := start(t, b, f, ctxs, []int{1}, []int{2}, []int{3})
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
}
