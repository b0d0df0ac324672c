package outbox

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrateLock is the advisory lock key that serialises Migrate across
// processes ("headway outbox" folded into 63 bits).
const migrateLock = 0x68656164776179

// Migrate applies the outbox schema migrations embedded in this package to
// the store's table, each once, recorded in <table>_migrations. It is
// idempotent and safe when several processes start together: it runs in
// one transaction under a transaction-level advisory lock.
func (s *PostgresStore) Migrate(ctx context.Context) error {
	pool, table := s.pool, s.table
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(files)
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLock)); err != nil {
			return fmt.Errorf("outbox: migrate lock: %w", err)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s_migrations (
			version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`, table)); err != nil {
			return fmt.Errorf("outbox: migrations table: %w", err)
		}
		for _, f := range files {
			version := strings.TrimSuffix(strings.TrimPrefix(f, "migrations/"), ".sql")
			var done bool
			if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s_migrations WHERE version = $1)", table),
				version).Scan(&done); err != nil {
				return fmt.Errorf("outbox: migration %s: %w", version, err)
			}
			if done {
				continue
			}
			sql, err := migrations.ReadFile(f)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, strings.ReplaceAll(string(sql), "{{table}}", table)); err != nil {
				return fmt.Errorf("outbox: migration %s: %w", version, err)
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s_migrations (version) VALUES ($1)", table), version); err != nil {
				return fmt.Errorf("outbox: migration %s: %w", version, err)
			}
		}
		return nil
	})
}
