// Command hookd runs the hookd webhook service. See "hookd help".
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/app/redisconn"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	redisconn.SetLogger(log)
	err := app.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, log)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hookd:", err)
		os.Exit(1)
	}
}
