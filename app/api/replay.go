package api

import (
	"context"
	"errors"
	"time"

	"github.com/hookd/hookd/tasks/ledger"
)

// ReplaySteering are the fields that steer a bulk retry or a recovery.
// (Exported, as are the other embedded structs, so that huma can set its
// fields.)
type ReplaySteering struct {
	DryRun bool `json:"dry_run,omitempty" doc:"Count what would be sent, in the job's count, and send nothing."`
	Rate   int  `json:"rate,omitempty" minimum:"1" maximum:"10000" doc:"Send at most this many deliveries a second (1 to 10,000), so that a receiver that has just come back is not flooded; left out for no pace."`
}

func (r ReplaySteering) replay() ledger.Replay {
	return ledger.Replay{DryRun: r.DryRun, Rate: r.Rate}
}

// dryRunWait is how long a request waits for its dry run to count: a
// longer count goes on in the background, and the job answered is running.
const dryRunWait = 5 * time.Second

// countNow runs a dry run in the request, for up to wait (dryRunWait);
// should it take longer, it hands the rest to a worker through cont, and
// the job is answered running. A run that stops short otherwise (the
// request gone, an error) is handed on too, so that no job is left
// running without a task, and its error returned. A dry run sends
// nothing, so a batch counted in the request and again by the worker
// costs time only.
func countNow(ctx context.Context, wait time.Duration, run, cont func(ctx context.Context) error) error {
	runCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err := run(runCtx)
	if err == nil {
		return nil
	}
	contErr := cont(context.WithoutCancel(ctx))
	if ctx.Err() == nil && errors.Is(runCtx.Err(), context.DeadlineExceeded) {
		return contErr
	}
	return errors.Join(err, contErr)
}
