package consumer_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
)

// TestPostgresInboxExactlyOnceEffect: with the PostgreSQL inbox, the
// handler's own write and the dedup mark commit together; a failed first
// attempt leaves nothing behind; duplicates never write twice; the entry is
// acknowledged only after the commit.
func TestPostgresInboxExactlyOnceEffect(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	store, err := dedup.NewPostgres(db.Pool, dedup.PostgresConfig{})
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
	dup := envelope("dup", event.BetSettledConfirmed, "bet-1", 3, nil)
	publish(t, rdb, stream, dup, envelope("flaky", event.BetSettledConfirmed, "bet-2", 3, nil), dup, dup)
	eventually(t, 10*time.Second, "all four entries resolved", func() bool {
		return h.pending() == 0 && h.outcome(event.BetSettledConfirmed, consumer.OutcomeDuplicate) == 2
	})
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM rollings").Scan(&n); err != nil || n != 2 {
		t.Fatalf("business rows = %d (%v), want 2: one per event", n, err)
	}
	if attempts.Load() != 2 {
		t.Fatalf("flaky handler ran %d times, want 2 (fail, then succeed)", attempts.Load())
	}
}
