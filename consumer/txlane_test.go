package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// migratedInbox returns a migrated PostgreSQL inbox with cfg on a fresh
// database, and runs setup there.
func migratedInbox(t *testing.T, cfg dedup.PostgresConfig, setup string) (*pgtest.DB, *dedup.PostgresStore) {
	t.Helper()
	db := pgtest.New(t)
	cfg.Pool = db.Pool
	store, err := dedup.NewPostgres(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(context.Background(), setup); err != nil {
		t.Fatal(err)
	}
	return db, store
}

// texts returns the one text column of query's rows.
func texts(t *testing.T, db *pgtest.DB, query string) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return got
}

func queryInt(t *testing.T, db *pgtest.DB, query string) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestInboxLaneSharesATransaction: on the PostgreSQL inbox, the entries of
// a lane run in one transaction (one commit for many events); with
// TxPerEvent every event has a transaction of its own.
func TestInboxLaneSharesATransaction(t *testing.T) {
	for _, perEvent := range []bool{false, true} {
		t.Run(fmt.Sprintf("TxPerEvent=%v", perEvent), func(t *testing.T) {
			db, store := migratedInbox(t, dedup.PostgresConfig{}, "CREATE TABLE txids (event_id text PRIMARY KEY, txid bigint NOT NULL)")
			rdb, prefix := redistest.Client(t)
			stream := walletStream(prefix)
			handler := func(ctx context.Context, m *consumer.Message) error {
				tx, _ := dedup.Tx(ctx)
				_, err := tx.Exec(ctx, "INSERT INTO txids VALUES ($1, txid_current())", m.Envelope.EventID)
				return err
			}
			const n = 40
			var envs []event.Envelope
			for i := range n {
				envs = append(envs, envelope(fmt.Sprintf("e%02d", i), platform.BetSettledConfirmed, fmt.Sprintf("bet-%d", i%5), 3, nil))
			}
			publish(t, rdb, stream, envs...) // before the consumer starts: one read batch
			cfg := fastConfig(rdb, stream, handlersFor(handler))
			cfg.Dedup, cfg.Concurrency, cfg.TxPerEvent = store, 1, perEvent
			h := start(t, cfg)
			testkit.Eventually(t, 10*time.Second, "every event applied", func() bool {
				return h.pending() == 0 && h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == n
			})
			txs := queryInt(t, db, "SELECT count(DISTINCT txid) FROM txids")
			switch {
			case perEvent && txs != n:
				t.Errorf("%d transactions for %d events, want one each with TxPerEvent", txs, n)
			case !perEvent && txs != 1:
				t.Errorf("%d transactions for %d events read in one batch on one lane, want 1", txs, n)
			}
		})
	}
}

// TestInboxLaneOrderAfterARetry: in a lane's transaction, an event whose
// first attempt fails holds its aggregate's later events back (their
// handlers do not run in the batch) until its retry has succeeded; then
// they run, in stream order. Other aggregates commit with the batch.
func TestInboxLaneOrderAfterARetry(t *testing.T) {
	db, store := migratedInbox(t, dedup.PostgresConfig{},
		"CREATE TABLE effects (seq bigserial PRIMARY KEY, event_id text NOT NULL, agg text NOT NULL)")
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var a1Runs, a2Runs atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		tx, _ := dedup.Tx(ctx)
		if _, err := tx.Exec(ctx, "INSERT INTO effects (event_id, agg) VALUES ($1, $2)", m.Envelope.EventID, m.Envelope.AggregateID); err != nil {
			return err
		}
		switch m.Envelope.EventID {
		case "a1":
			if a1Runs.Add(1) == 1 {
				return errors.New("downstream timeout") // after the write: it must roll back
			}
		case "a2":
			a2Runs.Add(1)
		}
		return nil
	}
	publish(t, rdb, stream,
		envelope("a1", platform.BetSettledConfirmed, "A", 3, nil), envelope("b1", platform.BetSettledConfirmed, "B", 3, nil),
		envelope("a2", platform.BetSettledConfirmed, "A", 3, nil), envelope("b2", platform.BetSettledConfirmed, "B", 3, nil),
		envelope("a3", platform.BetSettledConfirmed, "A", 3, nil))
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup, cfg.Concurrency = store, 1
	h := start(t, cfg)
	testkit.Eventually(t, 10*time.Second, "every event applied", func() bool {
		return h.pending() == 0 && h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 5
	})
	if a1Runs.Load() != 2 || a2Runs.Load() != 1 {
		t.Errorf("a1 ran %d times, a2 %d; want 2 (fail, retry) and 1 (not before a1 succeeded)", a1Runs.Load(), a2Runs.Load())
	}
	order := texts(t, db, "SELECT event_id FROM effects WHERE agg = 'A' ORDER BY seq")
	if fmt.Sprint(order) != "[a1 a2 a3]" {
		t.Errorf("effects of aggregate A in order %v, want [a1 a2 a3]: once each, in stream order", order)
	}
	if n := queryInt(t, db, "SELECT count(*) FROM effects WHERE agg = 'B'"); n != 2 {
		t.Errorf("%d effects of aggregate B, want 2", n)
	}
}

