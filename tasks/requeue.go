package tasks

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"
)

// requeuer finds the pending deliveries whose task Redis no longer holds,
// for the reconciler and for a fan-out run again. It asks in the only safe
// order: Redis first, then Postgres. A delivery's handler records it in
// Postgres before asynq drops its task, so a delivery missing from Redis
// and then still pending in Postgres has not been delivered since; one read
// pending first and then found missing may have succeeded in between, and
// enqueuing it again would send it twice.
type requeuer struct {
	db        *bun.DB
	queue     *Queue
	inspector *asynq.Inspector
}

// missing sorts the given pending deliveries: lost are those whose task
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
func (q requeuer) missing(ctx context.Context, ids []string, events map[string]string) (lost []string, archived map[string]string, err error) {
	tasks, err := q.tasks(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	archived = map[string]string{}
	var gone []string
	for i, task := range tasks {
		switch {
		case task == nil:
			gone = append(gone, ids[i])
		case task.State == asynq.TaskStateArchived:
			archived[ids[i]] = task.LastErr
		}
	}
	if events != nil {
		if gone, err = q.notFanningOut(ctx, gone, events); err != nil {
			return nil, nil, err
		}
	}
	if len(gone) == 0 {
		return nil, archived, nil
	}
	err = q.db.NewSelect().Model((*Delivery)(nil)).Column("id").
		Where("id IN (?) AND status = ?", bun.In(gone), StatusPending).Scan(ctx, &lost)
	if err != nil {
		return nil, nil, fmt.Errorf("recheck pending deliveries: %w", err)
	}
	return lost, archived, nil
}

// tasks returns the delivery task of each of ids, in the same order, nil
// where Redis does not hold it. Redis is asked a few times per delivery
// (asynq has no batch lookup), so the lookups run enqueueParallelism at
// once: a bulk retry of thousands waits on round trips, not on Redis.
func (q requeuer) tasks(ctx context.Context, ids []string) ([]*asynq.TaskInfo, error) {
	infos := make([]*asynq.TaskInfo, len(ids))
	err := inParallel(ctx, len(ids), func(_ context.Context, i int) error {
		var err error
		infos[i], err = q.task(ids[i])
		return err
	})
	if err != nil {
		return nil, err
	}
	return infos, nil
}

// task returns the delivery task id in either delivery queue, whatever its
// state, or nil when Redis does not hold it.
func (q requeuer) task(id string) (*asynq.TaskInfo, error) {
	for _, queue := range []string{q.queue.cfg.Deliveries, q.queue.cfg.Overflow} {
		info, err := q.inspector.GetTaskInfo(queue, id)
		switch {
		case err == nil:
			return info, nil
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		default:
			return nil, fmt.Errorf("look up task %s: %w", id, err)
		}
	}
	return nil, nil
}

// notFanningOut returns those of ids (deliveries, with their events) whose
// event's fan-out task Redis holds no more, or holds completed.
func (q requeuer) notFanningOut(ctx context.Context, ids []string, events map[string]string) ([]string, error) {
	eventIDs := make([]string, len(ids))
	for i, id := range ids {
		eventIDs[i] = events[id]
	}
	states, err := q.queue.fanoutStates(ctx, eventIDs)
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
