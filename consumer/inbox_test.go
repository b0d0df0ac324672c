package consumer_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// TestPostgresInboxExactlyOnceEffect: with the PostgreSQL inbox, the
// handler's own write and the dedup mark commit together; a failed first
// attempt leaves nothing behind; duplicates never write twice; the entry is
// acknowledged only after the commit.
func TestPostgresInboxExactlyOnceEffect(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	store, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: db.Pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE rollings (event_id text PRIMARY KEY, bet text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var attempts atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		tx, ok := dedup.Tx(ctx)
		if !ok {
			return consumer.Permanent(errors.New("no inbox transaction"))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO rollings VALUES ($1, $2)", m.Envelope.EventID, m.Envelope.AggregateID); err != nil {
			return err
		}
		if m.Envelope.EventID == "flaky" && attempts.Add(1) == 1 {
			return errors.New("fails after writing") // the write must roll back
		}
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	h := start(t, cfg)
	dup := envelope("dup", platform.BetSettledConfirmed, "bet-1", 3, nil)
	publish(t, rdb, stream, dup, envelope("flaky", platform.BetSettledConfirmed, "bet-2", 3, nil), dup, dup)
	testkit.Eventually(t, 10*time.Second, "all four entries resolved", func() bool {
		return h.pending() == 0 && h.outcome(platform.BetSettledConfirmed, consumer.OutcomeDuplicate) == 2
	})
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM rollings").Scan(&n); err != nil || n != 2 {
		t.Fatalf("business rows = %d (%v), want 2: one per event", n, err)
	}
	if attempts.Load() != 2 {
		t.Fatalf("flaky handler ran %d times, want 2 (fail, then succeed)", attempts.Load())
	}
}

// inboxWithBalance returns a migrated PostgreSQL inbox and a one-row
// balance table at 0 cents.
func inboxWithBalance(t *testing.T) (*pgtest.DB, *dedup.PostgresStore) {
	t.Helper()
	db := pgtest.New(t)
	ctx := context.Background()
	store, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: db.Pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE balance (id int PRIMARY KEY, cents bigint NOT NULL); INSERT INTO balance VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	return db, store
}

func balanceOf(t *testing.T, db *pgtest.DB) int64 {
	t.Helper()
	var cents int64
	if err := db.Pool.QueryRow(context.Background(), "SELECT cents FROM balance WHERE id = 1").Scan(&cents); err != nil {
		t.Fatal(err)
	}
	return cents
}

// TestInboxRetryAfterWriteCommitsOnce: a handler that writes through the
// inbox transaction and then fails with a non-SQL error (a downstream
// timeout) is retried in process; the failed attempt's write must not
// commit with the successful one's. Balance +100 for one event, not +200.
func TestInboxRetryAfterWriteCommitsOnce(t *testing.T) {
	db, store := inboxWithBalance(t)
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var attempts atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		tx, ok := dedup.Tx(ctx)
		if !ok {
			return consumer.Permanent(errors.New("no inbox transaction"))
		}
		if _, err := tx.Exec(ctx, "UPDATE balance SET cents = cents + 100 WHERE id = 1"); err != nil {
			return err
		}
		if attempts.Add(1) == 1 {
			return errors.New("downstream timeout") // after the write
		}
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("e1", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 10*time.Second, "the event applied", func() bool {
		return h.pending() == 0 && h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 1
	})
	if got := attempts.Load(); got != 2 {
		t.Fatalf("handler ran %d times, want 2 (fail after writing, then succeed)", got)
	}
	if got := balanceOf(t, db); got != 100 {
		t.Fatalf("balance = %d cents after one event of 100, want 100: a failed attempt's write committed", got)
	}
	if n := h.counter("headway_consumer_handler_retries_total", nil); n != 1 {
		t.Fatalf("handler_retries_total = %v, want 1 (the retry ran in process)", n)
	}
}

// TestInboxRetryAfterSQLErrorSucceeds: a first attempt that hits an SQL
// error (the transaction is then aborted) does not doom the later attempts
// to SQLSTATE 25P02: the second attempt starts from a clean transaction and
// applies the event in the same delivery.
func TestInboxRetryAfterSQLErrorSucceeds(t *testing.T) {
	db, store := inboxWithBalance(t)
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var attempts atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		tx, _ := dedup.Tx(ctx)
		if attempts.Add(1) == 1 {
			var x int
			return tx.QueryRow(ctx, "SELECT 1/0").Scan(&x) // aborts the transaction
		}
		_, err := tx.Exec(ctx, "UPDATE balance SET cents = cents + 100 WHERE id = 1")
		return err
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("e1", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 10*time.Second, "the event applied", func() bool {
		return h.pending() == 0 && h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 1
	})
	if got := attempts.Load(); got != 2 {
		t.Fatalf("handler ran %d times, want 2 (SQL error, then success in the same delivery)", got)
	}
	if got := balanceOf(t, db); got != 100 {
		t.Fatalf("balance = %d, want 100", got)
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("%d dead letters, want none: %v", len(dl), dl[0].Values)
	}
}

// TestInboxDeadLetterKeepsTheRealSQLError: a handler that always fails with
// an SQL error is dead-lettered with that error, not with 25P02 ("current
// transaction is aborted") from a later attempt in the same transaction.
func TestInboxDeadLetterKeepsTheRealSQLError(t *testing.T) {
	db, store := inboxWithBalance(t)
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	handler := func(ctx context.Context, m *consumer.Message) error {
		tx, _ := dedup.Tx(ctx)
		if _, err := tx.Exec(ctx, "UPDATE balance SET cents = cents + 100 WHERE id = 1"); err != nil {
			return err
		}
		var x int
		return tx.QueryRow(ctx, "SELECT 1/0").Scan(&x)
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	cfg.MaxDeliveries = 1
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("e1", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 10*time.Second, "the event dead-lettered", func() bool { return len(h.deadLetters()) == 1 })
	dl := h.deadLetters()[0].Values
	if dl[consumer.DLQFieldReason] != consumer.ReasonMaxDeliveries {
		t.Fatalf("dlq_reason = %v, want %s", dl[consumer.DLQFieldReason], consumer.ReasonMaxDeliveries)
	}
	if msg, _ := dl[consumer.DLQFieldError].(string); !strings.Contains(msg, "22012") || strings.Contains(msg, "25P02") {
		t.Fatalf("dlq_error = %q, want the division by zero (SQLSTATE 22012), not an aborted transaction (25P02)", msg)
	}
	if got := balanceOf(t, db); got != 0 {
		t.Fatalf("balance = %d after a dead-lettered event, want 0: failed attempts' writes committed", got)
	}
}