// TestInboxLanesOnContendedRows: two consumers with four lanes each apply
// events that update a few shared rows (the balances of three accounts,
// which are not the events' aggregates). Each lane's transaction holds the
// rows it updated until it commits; a handler that waits on a row longer
// than the inbox's LockWait is rolled back and run alone after its batch
// commits, so no wait runs into the handler timeout. Every event is
// applied once, none dead-lettered, and the balances add up.
func TestInboxLanesOnContendedRows(t *testing.T) {
	db, store := migratedInbox(t, dedup.PostgresConfig{LockWait: 20 * time.Millisecond},
		`CREATE TABLE effects (event_id text NOT NULL);
		CREATE TABLE balances (account int PRIMARY KEY, cents bigint NOT NULL);
		INSERT INTO balances SELECT g, 0 FROM generate_series(0, 2) g`)
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	handler := func(ctx context.Context, m *consumer.Message) error {
		tx, _ := dedup.Tx(ctx)
		if _, err := tx.Exec(ctx, "INSERT INTO effects VALUES ($1)", m.Envelope.EventID); err != nil {
			return err
		}
		var i int
		_, _ = fmt.Sscanf(m.Envelope.EventID, "e%d", &i)
		_, err := tx.Exec(ctx, "UPDATE balances SET cents = cents + 1 WHERE account = $1", i%3)
		return err
	}
	const n = 600
	var envs []event.Envelope
	for i := range n {
		envs = append(envs, envelope(fmt.Sprintf("e%d", i), platform.BetSettledConfirmed, fmt.Sprintf("bet-%d", i%40), 3, nil))
	}
	var hs []*harness
	for _, name := range []string{"pod-a", "pod-b"} {
		cfg := fastConfig(rdb, stream, handlersFor(handler))
		cfg.Dedup, cfg.Concurrency, cfg.Consumer, cfg.BatchSize = store, 4, name, 100
		cfg.HandlerTimeout = time.Second
		hs = append(hs, start(t, cfg))
	}
	publish(t, rdb, stream, envs...)
	applied := func() float64 {
		var sum float64
		for _, h := range hs {
			sum += h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied)
		}
		return sum
	}
	testkit.Eventually(t, 30*time.Second, "every event applied", func() bool { return hs[0].pending() == 0 && applied() == n })
	if dl := hs[0].deadLetters(); len(dl) != 0 {
		t.Errorf("%d dead letters, want none: %v", len(dl), dl[0].Values)
	}
	if got := queryInt(t, db, "SELECT count(*) FROM effects"); got != n {
		t.Errorf("%d effects for %d events, want one each", got, n)
	}
	if got := queryInt(t, db, "SELECT sum(cents)::int FROM balances"); got != n {
		t.Errorf("balances add up to %d, want %d", got, n)
	}
	var failures float64
	for _, h := range hs {
		failures += h.counter("headway_consumer_handler_retries_total", nil)
	}
	if failures != 0 {
		t.Errorf("%v handler retries: a lock wait was charged to a handler", failures)
	}
}

// TestInboxLaneOrderWhenAHandlerSwallowsAnError: a handler that swallows
// the error of its own statement and returns nil is failed by the inbox
// (its transaction was aborted); the later entry of its aggregate must not
// take effect before its retry does.
func TestInboxLaneOrderWhenAHandlerSwallowsAnError(t *testing.T) {
	db, store := migratedInbox(t, dedup.PostgresConfig{},
		"CREATE TABLE effects (seq bigserial PRIMARY KEY, event_id text NOT NULL, agg text NOT NULL)")
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var a1Runs atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		tx, _ := dedup.Tx(ctx)
		if _, err := tx.Exec(ctx, "INSERT INTO effects (event_id, agg) VALUES ($1, $2)", m.Envelope.EventID, m.Envelope.AggregateID); err != nil {
			return err
		}
		if m.Envelope.EventID == "a1" && a1Runs.Add(1) == 1 {
			var x int
			_ = tx.QueryRow(ctx, "SELECT 1/0").Scan(&x) // swallowed: the transaction is aborted
		}
		return nil
	}
	publish(t, rdb, stream, envelope("a1", platform.BetSettledConfirmed, "A", 3, nil), envelope("a2", platform.BetSettledConfirmed, "A", 3, nil))
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup, cfg.Concurrency = store, 1
	h := start(t, cfg)
	testkit.Eventually(t, 10*time.Second, "both applied", func() bool {
		return h.pending() == 0 && h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 2
	})
	var order string
	if err := db.Pool.QueryRow(context.Background(), "SELECT string_agg(event_id, ' ' ORDER BY seq) FROM effects").Scan(&order); err != nil {
		t.Fatal(err)
	}
	if order != "a1 a2" {
		t.Errorf("effects in order %q, want \"a1 a2\"", order)
	}
}
