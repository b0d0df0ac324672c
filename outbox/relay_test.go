package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type relayRun struct {
	r      *outbox.Relay
	cancel context.CancelFunc
	done   chan error
}

func runRelay(t *testing.T, cfg outbox.RelayConfig) *relayRun {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	r, err := outbox.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr := &relayRun{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { rr.done <- r.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rr.done:
		case <-time.After(10 * time.Second):
			t.Error("relay did not stop")
		}
	})
	return rr
}

func writeEvents(t *testing.T, db *pgtest.DB, w *outbox.Writer, prefix string, n int, brand event.BrandID) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	var envs []event.Envelope
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		ids = append(ids, id)
		envs = append(envs, env(id, platform.BetSettledConfirmed, fmt.Sprintf("bet-%d", i%10), brand))
	}
	if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return w.WriteBatch(ctx, tx, brand, envs) }); err != nil {
		t.Fatal(err)
	}
	return ids
}

// streamEvents decodes the stream's entries.
func streamEvents(t *testing.T, rdb redis.UniversalClient, key string) []event.Envelope {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]event.Envelope, len(msgs))
	for i, m := range msgs {
		if out[i], err = event.Decode(m.Values); err != nil {
			t.Fatalf("entry %s does not decode: %v", m.ID, err)
		}
	}
	return out
}

func TestRelayEndToEnd(t *testing.T) {
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	ids := writeEvents(t, db, w, "e", 120, 3)
	rr := runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, BatchSize: 50, PollInterval: 100 * time.Millisecond,
		InfoInterval: 20 * time.Millisecond})
	key := prefix + "events:{wallet}"
	testkit.Eventually(t, 10*time.Second, "120 events on the stream", func() bool { return len(streamEvents(t, rdb, key)) == 120 })
	got := streamEvents(t, rdb, key)
	for i, e := range got {
		if e.EventID != ids[i] || e.BrandID != 3 || e.EventType != platform.BetSettledConfirmed || e.SchemaVersion != 2 {
			t.Fatalf("entry %d = %+v; want %s in id order", i, e, ids[i])
		}
	}
	testkit.Eventually(t, 5*time.Second, "rows marked published and backlog zero", func() bool {
		snap := rr.r.Watermark().Snapshot()
		n, known := snap.Backlog, snap.BacklogKnown
		return count(t, db, "published_at IS NULL") == 0 && known && n == 0
	})
	if st := rr.r.Watermark().Status(); !st.Ready() {
		t.Fatalf("relay not ready after publishing: %v", st.Reason)
	}
}

func TestRelayWakesOnNotify(t *testing.T) {
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, PollInterval: 30 * time.Second})
	key := prefix + "events:{wallet}"
	// A first event, whichever way it is found, puts the relay into its
	// wait; every later one must wake it.
	writeEvents(t, db, w, "warm-up", 1, 3)
	testkit.Eventually(t, 35*time.Second, "warm-up published", func() bool { return len(streamEvents(t, rdb, key)) == 1 })
	var worst time.Duration
	for i := range 5 {
		start := time.Now()
		writeEvents(t, db, w, fmt.Sprintf("n%d", i), 1, 3)
		testkit.Eventually(t, 5*time.Second, "published without waiting for the poll", func() bool {
			return len(streamEvents(t, rdb, key)) == i+2
		})
		worst = max(worst, time.Since(start))
	}
	t.Logf("commit to stream, worst of 5 with a 30s poll: %v", worst)
	if worst > 2*time.Second {
		t.Fatalf("NOTIFY wake-up took %v", worst)
	}
}

// TestRelayNeverSkipsLateCommit: a transaction that took an early id and
// commits after later ids were published is still published.
func TestRelayNeverSkipsLateCommit(t *testing.T) {
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	slow, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, slow, 3, env("early", platform.BetSettledConfirmed, "bet-1", 3)); err != nil {
		t.Fatal(err)
	}
	runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, PollInterval: 50 * time.Millisecond})
	writeEvents(t, db, w, "later", 3, 3)
	key := prefix + "events:{wallet}"
	testkit.Eventually(t, 5*time.Second, "later rows published", func() bool { return len(streamEvents(t, rdb, key)) == 3 })
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the early row published after its late commit", func() bool {
		evs := streamEvents(t, rdb, key)
		return len(evs) == 4 && evs[3].EventID == "early"
	})
}

func TestTwoRelaysPublishEveryRowOnce(t *testing.T) {
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	cfg := outbox.RelayConfig{Pool: db.Pool, Client: rdb, BatchSize: 25, PollInterval: 20 * time.Millisecond}
	runRelay(t, cfg)
	runRelay(t, cfg)
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() { writeEvents(t, db, w, fmt.Sprintf("p%d", p), 250, 3) })
	}
	wg.Wait()
	key := prefix + "events:{wallet}"
	testkit.Eventually(t, 20*time.Second, "1000 rows published", func() bool { return count(t, db, "published_at IS NULL") == 0 })
	evs := streamEvents(t, rdb, key)
	seen := map[string]int{}
	for _, e := range evs {
		seen[e.EventID]++
	}
	if len(evs) != 1000 || len(seen) != 1000 {
		t.Fatalf("%d entries for %d distinct events; want 1000 of 1000", len(evs), len(seen))
	}
}

