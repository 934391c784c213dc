package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"

	"github.com/hookd/hookd/app/events"
	"github.com/hookd/hookd/app/registry"
	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/deadletter"
	"github.com/hookd/hookd/tasks/ledger"
	"github.com/hookd/hookd/tasks/recovery"
)

// dlq runs "hookd dlq list|retry|recover": dead letters, and the recovery
// of an endpoint's missed events, from the command line.
func dlq(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	c, err := parseDLQ(args, getenv, stdout)
	if err != nil {
		return err
	}
	return c.run(ctx, stdout, log)
}

// dlqCommand is a parsed "hookd dlq" command line.
type dlqCommand struct {
	sub    string // list, retry or recover
	cfg    Config // as serve reads it: retry enqueues as serve does
	filter ledger.DeadLetterFilter
	limit  int
	all    bool
	ids    []string
	// replay steers retry --all and recover.
	replay ledger.Replay
}

// parseDLQ reads a "hookd dlq" command line: its filters, and every setting
// of "hookd serve" from the environment and flags, since a retried dead
// letter's task must be enqueued as serve enqueues it (queue, retries,
// timeout).
func parseDLQ(args []string, getenv func(string) string, stdout io.Writer) (dlqCommand, error) {
	if len(args) == 0 {
		return dlqCommand{}, errors.New("dlq: want list, retry or recover")
	}
	c := dlqCommand{sub: args[0]}
	args = args[1:]
	if c.sub != "list" && c.sub != "retry" && c.sub != "recover" {
		return dlqCommand{}, fmt.Errorf("dlq: unknown command %q (want list, retry or recover)", c.sub)
	}
	fs := flag.NewFlagSet("hookd dlq "+c.sub, flag.ContinueOnError)
	fs.SetOutput(stdout)
	var since, until *string
	if c.sub == "recover" {
		fs.StringVar(&c.filter.AppID, "app", "", "the endpoint's application: its ID or uid (required)")
		fs.StringVar(&c.filter.EndpointID, "endpoint", "", "the endpoint to recover (required)")
		since = fs.String("since", "", "recover the events committed at or after this RFC 3339 time (required)")
		until = fs.String("until", "", "recover the events committed before this RFC 3339 time (default: now)")
	} else {
		fs.StringVar(&c.filter.AppID, "app", "", "only this application's dead letters")
		fs.StringVar(&c.filter.EndpointID, "endpoint", "", "only dead letters to this endpoint")
		fs.StringVar(&c.filter.EventType, "event-type", "", "only dead letters of this event type")
		since = fs.String("since", "", "only deliveries that failed at or after this RFC 3339 time")
		until = fs.String("until", "", "only deliveries that failed before this RFC 3339 time")
		fs.IntVar(&c.limit, "limit", 100, "list: at most this many")
		fs.BoolVar(&c.all, "all", false, "retry: every dead letter the filters select")
	}
	if c.sub != "list" {
		fs.BoolVar(&c.replay.DryRun, "dry-run", false, "count what would be sent, and send nothing")
		fs.IntVar(&c.replay.Rate, "rate", 0, fmt.Sprintf("send at most this many deliveries a second (1 to %d; 0: no pace)", tasks.MaxReplayRate))
	}
	cfg, rest, err := parseConfig(fs, args, getenv)
	if err != nil {
		return dlqCommand{}, err
	}
	c.cfg, c.ids = cfg, rest
	for _, t := range []struct {
		flag, s string
		dst     *time.Time
	}{{"since", *since, &c.filter.Since}, {"until", *until, &c.filter.Until}} {
		if t.s == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.s)
		if err != nil {
			return dlqCommand{}, fmt.Errorf("dlq: --%s: %q is not an RFC 3339 time", t.flag, t.s)
		}
		// As the API refuses it: Postgres cannot compare a time outside
		// its years.
		if err := resource.FilterTime("--"+t.flag, v); err != nil {
			return dlqCommand{}, fmt.Errorf("dlq: %w", err)
		}
		*t.dst = v
	}
	for flag, v := range map[string]string{"app": c.filter.AppID, "endpoint": c.filter.EndpointID, "event-type": c.filter.EventType} {
		if err := resource.FilterText("--"+flag, v); err != nil {
			return dlqCommand{}, fmt.Errorf("dlq: %w", err)
		}
	}
	switch {
	case c.replay.Rate < 0 || c.replay.Rate > tasks.MaxReplayRate:
		return dlqCommand{}, fmt.Errorf("dlq %s: --rate must be 1 to %d (0: no pace)", c.sub, tasks.MaxReplayRate)
	case c.sub == "recover" && (c.filter.AppID == "" || c.filter.EndpointID == "" || c.filter.Since.IsZero()):
		return dlqCommand{}, errors.New("dlq recover: want --app, --endpoint and --since")
	case c.sub == "recover" && !c.filter.Until.IsZero() && !c.filter.Until.After(c.filter.Since):
		return dlqCommand{}, errors.New("dlq recover: --until must be later than --since")
	case c.sub == "recover" && len(c.ids) > 0:
		return dlqCommand{}, errors.New("dlq recover: takes no arguments, only flags")
	case c.sub == "retry" && !c.all && c.replay != (ledger.Replay{}):
		return dlqCommand{}, errors.New("dlq retry: --dry-run and --rate go with --all")
	case c.sub == "list" && len(c.ids) > 0:
		return dlqCommand{}, errors.New("dlq list: takes no arguments, only filters")
	case c.sub == "retry" && c.all == (len(c.ids) > 0):
		return dlqCommand{}, errors.New("dlq retry: want delivery IDs, or --all with filters")
	case c.sub == "retry" && !c.all && c.filter != (ledger.DeadLetterFilter{}):
		return dlqCommand{}, errors.New("dlq retry: filters go with --all")
	}
	return c, nil
}

