package dedup_test

import (
	"context"
	"errors"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/headwaylabs/headway/dedup"
)

// The handler writes through the inbox transaction, so the order and the
// event's "done" mark commit together: a redelivered event is a Duplicate,
// a failed one leaves no order behind. (Not run: it needs a database.)
func ExampleTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	inbox, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: pool})
	if err != nil {
		log.Fatal(err)
	}
	if err := inbox.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	key := dedup.Key{Scope: "billing", EventID: "01J9ZQ3H6V"}
	outcome, err := inbox.Process(ctx, key, func(ctx context.Context) error {
		tx, ok := dedup.Tx(ctx)
		if !ok {
			return errors.New("not in a PostgreSQL inbox")
		}
		_, err := tx.Exec(ctx, "INSERT INTO orders (event_id, total_cents) VALUES ($1, $2)", key.EventID, 4200)
		return err
	})
	log.Println(outcome, err) // processed <nil>; on redelivery: duplicate <nil>
}

// Prune forgets marks older than the longest redelivery delay, a thousand
// rows per transaction. (Not run: it needs a database.)
func ExamplePostgresStore_Prune() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	inbox, _ := dedup.NewPostgres(dedup.PostgresConfig{Pool: pool, Table: "billing.inbox"})
	deleted, err := inbox.Prune(ctx, 14*24*time.Hour, 1000)
	log.Println(deleted, err)
}
