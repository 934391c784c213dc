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
	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/tasks/deadletter"
	"github.com/hookd/hookd/tasks/ledger"
)

// dlq runs "hookd dlq list|retry": dead letters from the command line.
func dlq(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	c, err := parseDLQ(args, getenv, stdout)
	if err != nil {
		return err
	}
	return c.run(ctx, stdout, log)
}

// dlqCommand is a parsed "hookd dlq" command line.
type dlqCommand struct {
	sub    string // list or retry
	cfg    Config // as serve reads it: retry enqueues as serve does
	filter ledger.DeadLetterFilter
	limit  int
	all    bool
	ids    []string
}

// parseDLQ reads a "hookd dlq" command line: its filters, and every setting
// of "hookd serve" from the environment and flags, since a retried dead
// letter's task must be enqueued as serve enqueues it (queue, retries,
// timeout).
func parseDLQ(args []string, getenv func(string) string, stdout io.Writer) (dlqCommand, error) {
	if len(args) == 0 {
		return dlqCommand{}, errors.New("dlq: want list or retry")
	}
	c := dlqCommand{sub: args[0]}
	args = args[1:]
	if c.sub != "list" && c.sub != "retry" {
		return dlqCommand{}, fmt.Errorf("dlq: unknown command %q (want list or retry)", c.sub)
	}
	fs := flag.NewFlagSet("hookd dlq "+c.sub, flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&c.filter.AppID, "app", "", "only this application's dead letters")
	fs.StringVar(&c.filter.EndpointID, "endpoint", "", "only dead letters to this endpoint")
	fs.StringVar(&c.filter.EventType, "event-type", "", "only dead letters of this event type")
	since := fs.String("since", "", "only deliveries that failed at or after this RFC 3339 time")
	until := fs.String("until", "", "only deliveries that failed before this RFC 3339 time")
	fs.IntVar(&c.limit, "limit", 100, "list: at most this many")
	fs.BoolVar(&c.all, "all", false, "retry: every dead letter the filters select")
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
	if !c.all {
		retried, err := dl.Retry(ctx, c.ids)
		if err != nil {
			return fmt.Errorf("dlq retry: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "retried %d of %d\n", len(retried), len(c.ids))
		return err
	}
	job, err := dl.StartBulk(ctx, c.filter)
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
