package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
)

const usage = `hookd delivers webhooks reliably.

Usage:
  hookd serve [flags]     run the roles (api, relay, worker, reconciler; all by default)
  hookd migrate [flags]   apply database migrations and exit
  hookd apikey create --name NAME [--app APP_ID]
                          create an API key (admin, or scoped to one app) and print it
  hookd apikey list       list API keys
  hookd apikey revoke ID  revoke an API key
  hookd dlq list [--app ID] [--endpoint ID] [--event-type T] [--since T] [--until T]
                          list dead letters (failed deliveries)
  hookd dlq retry DELIVERY_ID...
  hookd dlq retry --all [filters] [--dry-run] [--rate N]
                          deliver dead letters again, with a fresh retry schedule
  hookd dlq recover --app ID_OR_UID --endpoint ID --since T [--until T] [--dry-run] [--rate N]
                          send an endpoint the events of [since, until) it has not received
  hookd secrets rotate-key
                          re-encrypt every stored secret with the first key of
                          HOOKD_SECRETS_KEY (give the new key, then the old ones)
  hookd bench [flags]     run the load generator against this binary (see hookd bench -h)
  hookd version           print the version

Run "hookd serve -h" for the flags; each has a HOOKD_* environment variable.
`

// Main runs the hookd command line: args are the arguments after the
// program name, getenv reads the environment. Output meant for the user goes
// to stdout; logs go to log.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	err := run(ctx, args, getenv, stdout, log)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the flag package printed the help
	}
	return err
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return errors.New("no command given")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		cfg, err := configFor(cmd, args, getenv, stdout)
		if err != nil {
			return err
		}
		a, err := New(ctx, cfg, log)
		if err != nil {
			return err
		}
		return a.Run(ctx)
	case "migrate":
		cfg, err := configFor(cmd, args, getenv, stdout)
		if err != nil {
			return err
		}
		db, err := openMigrated(ctx, cfg.DatabaseURL, log)
		if err != nil {
			return err
		}
		return db.Close()
	case "dlq":
		return dlq(ctx, args, getenv, stdout, log)
	case "apikey":
		return apikey(ctx, args, getenv, stdout, log)
	case "secrets":
		return secrets(ctx, args, getenv, stdout, log)
	case "bench":
		return benchCommand(ctx, args, getenv, stdout, log)
	case "version":
		fmt.Fprintln(stdout, "hookd", Version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stdout, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// ParseConfig reads the configuration of "hookd serve" from the environment
// (through getenv) and from flags in args, as the command line does.
func ParseConfig(getenv func(string) string, args ...string) (Config, error) {
	return configFor("serve", args, getenv, io.Discard)
}

func configFor(cmd string, args []string, getenv func(string) string, out io.Writer) (Config, error) {
	fs := flag.NewFlagSet("hookd "+cmd, flag.ContinueOnError)
	fs.SetOutput(out)
	cfg, rest, err := parseConfig(fs, args, getenv)
	if err != nil {
		return Config{}, err
	}
	if len(rest) > 0 {
		return Config{}, fmt.Errorf("%s: unexpected arguments %q", cmd, rest)
	}
	return cfg, nil
}

// Version returns hookd's version from the build information: the module
// version, or the VCS revision of a development build.
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
