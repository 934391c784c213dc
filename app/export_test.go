package app

import (
	"context"
	"io"
	"log/slog"

	"github.com/hookd/hookd/tasks"
)

// DLQ runs "hookd dlq" as Main does, with queue's names in place of the
// default ones: tests use queues of their own, which no setting names.
func DLQ(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger, queue tasks.QueueConfig) error {
	c, err := parseDLQ(args, getenv, stdout)
	if err != nil {
		return err
	}
	c.cfg.Queue = queue
	return c.run(ctx, stdout, log)
}
