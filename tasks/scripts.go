package tasks

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// scriptCall is one run of a Lua script, alone or in a pipeline.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
}

func call(script *redis.Script, keys []string, args ...any) *scriptCall {
	return &scriptCall{script: script, keys: keys, args: args}
}

// runScripts runs calls in one round trip and leaves each result in its
// cmd. Scripts are called by SHA; a call Redis answers with NOSCRIPT (it
// restarted or was flushed) runs again on its own, which loads the script.
// Only that call runs again: the others have had their effect.
func runScripts(ctx context.Context, rdb redis.Cmdable, calls ...*scriptCall) error {
	if len(calls) == 1 {
		c := calls[0]
		c.cmd = c.script.Run(ctx, rdb, c.keys, c.args...)
		return c.cmd.Err()
	}
	pipe := rdb.Pipeline()
	for _, c := range calls {
		c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx) // each call's error is in its cmd
	var errs []error
	for _, c := range calls {
		if redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
			c.cmd = c.script.Run(ctx, rdb, c.keys, c.args...)
		}
		if err := c.cmd.Err(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
