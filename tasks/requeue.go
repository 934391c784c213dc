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
// Redis is asked once per delivery: meant for the few a repair looks at.
func (q requeuer) missing(ctx context.Context, ids []string) (lost []string, archived map[string]string, err error) {
	archived = map[string]string{}
	var gone []string
	for _, id := range ids {
		task, err := q.task(id)
		switch {
		case err != nil:
			return nil, nil, err
		case task == nil:
			gone = append(gone, id)
		case task.State == asynq.TaskStateArchived:
			archived[id] = task.LastErr
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
