package service_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/service"
)

// Example_producer is the README's second code block: the wallet service
// settles a bet and writes its event in one transaction, and its relay
// appends the event to the wallet stream. It runs against the real
// PostgreSQL (a schema of its own) and Redis (database 9); a second
// goroutine settles bet-1 with settle, as a request handler would, reads
// the stream, then stops the service with SIGTERM.
func Example_producer() {
	env, err := quickStartEnv()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer env.restore()
	defer env.catchSIGTERM()() // the SIGTERM below is Run's, never the test binary's death
	seen := make(chan []string, 1)
	go func() { seen <- env.settleAndRead() }()

	// README:begin
	svc, err := service.New(service.Config{Name: "wallet-service"})
	check(err)
	db, err := svc.Postgres(context.Background()) // $DATABASE_URL
	check(err)
	store, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: db}) // table headway_outbox
	check(err)
	check(store.Migrate(context.Background()))
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), Registerer: svc.Registerer(), Logger: svc.Logger()})
	check(err)
	check(svc.AddWriter(w))                                                              // outbox/writer on /ready: fails for a while after a brand violation
	check(svc.AddRelay(context.Background(), "relay", outbox.RelayConfig{Store: store})) // appends to Redis ($REDIS_URL) what commits
	// … your API calls settle(ctx, db, w, betID) …
	check(svc.Run(context.Background()))
	// README:end

	for _, line := range <-seen {
		fmt.Println(line)
	}
	// Output:
	// /ready 200: loop/relay/headway_outbox OK, outbox/writer OK
	// settle bet-1: <nil>
	// events:{wallet}: BET_SETTLED_CONFIRMED bet-1 brand 3, schema_version 2, event_id a UUIDv7
}

// settle marks a bet settled and writes its event in the same
// transaction: both commit, or neither.
func settle(ctx context.Context, db *pgxpool.Pool, w *outbox.Writer, betID string) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var brand event.BrandID
		if err := tx.QueryRow(ctx, `UPDATE wallet_bets SET status = 'settled' WHERE id = $1 RETURNING brand_id`, betID).Scan(&brand); err != nil {
			return err
		}
		return w.Write(ctx, tx, brand, event.Envelope{EventType: platform.BetSettledConfirmed, BrandID: brand, // must be the bet's brand
			AggregateID: betID, OccurredAt: time.Now(), Payload: []byte(`{"bet_id":"` + betID + `"}`)}) // EventID (UUIDv7) and SchemaVersion filled in
	})
}

// settleAndRead waits for the wallet service, settles bet-1 through a
// writer and pool of its own (the service's are local to the README
// block), reads what the service's relay appended, and sends SIGTERM.
func (q *quickStart) settleAndRead() (seen []string) {
	ctx := context.Background()
	defer q.sigterm()
	checks, ok := q.ready()
	if !ok {
		return []string{"gave up waiting for /ready 200"}
	}
	seen = append(seen, fmt.Sprintf("/ready 200: loop/relay/headway_outbox %s, outbox/writer %s",
		checks["loop/relay/headway_outbox"], checks[service.WriterCheck]))
	db, err := pgxpool.New(ctx, q.databaseURL())
	if err != nil {
		return append(seen, err.Error())
	}
	defer db.Close()
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog()})
	if err != nil {
		return append(seen, err.Error())
	}
	seen = append(seen, fmt.Sprintf("settle bet-1: %v", settle(ctx, db, w, "bet-1")))
	var msgs []redis.XMessage
	for deadline := time.Now().Add(20 * time.Second); len(msgs) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		msgs, _ = q.rdb.XRange(ctx, event.StreamKey(platform.StreamWallet), "-", "+").Result()
	}
	for _, m := range msgs {
		e, err := event.Decode(m.Values)
		if err != nil {
			seen = append(seen, err.Error())
			continue
		}
		id := "not a UUIDv7"
		if len(e.EventID) == 36 && e.EventID[14] == '7' {
			id = "a UUIDv7"
		}
		seen = append(seen, fmt.Sprintf("%s: %s %s brand %d, schema_version %d, event_id %s",
			event.StreamKey(platform.StreamWallet), e.EventType, e.AggregateID, e.BrandID, e.SchemaVersion, id))
	}
	return seen
}
