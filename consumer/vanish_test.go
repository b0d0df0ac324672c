package consumer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// TestGroupMissingWhenServeStartsAgain: Redis restarts without its data
// while the consumer is stopped (as when its supervisor restarts it after
// reads failed). Serve starting again finds the group missing and creates
// it: that is counted and logged as a recreated group, with Redis's
// restart named, not taken for a first start; events published after it
// are applied.
func TestGroupMissingWhenServeStartsAgain(t *testing.T) {
	srv := redistest.StartServer(t, redistest.ServerOptions{}) // no persistence: a restart comes back empty
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	stream := event.StreamKey(platform.StreamWallet)
	rec := newRecorder()
	h := start(t, fastConfig(rdb, stream, handlersFor(rec.handle)))
	publish(t, rdb, stream, envelope("before", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "the first event applied", func() bool { return rec.times("before") == 1 })
	if n := h.counter("headway_consumer_group_recreated_total", nil); n != 0 {
		t.Fatalf("group_recreated_total = %v on a first start", n)
	}

	h.stop()
	srv.Restart()
	h.run()
	testkit.Eventually(t, 5*time.Second, "the vanished group counted", func() bool {
		return h.counter("headway_consumer_group_recreated_total", nil) == 1
	})
	logs := h.logs.String()
	if !strings.Contains(logs, "consumer group was missing when the consumer started again") || !strings.Contains(logs, "redis_restarted=yes") {
		t.Errorf("no log of the vanished group naming Redis's restart:\n%s", logs)
	}
	if snap := h.wm.Snapshot(); !snap.Notice || !strings.Contains(snap.NoticeReason, "consumer group vanished") {
		t.Errorf("no notice of the vanished group: %+v", snap)
	}
	publish(t, rdb, stream, envelope("after", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "the next event applied", func() bool { return rec.times("after") == 1 })

	// A plain restart of Serve, the group still there, counts nothing.
	h.stop()
	h.run()
	publish(t, rdb, stream, envelope("again", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "applied after a plain restart", func() bool { return rec.times("again") == 1 })
	if n := h.counter("headway_consumer_group_recreated_total", nil); n != 1 {
		t.Errorf("group_recreated_total = %v after a restart that found the group, want still 1", n)
	}
}

// TestStreamCreatedAgainIsReported: Redis restarts empty under a running
// consumer. Besides the recreated group (its next read gets NOGROUP, or
// Serve finds it missing), the stream's entries-added falling below what
// the consumer read before says the stream's history is gone: counted in
// stream_reset_total, once, and logged; steady publishing before never
// counts one.
func TestStreamCreatedAgainIsReported(t *testing.T) {
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	stream := event.StreamKey(platform.StreamWallet)
	rec := newRecorder()
	h := start(t, fastConfig(rdb, stream, handlersFor(rec.handle)))
	for _, id := range ids("e", 20) {
		publish(t, rdb, stream, envelope(id, platform.BetSettledConfirmed, "bet-1", 3, nil))
		time.Sleep(5 * time.Millisecond) // the publishing rate, over several info polls
	}
	testkit.Eventually(t, 5*time.Second, "20 applied", func() bool { return rec.n() == 20 })
	time.Sleep(150 * time.Millisecond) // three info polls (50ms) with nothing new: still no reset
	if n := h.counter("headway_consumer_stream_reset_total", nil); n != 0 {
		t.Fatalf("stream_reset_total = %v under steady publishing", n)
	}

	srv.Restart()
	testkit.Eventually(t, 10*time.Second, "the group recreated after the empty restart", func() bool {
		return h.counter("headway_consumer_group_recreated_total", nil) >= 1
	})
	for _, id := range ids("new", 3) {
		publish(t, rdb, stream, envelope(id, platform.BetSettledConfirmed, "bet-2", 3, nil))
	}
	testkit.Eventually(t, 10*time.Second, "the stream reset counted and the new events applied", func() bool {
		return h.counter("headway_consumer_stream_reset_total", nil) == 1 && rec.n() == 23
	})
	if !strings.Contains(h.logs.String(), "the stream lost entries it had") {
		t.Errorf("no log of the stream reset:\n%s", h.logs.String())
	}
	time.Sleep(150 * time.Millisecond) // more info polls: counted once
	if n := h.counter("headway_consumer_stream_reset_total", nil); n != 1 {
		t.Errorf("stream_reset_total = %v, want 1", n)
	}
}

// TestStreamThatLostItsNewestEntriesIsReported: a failover to a replica
// that lacked the stream's newest entries, after which more entries were
// appended than it lost: entries-added is back above its earlier reading,
// but the entry that was last then is gone (not trimmed, not deleted):
// the loss is counted once.
func TestStreamThatLostItsNewestEntriesIsReported(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream := walletStream(prefix)
	rec := newRecorder()
	h := start(t, fastConfig(rdb, stream, handlersFor(rec.handle)))
	published := make([]string, 0, 20)
	for _, id := range ids("e", 20) {
		published = append(published, publish(t, rdb, stream, envelope(id, platform.BetSettledConfirmed, "bet-1", 3, nil))...)
	}
	testkit.Eventually(t, 5*time.Second, "20 applied", func() bool { return rec.n() == 20 })
	time.Sleep(150 * time.Millisecond) // three info polls record the stream as it is
	if n := h.counter("headway_consumer_stream_reset_total", nil); n != 0 {
		t.Fatalf("stream_reset_total = %v before any loss", n)
	}

	// The "new primary": the first 15 entries and its group, then 10
	// appended by the relay since, in one transaction.
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, stream)
		msgs, _ := rdb.XRange(ctx, stream, "-", published[14]).Result()
		for _, m := range msgs {
			p.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: m.ID, Values: m.Values})
		}
		p.XGroupCreate(ctx, stream, "rolling_service", published[14])
		for _, id := range ids("f", 10) {
			fields, err := event.Encode(envelope(id, platform.BetSettledConfirmed, "bet-1", 3, nil))
			if err != nil {
				return err
			}
			p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the loss counted", func() bool {
		return h.counter("headway_consumer_stream_reset_total", nil) == 1
	})
	time.Sleep(150 * time.Millisecond) // more info polls: counted once
	if n := h.counter("headway_consumer_stream_reset_total", nil); n != 1 {
		t.Errorf("stream_reset_total = %v, want 1", n)
	}
}