// run lists or retries the dead letters.
func (c dlqCommand) run(ctx context.Context, stdout io.Writer, log *slog.Logger) error {
	db, err := openMigrated(ctx, c.cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer db.Close()
	if c.sub == "list" {
		page, err := events.NewStore(db).DeadLetters(ctx, c.filter, resource.PageQuery{Limit: c.limit})
		if err != nil {
			return fmt.Errorf("dlq list: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DELIVERY\tAPP\tENDPOINT\tEVENT\tTYPE\tFAILED\tATTEMPTS\tLAST ERROR")
		for _, d := range page.Items {
			lastErr := ""
			if d.LastError != nil {
				lastErr = *d.LastError
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.DeliveryID, d.AppID, d.EndpointID, d.EventID, d.EventType,
				d.FailedAt.Format(time.RFC3339), d.AttemptCount, lastErr)
		}
		return tw.Flush()
	}

	rdb, err := c.cfg.Redis.Open(ctx, 0)
	if err != nil {
		return err
	}
	defer rdb.Close()
	// The queue serve builds: its tasks get the configured queue names,
	// retry count and task timeout, as the workers serving them expect.
	queue, _ := newQueue(rdb, c.cfg)
	dl := deadletter.New(ledger.New(db), queue, deadletter.NewMetrics(prometheus.NewRegistry()))
	if c.sub == "recover" {
		return c.recover(ctx, db, ledger.New(db), queue, dl, stdout)
	}
	if !c.all {
		retried, err := dl.Retry(ctx, c.ids)
		if err != nil {
			return fmt.Errorf("dlq retry: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "retried %d of %d\n", len(retried), len(c.ids))
		return err
	}
	job, err := dl.CreateBulk(ctx, c.filter, c.replay)
	if err != nil {
		return fmt.Errorf("dlq retry: %w", err)
	}
	// Run it here rather than wait for a worker; should it stop short
	// (interrupted), a worker finishes it.
	if err := dl.Run(ctx, &job); err != nil {
		return errors.Join(fmt.Errorf("dlq retry: %w", err), dl.Continue(context.WithoutCancel(ctx), job))
	}
	if c.replay.DryRun {
		_, err = fmt.Fprintf(stdout, "would retry %d dead letters (dry run %s)\n", job.Retried, job.ID)
		return err
	}
	_, err = fmt.Fprintf(stdout, "retried %d dead letters (%s)\n", job.Retried, job.ID)
	return err
}

// recover sends the endpoint the events it missed, or counts them.
func (c dlqCommand) recover(ctx context.Context, db *bun.DB, store *ledger.Store, queue *tasks.Queue, dl *deadletter.DeadLetters, stdout io.Writer) error {
	reg := registry.New(db, registry.Config{})
	appID, err := reg.ResolveApp(ctx, c.filter.AppID)
	if err != nil {
		return fmt.Errorf("dlq recover: %w", err)
	}
	ep, err := reg.Endpoint(ctx, appID, c.filter.EndpointID)
	if err != nil {
		return fmt.Errorf("dlq recover: %w", err)
	}
	if ep.Disabled && !c.replay.DryRun {
		return fmt.Errorf("dlq recover: endpoint %s is disabled: enable it, then recover it", ep.ID)
	}
	rs := recovery.New(store, queue, dl, reg.RecoveryTarget)
	job, err := rs.Create(ctx, appID, ep.ID, c.filter.Since, c.filter.Until, c.replay)
	if err != nil {
		return fmt.Errorf("dlq recover: %w", err)
	}
	if err := rs.Run(ctx, &job); err != nil {
		return errors.Join(fmt.Errorf("dlq recover: %w", err), rs.Continue(context.WithoutCancel(ctx), job))
	}
	if c.replay.DryRun {
		_, err = fmt.Fprintf(stdout, "would recover %d events (dry run %s)\n", job.Recovered, job.ID)
		return err
	}
	_, err = fmt.Fprintf(stdout, "recovered %d events (%s)\n", job.Recovered, job.ID)
	return err
}
