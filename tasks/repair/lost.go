package repair

import (
	"context"

	"github.com/hibiken/asynq"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/ledger"
)

// Finder finds the pending deliveries whose task Redis no longer holds,
// for the reconciler and for a fan-out run again. It asks in the only safe
// order: Redis first, then Postgres. A delivery's handler records it in
// Postgres before asynq drops its task, so a delivery missing from Redis
// and then still pending in Postgres has not been delivered since; one read
// pending first and then found missing may have succeeded in between, and
// enqueuing it again would send it twice.
type Finder struct {
	ledger *ledger.Store
	queue  *tasks.Queue
}

// NewFinder returns a Finder.
func NewFinder(l *ledger.Store, q *tasks.Queue) *Finder { return &Finder{ledger: l, queue: q} }

// Lost sorts the given pending deliveries (refs): lost are those whose task
// Redis holds in neither delivery queue and that are still pending;
// archived maps those whose task asynq archived to the task's last error.
//
// A fresh delivery has no task while its fan-out makes its first attempt.
// Given the event of each delivery (events; nil when the caller is that
// fan-out, run again), a delivery whose fan-out task Redis still holds
// unfinished is not lost: the fan-out records its attempt, or enqueues it,
// before it finishes. Redis is asked that after the delivery's own task
// and before Postgres, so a fan-out finishing in between has recorded
// what Postgres then says.
func (f *Finder) Lost(ctx context.Context, refs []tasks.TaskRef, events map[string]string) (lost []string, archived map[string]string, err error) {
	infos, err := f.queue.DeliveryTasks(ctx, refs)
	if err != nil {
		return nil, nil, err
	}
	archived = map[string]string{}
	var gone []string
	for i, info := range infos {
		switch {
		case info == nil:
			gone = append(gone, refs[i].DeliveryID)
		case info.State == asynq.TaskStateArchived:
			archived[refs[i].DeliveryID] = info.LastErr
		}
	}
	if events != nil {
		if gone, err = f.notFanningOut(ctx, gone, events); err != nil {
			return nil, nil, err
		}
	}
	if len(gone) == 0 {
		return nil, archived, nil
	}
	lost, err = f.ledger.StillPending(ctx, gone)
	if err != nil {
		return nil, nil, err
	}
	return lost, archived, nil
}

// notFanningOut returns those of ids (deliveries, with their events) whose
// event's fan-out task Redis holds no more, or holds completed.
func (f *Finder) notFanningOut(ctx context.Context, ids []string, events map[string]string) ([]string, error) {
	eventIDs := make([]string, len(ids))
	for i, id := range ids {
		eventIDs[i] = events[id]
	}
	states, err := f.queue.FanoutStates(ctx, eventIDs)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, id := range ids {
		if states[i] == "" || states[i] == "completed" {
			out = append(out, id)
		}
	}
	return out, nil
}