// TestRelayKeepsRowsWhileRedisIsDown: appends fail, rows stay with attempts
// and an error, the relay is not ready; when Redis is back everything is
// published.
func TestRelayKeepsRowsWhileRedisIsDown(t *testing.T) {
	db := migrated(t)
	srv := redistest.StartServer(t, redistest.ServerOptions{AppendOnly: true})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog()})
	wm, _ := readiness.NewWatermark(readiness.WatermarkConfig{Name: "relay", FailureBound: 2})
	srv.Stop()
	writeEvents(t, db, w, "down", 10, 3)
	rr := runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, PollInterval: 50 * time.Millisecond,
		Retry: backoff.Exponential{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}, FailureLimit: 1000, Watermark: wm})
	testkit.Eventually(t, 10*time.Second, "failures recorded and relay not ready", func() bool {
		return count(t, db, "attempts >= 2 AND last_error IS NOT NULL AND published_at IS NULL") == 10 && !wm.Status().Ready()
	})
	srv.Restart()
	testkit.Eventually(t, 15*time.Second, "all published after Redis came back", func() bool {
		return count(t, db, "published_at IS NULL") == 0 && len(streamEvents(t, rdb, "events:{wallet}")) == 10
	})
	testkit.Eventually(t, 5*time.Second, "ready again", func() bool { return rr.r.Watermark().Status().Ready() })
}

func TestRelayFailsLoudlyPastTheLimit(t *testing.T) {
	db := migrated(t)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog()})
	writeEvents(t, db, w, "x", 1, 3)
	r, err := outbox.NewRelay(outbox.RelayConfig{Pool: db.Pool, Client: rdb, FailureLimit: 3, PollInterval: 10 * time.Millisecond,
		Retry: backoff.Exponential{Initial: time.Millisecond, Max: time.Millisecond}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Serve(ctx); !errors.Is(err, outbox.ErrRelayFailing) {
		t.Fatalf("Serve = %v, want ErrRelayFailing", err)
	}
	if count(t, db, "published_at IS NULL") != 1 {
		t.Fatal("the row must be kept")
	}
}

func TestRelayPrunesPublishedRows(t *testing.T) {
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	writeEvents(t, db, w, "old", 25, 3)
	writeEvents(t, db, w, "new", 5, 3)
	if _, err := db.Pool.Exec(ctx, `UPDATE headway_outbox SET published_at = now() - interval '10 days' WHERE event_id LIKE 'old-%'`); err != nil {
		t.Fatal(err)
	}
	runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, PruneBatch: 10, PruneInterval: 50 * time.Millisecond,
		PollInterval: 50 * time.Millisecond})
	testkit.Eventually(t, 10*time.Second, "old published rows pruned, new ones published and kept", func() bool {
		return count(t, db, "event_id LIKE 'old-%'") == 0 && count(t, db, "event_id LIKE 'new-%' AND published_at IS NOT NULL") == 5
	})
}

// TestRelayRecoversFromTerminatedConnections kills the relay's PostgreSQL
// backends mid-run, several times: every row is still published, at
// least once each (a commit lost after the append republishes its rows).
func TestRelayRecoversFromTerminatedConnections(t *testing.T) {
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	cfg := db.Pool.Config().Copy()
	app := "relay-" + db.Schema
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	for i := range 4 {
		writeEvents(t, db, w, fmt.Sprintf("k%d", i), 250, 3)
	}
	runRelay(t, outbox.RelayConfig{Pool: pool, Client: rdb, BatchSize: 20, PollInterval: 20 * time.Millisecond,
		FailureLimit: 1000})
	key := prefix + "events:{wallet}"
	kills := 0
	for kills < 3 {
		published := count(t, db, "published_at IS NOT NULL")
		if published >= 1000 {
			break
		}
		if published > kills*250 {
			var n int
			if err := db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name = $1`, app).Scan(&n); err != nil {
				t.Fatal(err)
			}
			kills++
			t.Logf("terminated %d relay backends at %d published", n, published)
		}
		time.Sleep(5 * time.Millisecond)
	}
	testkit.Eventually(t, 20*time.Second, "every row published", func() bool { return count(t, db, "published_at IS NULL") == 0 })
	seen := map[string]bool{}
	for _, e := range streamEvents(t, rdb, key) {
		seen[e.EventID] = true
	}
	if len(seen) != 1000 {
		t.Fatalf("%d distinct events on the stream, want 1000", len(seen))
	}
}

// TestRelayBackoffAfterManyAttempts: a row that can never be appended (its
// stream key holds a string) keeps failing with a capped backoff, however
// many attempts it has, and never blocks the rows behind it.
func TestRelayBackoffAfterManyAttempts(t *testing.T) {
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	writeEvents(t, db, w, "poison", 1, 3)
	if err := rdb.Set(ctx, prefix+"events:{wallet}", "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "UPDATE headway_outbox SET attempts = 1000"); err != nil {
		t.Fatal(err)
	}
	w2, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix + "ok:"})
	writeEvents(t, db, w2, "fine", 5, 3)
	runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, PollInterval: 20 * time.Millisecond,
		Retry: backoff.Exponential{Initial: time.Second, Max: time.Minute}, FailureLimit: 1000})
	testkit.Eventually(t, 10*time.Second, "the poison row's failure recorded with a capped backoff; the others published", func() bool {
		var attempts int
		var lastErr string
		var wait float64
		err := db.Pool.QueryRow(ctx, `SELECT attempts, coalesce(last_error, ''),
			extract(epoch FROM next_attempt_at - now())::float8 FROM headway_outbox WHERE event_id = 'poison-0'`).
			Scan(&attempts, &lastErr, &wait)
		return err == nil && attempts == 1001 && wait > 0 && wait <= 61 &&
			count(t, db, "event_id LIKE 'fine-%' AND published_at IS NOT NULL") == 5
	})
}