// TestGroupRewoundRedeliversAsDuplicates: a group whose position moves
// back (a failover to a replica that had not seen its reads and
// acknowledgements, or an operator's XGROUP SETID) gets its entries
// delivered again; with the PostgreSQL inbox each comes back a duplicate,
// acknowledged without running the handler: every effect stays single.
func TestGroupRewoundRedeliversAsDuplicates(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	store, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: db.Pool})
	if err == nil {
		err = store.Migrate(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE effects (event_id text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	handler := func(ctx context.Context, m *consumer.Message) error {
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Exec(ctx, "INSERT INTO effects VALUES ($1)", m.Envelope.EventID)
		return err
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	h := start(t, cfg)
	for _, id := range ids("e", 20) {
		publish(t, rdb, stream, envelope(id, platform.BetSettledConfirmed, "bet-"+id[len(id)-1:], 3, nil))
	}
	effects := func() (n, distinct int) {
		if err := db.Pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT event_id) FROM effects").Scan(&n, &distinct); err != nil {
			t.Fatal(err)
		}
		return n, distinct
	}
	testkit.Eventually(t, 10*time.Second, "20 applied", func() bool { n, _ := effects(); return n == 20 && h.pending() == 0 })

	if err := rdb.XGroupSetID(ctx, stream, "rolling_service", "0").Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the 20 delivered again, all duplicates", func() bool {
		return h.outcome(platform.BetSettledConfirmed, consumer.OutcomeDuplicate) == 20 && h.pending() == 0
	})
	if n, distinct := effects(); n != 20 || distinct != 20 {
		t.Errorf("%d effects of %d events after the rewind, want 20 of 20", n, distinct)
	}
}
