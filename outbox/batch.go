package outbox

import (
	"context"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox/groupcommit"
)

// Batcher publishes standalone events, those that are the whole change
// (there is no other data to commit with them), with group commit: events
// published at the same time share one INSERT, hence one commit.
//
// Outbox commits are serialized by Postgres: the notification trigger's
// NOTIFY takes a database-wide lock at commit and holds it until the
// commit record is flushed to disk. One commit per event would cap
// publishing at one event per WAL flush, whatever the number of clients.
type Batcher struct {
	b *groupcommit.Batcher[*Message]
}

// NewBatcher returns a Batcher inserting into db's outbox, at most
// maxBatch events per statement (default 500).
func NewBatcher(db bun.IDB, maxBatch int) *Batcher {
	if maxBatch <= 0 {
		maxBatch = 500
	}
	return &Batcher{groupcommit.New(maxBatch, 30*time.Second, func(ctx context.Context, msgs []*Message) error {
		return insert(ctx, db, msgs)
	})}
}

// Publish writes msgs to the outbox, with those of concurrent callers, and
// returns once they are committed (with their IDs and CreatedAt set) or
// failed. When ctx ends first, it returns ctx's error, and msgs may still
// be committed.
func (b *Batcher) Publish(ctx context.Context, msgs ...*Message) error {
	if err := check(msgs); err != nil {
		return err
	}
	return b.b.Do(ctx, msgs...)
}
