package tasks

import (
	"context"
	"errors"
	"time"
)

// DryRunWait is how long a request waits for its dry run to count: a
// longer count goes on in the background, and the job answered is running.
const DryRunWait = 5 * time.Second

// CountNow runs a dry run in the request, for up to wait (DryRunWait);
// should it take longer, it hands the rest to a worker through cont, and
// the job is answered running. A run that stops short otherwise (the
// request gone, an error) is handed on too, so that no job is left
// running without a task, and its error returned. A dry run sends
// nothing, so a batch counted in the request and again by the worker
// costs time only.
func CountNow(ctx context.Context, wait time.Duration, run, cont func(ctx context.Context) error) error {
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
