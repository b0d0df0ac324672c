package consumer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

// ExampleBatchHandler applies the settled bets of a batch with one INSERT
// in the PostgreSQL inbox's transaction: the rows and the events' "done"
// marks commit together. It runs against the Redis at 127.0.0.1:6379
// (HEADWAY_REDIS_ADDR) and the PostgreSQL of DATABASE_URL (default: the
// local database test), in a schema of its own that it drops.
func ExampleBatchHandler() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, dbURL := os.Getenv("HEADWAY_REDIS_ADDR"), os.Getenv("DATABASE_URL")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	if dbURL == "" {
		dbURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	run := time.Now().UnixNano()
	schema := fmt.Sprintf("example_%d", run)
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		panic(err)
	}
	pcfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+schema+"; CREATE TABLE "+schema+".settled (event_id text PRIMARY KEY, bet text NOT NULL)"); err != nil {
		panic(err)
	}
	defer pool.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") //nolint:errcheck // best effort
	inbox, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: pool})
	if err != nil {
		panic(err)
	}
	if err := inbox.Migrate(ctx); err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = rdb.Close() }()
	stream := fmt.Sprintf("example:%d:%s", run, event.StreamKey(platform.StreamWallet))
	defer rdb.Del(context.Background(), stream, stream+":dlq")
	for i := range 3 {
		fields, _ := event.Encode(event.Envelope{EventID: fmt.Sprintf("evt-%d", i), EventType: platform.BetSettledConfirmed,
			SchemaVersion: 2, BrandID: 3, OccurredAt: time.Now(), AggregateID: fmt.Sprintf("bet-%d", i), Payload: []byte(`{}`)})
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields})
	}

	calls := make(chan int, 3)
	settle := func(ctx context.Context, ms []*consumer.Message, errs []error) error {
		tx, _ := dedup.Tx(ctx)
		ids, bets := make([]string, len(ms)), make([]string, len(ms))
		for i, m := range ms {
			ids[i], bets[i] = m.Envelope.EventID, m.Envelope.AggregateID
		}
		_, err := tx.Exec(ctx, "INSERT INTO settled (event_id, bet) SELECT * FROM unnest($1::text[], $2::text[])", ids, bets)
		calls <- len(ms)
		return err // or nil, with errs[i] set for a message that cannot be applied
	}
	c, err := consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: stream,
		CatalogStream: platform.StreamWallet, Group: platform.ServiceRolling, Consumer: "pod-1",
		Dedup:         inbox,
		BatchHandlers: map[event.Type]consumer.BatchHandler{platform.BetSettledConfirmed: settle},
		Concurrency:   1, // one call per batch (more lanes apply a batch in two parts)
		Block:         100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Serve(serveCtx) }()
	fmt.Println("one call for", <-calls, "events")
	stop()
	<-done
	var n int
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM settled").Scan(&n)
	fmt.Println(n, "rows")
	// Output:
	// one call for 3 events
	// 3 rows
}
