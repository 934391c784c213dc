package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/hookd/hookd/app/registry"
)

// secrets runs "hookd secrets rotate-key": it re-encrypts every stored
// secret with the first key of HOOKD_SECRETS_KEY, reading serve's whole
// configuration as serve does.
func secrets(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	if len(args) == 0 || args[0] != "rotate-key" {
		return errors.New("secrets: want rotate-key")
	}
	fs := flag.NewFlagSet("hookd secrets rotate-key", flag.ContinueOnError)
	fs.SetOutput(stdout)
	cfg, rest, err := parseConfig(fs, args[1:], getenv)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("secrets rotate-key: unexpected arguments %q", rest)
	}
	if cfg.SecretsKeys == nil {
		return errors.New("secrets rotate-key: HOOKD_SECRETS_KEY is not set: give the new key first, then the old ones (HOOKD_SECRETS_KEY=NEW,OLD)")
	}
	db, err := openMigrated(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := registry.New(db, registry.Config{Secrets: cfg.SecretsKeys}).SealSecrets(ctx, true)
	if err != nil {
		return fmt.Errorf("secrets rotate-key (%d re-encrypted before the error; every key of HOOKD_SECRETS_KEY must be given, the new one first): %w", n, err)
	}
	fmt.Fprintf(stdout, "re-encrypted %d secrets with key %s\n", n, cfg.SecretsKeys.IDs()[0])
	return nil
}
