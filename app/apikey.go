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

	"github.com/hookd/hookd/app/registry"
	"github.com/hookd/hookd/app/resource"
)

// apikey runs "hookd apikey create|list|revoke" against the database.
func apikey(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	if len(args) == 0 {
		return errors.New("apikey: want create, list or revoke")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("hookd apikey "+sub, flag.ContinueOnError)
	fs.SetOutput(stdout)
	dbURL := fs.String("database-url", envOr(getenv, "HOOKD_DATABASE_URL"), "Postgres URL (HOOKD_DATABASE_URL)")
	var name, appID *string
	if sub == "create" {
		name = fs.String("name", "", "what the key is for (required)")
		appID = fs.String("app", "", "scope the key to this application ID; omit for an admin key")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	var run func(reg *registry.Registry) error
	switch sub {
	case "create":
		if *name == "" || fs.NArg() > 0 {
			return errors.New("apikey create: want --name NAME [--app APP_ID]")
		}
		run = func(reg *registry.Registry) error {
			k, key, err := reg.CreateAPIKey(ctx, *name, *appID)
			if err != nil {
				return fmt.Errorf("apikey create: %w", err)
			}
			log.InfoContext(ctx, "api key created", slog.String("key_id", k.ID), slog.String("scope", scope(k)))
			_, err = fmt.Fprintln(stdout, key)
			return err
		}
	case "list":
		if fs.NArg() > 0 {
			return errors.New("apikey list: takes no arguments")
		}
		run = func(reg *registry.Registry) error { return listAPIKeys(ctx, reg, stdout) }
	case "revoke":
		if fs.NArg() != 1 {
			return errors.New("apikey revoke: want the key ID (key_...)")
		}
		run = func(reg *registry.Registry) error {
			k, err := reg.RevokeAPIKey(ctx, fs.Arg(0))
			if errors.Is(err, resource.ErrNotFound) {
				return fmt.Errorf("apikey revoke: no key %s", fs.Arg(0))
			}
			if err != nil {
				return fmt.Errorf("apikey revoke: %w", err)
			}
			_, err = fmt.Fprintf(stdout, "revoked %s at %s\n", k.ID, k.RevokedAt.Format(time.RFC3339))
			return err
		}
	default:
		return fmt.Errorf("apikey: unknown command %q (want create, list or revoke)", sub)
	}

	db, err := openMigrated(ctx, *dbURL, log)
	if err != nil {
		return err
	}
	defer db.Close()
	return run(registry.New(db, registry.Config{}))
}

func listAPIKeys(ctx context.Context, reg *registry.Registry, stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPE\tPREFIX\tCREATED\tLAST USED\tREVOKED")
	q := resource.PageQuery{Limit: resource.MaxLimit}
	for {
		page, err := reg.APIKeys(ctx, q)
		if err != nil {
			return fmt.Errorf("apikey list: %w", err)
		}
		for _, k := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s…\t%s\t%s\t%s\n", k.ID, k.Name, scope(k), k.Prefix,
				k.CreatedAt.Format(time.RFC3339), timeOrDash(k.LastUsedAt), timeOrDash(k.RevokedAt))
		}
		if page.Next == "" {
			return tw.Flush()
		}
		q.Cursor = page.Next
	}
}

func scope(k registry.APIKey) string {
	if k.AppID == nil {
		return "admin"
	}
	return *k.AppID
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// envOr returns the environment variable env, or its default.
func envOr(getenv func(string) string, env string) string {
	if v := getenv(env); v != "" {
		return v
	}
	for _, s := range settings() {
		if s.env == env {
			return s.def
		}
	}
	return ""
}
