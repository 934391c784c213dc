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

	"github.com/hookd/hookd/app/events"
	"github.com/hookd/hookd/app/redisconn"
	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/deadletter"
	"github.com/hookd/hookd/tasks/guard"
	"github.com/hookd/hookd/tasks/ledger"
)

// dlq runs "hookd dlq list|retry": dead letters from the command line.
func dlq(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	if len(args) == 0 {
		return errors.New("dlq: want list or retry")
	}
	sub, args := args[0], args[1:]
	if sub != "list" && sub != "retry" {
		return fmt.Errorf("dlq: unknown command %q (want list or retry)", sub)
	}
	fs := flag.NewFlagSet("hookd dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stdout)
	dbURL := fs.String("database-url", envOr(getenv, "HOOKD_DATABASE_URL"), "Postgres URL (HOOKD_DATABASE_URL)")
	redisURL := fs.String("redis-url", envOr(getenv, "HOOKD_REDIS_URL"), "Redis URL (HOOKD_REDIS_URL)")
	var f ledger.DeadLetterFilter
	fs.StringVar(&f.AppID, "app", "", "only this application's dead letters")
	fs.StringVar(&f.EndpointID, "endpoint", "", "only dead letters to this endpoint")
	fs.StringVar(&f.EventType, "event-type", "", "only dead letters of this event type")
	since := fs.String("since", "", "only deliveries that failed at or after this RFC 3339 time")
	until := fs.String("until", "", "only deliveries that failed before this RFC 3339 time")
	limit := fs.Int("limit", 100, "list: at most this many")
	all := fs.Bool("all", false, "retry: every dead letter the filters select")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, t := range []struct {
		s   string
		dst *time.Time
	}{{*since, &f.Since}, {*until, &f.Until}} {
		if t.s == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.s)
		if err != nil {
			return fmt.Errorf("dlq: %q is not an RFC 3339 time", t.s)
		}
		*t.dst = v
	}
	switch {
	case sub == "list" && fs.NArg() > 0:
		return errors.New("dlq list: takes no arguments, only filters")
	case sub == "retry" && *all == (fs.NArg() > 0):
		return errors.New("dlq retry: want delivery IDs, or --all with filters")
	case sub == "retry" && !*all && f != (ledger.DeadLetterFilter{}):
		return errors.New("dlq retry: filters go with --all")
	}

	db, err := openMigrated(ctx, *dbURL, log)
	if err != nil {
		return err
	}
	defer db.Close()
	if sub == "list" {
		page, err := events.NewStore(db).DeadLetters(ctx, f, resource.PageQuery{Limit: *limit})
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

	rdb, err := redisconn.Config{URL: *redisURL}.Open(ctx, 0)
	if err != nil {
		return err
	}
	defer rdb.Close()
	queue := tasks.NewQueue(rdb, guard.New(rdb, guard.Config{}), tasks.QueueConfig{})
	dl := deadletter.New(ledger.New(db), queue, deadletter.NewMetrics(prometheus.NewRegistry()))
	if !*all {
		retried, err := dl.Retry(ctx, fs.Args())
		if err != nil {
			return fmt.Errorf("dlq retry: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "retried %d of %d\n", len(retried), fs.NArg())
		return err
	}
	job, err := dl.StartBulk(ctx, f)
	if err != nil {
		return fmt.Errorf("dlq retry: %w", err)
	}
	// Run it here rather than wait for a worker; a worker that picks the
	// task up meanwhile finds the job completed.
	if err := dl.Run(ctx, &job); err != nil {
		return fmt.Errorf("dlq retry: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "retried %d dead letters (%s)\n", job.Retried, job.ID)
	return err
}
