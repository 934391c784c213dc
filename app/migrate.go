package app

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks/ledger"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one versioned schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns every migration in version order: the outbox's and the
// deliveries' schemas, then the files in migrations/ (NNNN_name.sql).
func migrations() ([]migration, error) {
	ms := []migration{
		{1, "outbox", outbox.Schema()},
		{2, "deliveries", ledger.Schema()},
		{6, "delivery_engine", ledger.EngineSchema()},
		{9, "reconciler", ledger.ReconcileSchema()},
		{10, "retention", ledger.RetentionSchema()},
		{13, "fifo", ledger.FIFOSchema()},
	}
	// The engine's schemas that belong to a file's version: one change of
	// the registry's tables and the engine's, applied together, the
	// engine's SQL after the file's.
	withFile := map[int]string{16: ledger.ReplaySchema()}
	files, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	for _, f := range files {
		base := strings.TrimSuffix(path.Base(f), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", f)
		}
		b, err := migrationFiles.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", f, err)
		}
		sql := string(b)
		if engine, ok := withFile[v]; ok {
			sql += "\n" + engine
			delete(withFile, v)
		}
		ms = append(ms, migration{v, name, sql})
	}
	for v := range withFile {
		return nil, fmt.Errorf("migration %d: the engine's schema has no file to go with", v)
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	return ms, nil
}

// Migrate brings the database's current schema up to date. It runs in one
// transaction under an advisory lock, so concurrent starts apply each
// migration once and a failure leaves nothing half done.
func Migrate(ctx context.Context, db *bun.DB, log *slog.Logger) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	var applied []string
	err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.hookd_migrate'))`); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var done []int
		if err := tx.NewRaw(`SELECT version FROM schema_migrations`).Scan(ctx, &done); err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		for _, m := range ms {
			if slices.Contains(done, m.version) {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apply %04d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES (?, ?)`, m.version, m.name); err != nil {
				return fmt.Errorf("record %04d_%s: %w", m.version, m.name, err)
			}
			applied = append(applied, fmt.Sprintf("%04d_%s", m.version, m.name))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if len(applied) > 0 {
		log.InfoContext(ctx, "migrations applied", slog.Any("migrations", applied))
	}
	return nil
}
