package outboxtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/headwaylabs/headway/outbox"
)

// MigratedPostgres returns the store of the default outbox table in pool's
// database, created by its Migrate; an error fails tb.
func MigratedPostgres(tb testing.TB, pool *pgxpool.Pool) *outbox.PostgresStore {
	tb.Helper()
	s, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: pool})
	if err == nil {
		err = s.Migrate(context.Background())
	}
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
