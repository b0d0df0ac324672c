package sqliteoutbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/outbox/sqliteoutbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type fixture struct {
	db    *sql.DB
	store *sqliteoutbox.Store
	w     *sqliteoutbox.Writer
}

func newFixture(t *testing.T, prefix string, cfg sqliteoutbox.Config) *fixture {
	t.Helper()
	db, err := sqliteoutbox.Open(filepath.Join(t.TempDir(), "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	cfg.DB = db
	store, err := sqliteoutbox.New(cfg)
	if err == nil {
		err = store.Migrate(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	ow, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, store: store, w: sqliteoutbox.NewWriter(ow, store)}
}

func env(id string, agg string, brand event.BrandID) event.Envelope {
	b, _ := json.Marshal(map[string]string{"id": id})
	return event.Envelope{EventID: id, EventType: platform.BetSettledConfirmed, SchemaVersion: 2, BrandID: brand,
		OccurredAt: time.Now().UTC(), AggregateID: agg, Payload: b}
}

// write writes n events of brand in one transaction, as a producer does.
func (f *fixture) write(t *testing.T, idPrefix string, n int, brand event.BrandID) []string {
	t.Helper()
	ctx := context.Background()
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	var envs []event.Envelope
	for i := range n {
		id := fmt.Sprintf("%s-%d", idPrefix, i)
		ids = append(ids, id)
		envs = append(envs, env(id, fmt.Sprintf("bet-%d", i%7), brand))
	}
	if err := f.w.Write(ctx, tx, brand, envs...); err != nil {
		_ = tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	f.store.Notify()
	return ids
}

func (f *fixture) count(t *testing.T, where string) int {
	t.Helper()
	var n int
	if err := f.db.QueryRow("SELECT count(*) FROM headway_outbox WHERE " + where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func runRelay(t *testing.T, cfg outbox.RelayConfig) (*outbox.Relay, chan error) {
	t.Helper()
	cfg.Logger = quiet()
	r, err := outbox.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("relay did not stop")
		}
	})
	return r, done
}

func streamIDs(t *testing.T, rdb redis.UniversalClient, key string) []string {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(msgs))
	for i, m := range msgs {
		e, err := event.Decode(m.Values)
		if err != nil {
			t.Fatalf("entry %s does not decode: %v", m.ID, err)
		}
		out[i] = e.EventID
	}
	return out
}

func TestRelayOnSQLiteEndToEnd(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	f := newFixture(t, prefix, sqliteoutbox.Config{})
	ids := f.write(t, "e", 120, 3)
	r, _ := runRelay(t, outbox.RelayConfig{Store: f.store, Client: rdb, BatchSize: 50, PollInterval: time.Minute,
		InfoInterval: 20 * time.Millisecond})
	key := prefix + "events:{wallet}"
	testkit.Eventually(t, 10*time.Second, "120 events on the stream", func() bool { return len(streamIDs(t, rdb, key)) == 120 })
	got := streamIDs(t, rdb, key)
	for i := range got {
		if got[i] != ids[i] {
			t.Fatalf("entry %d is %s; want %s (id order)", i, got[i], ids[i])
		}
	}
	testkit.Eventually(t, 5*time.Second, "rows published and backlog zero", func() bool {
		snap := r.Watermark().Snapshot()
		n, known := snap.Backlog, snap.BacklogKnown
		return f.count(t, "published_at IS NULL") == 0 && known && n == 0
	})
	if pos := r.Watermark().Snapshot().Position; pos != "120" {
		t.Fatalf("position = %q, want the last published id 120", pos)
	}
}

func TestSQLiteNotifyWakesRelay(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	f := newFixture(t, prefix, sqliteoutbox.Config{})
	// A minute's wait needs a liveness window above it (NewRelay checks).
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "relay", LivenessWindow: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := runRelay(t, outbox.RelayConfig{Store: f.store, Client: rdb, PollInterval: time.Minute, InfoInterval: time.Minute, Watermark: wm})
	testkit.Eventually(t, 5*time.Second, "relay waiting", func() bool { return !r.Watermark().Snapshot().LastHeartbeat.IsZero() })
	// The poll and info intervals are a minute: only the notification can
	// deliver these in time.
	key := prefix + "events:{wallet}"
	for i := range 3 {
		f.write(t, fmt.Sprintf("n%d", i), 1, 3)
		testkit.Eventually(t, 5*time.Second, "the notified row published", func() bool { return len(streamIDs(t, rdb, key)) == i+1 })
	}
}

func TestSQLiteWriterRefusesAndDatabaseEnforcesBrand(t *testing.T) {
	f := newFixture(t, "", sqliteoutbox.Config{})
	ctx := context.Background()
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := f.w.Write(ctx, tx, 4, env("m", "bet-1", 3)); !errors.Is(err, brandguard.ErrOwnerBrandMismatch) {
		t.Fatalf("mismatched owner brand: %v, want ErrOwnerBrandMismatch", err)
	}
	dep := env("d", "bet-1", 3)
	dep.EventType = platform.BetAuthorized // reserved on its stream, not emitted
	if err := f.w.Write(ctx, tx, 3, dep); !errors.Is(err, outbox.ErrNotEmitted) {
		t.Fatalf("reserved type: %v, want ErrNotEmitted", err)
	}
	legacy := env("v1", "bet-1", 3)
	legacy.SchemaVersion = 1
	if err := f.w.Write(ctx, tx, 3, env("ok", "bet-1", 3), legacy); !errors.Is(err, outbox.ErrInvalidEvent) {
		t.Fatalf("legacy in a batch: %v, want ErrInvalidEvent", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, "1=1"); n != 0 {
		t.Fatalf("%d rows written; a refused batch must write none", n)
	}
	// A writer that bypasses the library is stopped by the database.
	_, err = f.db.Exec(`INSERT INTO headway_outbox (event_id, stream, event_type, schema_version, brand_id, owner_brand_id,
		aggregate_id, occurred_at, payload, created_at) VALUES ('raw', 'events:{wallet}', 'BET_SETTLED_CONFIRMED', 2, 3, 4,
		'bet-1', 0, '{}', 0)`)
	if err == nil {
		t.Fatal("raw insert with envelope brand 3 and owner brand 4 was accepted")
	}
	_, err = f.db.Exec(`INSERT INTO headway_outbox (event_id, stream, event_type, schema_version, brand_id, owner_brand_id,
		aggregate_id, occurred_at, payload, created_at) VALUES ('raw2', 'events:{wallet}', 'BET_SETTLED_CONFIRMED', 2, 3, 3,
		'bet-1', 0, 'not json', 0)`)
	if err == nil {
		t.Fatal("raw insert with a payload that is not JSON was accepted")
	}
}

func TestSQLiteKeepsRowsWhileRedisIsDown(t *testing.T) {
	srv := redistest.StartServer(t, redistest.ServerOptions{AppendOnly: true})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	f := newFixture(t, "", sqliteoutbox.Config{})
	wm, _ := readiness.NewWatermark(readiness.WatermarkConfig{Name: "relay", FailureBound: 2})
	srv.Stop()
	f.write(t, "down", 10, 3)
	r, _ := runRelay(t, outbox.RelayConfig{Store: f.store, Client: rdb, PollInterval: 50 * time.Millisecond,
		Retry: backoff.Exponential{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}, FailureLimit: 1000, Watermark: wm})
	testkit.Eventually(t, 10*time.Second, "failures recorded and relay not ready", func() bool {
		return f.count(t, "attempts >= 2 AND last_error IS NOT NULL AND published_at IS NULL") == 10 && !wm.Status().Ready()
	})
	srv.Restart()
	testkit.Eventually(t, 15*time.Second, "all published after Redis came back", func() bool {
		return f.count(t, "published_at IS NULL") == 0 && len(streamIDs(t, rdb, "events:{wallet}")) == 10
	})
	testkit.Eventually(t, 5*time.Second, "ready again", func() bool { return r.Watermark().Status().Ready() })
}

func TestTwoRelaysOnOneFilePublishEveryRowOnce(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	f := newFixture(t, prefix, sqliteoutbox.Config{})
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.write(t, fmt.Sprintf("p%d", p), 100, 3)
		}()
	}
	for range 2 {
		runRelay(t, outbox.RelayConfig{Store: f.store, Client: rdb, BatchSize: 30, PollInterval: 20 * time.Millisecond})
	}
	wg.Wait()
	key := prefix + "events:{wallet}"
	testkit.Eventually(t, 15*time.Second, "400 rows published", func() bool { return f.count(t, "published_at IS NULL") == 0 })
	seen := map[string]int{}
	for _, id := range streamIDs(t, rdb, key) {
		seen[id]++
	}
	if len(seen) != 400 {
		t.Fatalf("%d distinct events on the stream, want 400", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s appended %d times", id, n)
		}
	}
}

func TestSQLitePruneAndMigrateTwice(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	clock := testkit.NewClock()
	f := newFixture(t, prefix, sqliteoutbox.Config{Now: clock.Now})
	if err := f.store.Migrate(context.Background()); err != nil {
		t.Fatalf("second migration: %v", err)
	}
	f.write(t, "old", 25, 3)
	runRelay(t, outbox.RelayConfig{Store: f.store, Client: rdb, PollInterval: 20 * time.Millisecond, Retention: -1})
	testkit.Eventually(t, 10*time.Second, "published", func() bool { return f.count(t, "published_at IS NULL") == 0 })
	ctx := context.Background()
	if n, err := f.store.Prune(ctx, time.Hour, 10); err != nil || n != 0 {
		t.Fatalf("Prune of fresh rows = %d, %v; want 0", n, err)
	}
	clock.Advance(2 * time.Hour)
	n1, err := f.store.Prune(ctx, time.Hour, 10)
	if err != nil || n1 != 10 {
		t.Fatalf("Prune = %d, %v; want a batch of 10", n1, err)
	}
	n2, _ := f.store.Prune(ctx, time.Hour, 100)
	if n2 != 15 || f.count(t, "1=1") != 0 {
		t.Fatalf("second Prune = %d, left %d; want 15 and none", n2, f.count(t, "1=1"))
	}
	b, err := f.store.Backlog(ctx)
	if err != nil || b != (outbox.Backlog{}) {
		t.Fatalf("Backlog = %+v, %v", b, err)
	}
}

// TestHungRedisNeverBlocksBusinessWrites: the relay's claim must not hold
// SQLite's write lock while it waits on Redis. With Redis frozen (SIGSTOP)
// and the relay stuck in its append, producer transactions still commit
// at once; after Redis is back every event is on the stream.
func TestHungRedisNeverBlocksBusinessWrites(t *testing.T) {
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := srv.Client()
	f := newFixture(t, "", sqliteoutbox.Config{LeaseTTL: 2 * time.Second})
	r, _ := runRelay(t, outbox.RelayConfig{Store: f.store, Client: rdb, PollInterval: 20 * time.Millisecond,
		Retry: backoff.Exponential{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}, FailureLimit: 1000})
	f.write(t, "before", 5, 3)
	testkit.Eventually(t, 10*time.Second, "relay running", func() bool { return f.count(t, "published_at IS NULL") == 0 })
	srv.Pause()
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			srv.Resume()
		}
	})
	f.write(t, "stuck", 10, 3) // the relay claims these and hangs on Redis
	testkit.Eventually(t, 5*time.Second, "a claim in flight", func() bool { return f.count(t, "lease_token IS NOT NULL") > 0 })
	for i := range 5 {
		start := time.Now()
		f.write(t, fmt.Sprintf("during-%d", i), 1, 3)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("a business transaction took %v while Redis hung; the claim holds the write lock", d)
		}
	}
	srv.Resume()
	resumed = true
	testkit.Eventually(t, 30*time.Second, "everything published once Redis is back", func() bool {
		return f.count(t, "published_at IS NULL") == 0
	})
	seen := map[string]bool{}
	for _, id := range streamIDs(t, rdb, "events:{wallet}") {
		seen[id] = true
	}
	if len(seen) != 20 {
		t.Fatalf("%d distinct events on the stream, want 20", len(seen))
	}
	_ = r
}

// TestPlainDSNStillPublishesOnce: a database opened without Open's
// settings (no _txlock=immediate), as an application may pass its own
// handle, still never has two relays publish one row.
func TestPlainDSNStillPublishesOnce(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "plain.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store, err := sqliteoutbox.New(sqliteoutbox.Config{DB: db})
	if err == nil {
		err = store.Migrate(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	ow, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix, Logger: quiet()})
	f := &fixture{db: db, store: store, w: sqliteoutbox.NewWriter(ow, store)}
	var wg sync.WaitGroup
	for p := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.writeRetry(t, fmt.Sprintf("p%d", p), 100)
		}()
	}
	for range 2 {
		runRelay(t, outbox.RelayConfig{Store: store, Client: rdb, BatchSize: 25, PollInterval: 10 * time.Millisecond})
	}
	wg.Wait()
	testkit.Eventually(t, 15*time.Second, "300 rows published", func() bool { return f.count(t, "published_at IS NULL") == 0 })
	seen := map[string]int{}
	for _, id := range streamIDs(t, rdb, prefix+"events:{wallet}") {
		seen[id]++
	}
	if len(seen) != 300 {
		t.Fatalf("%d distinct events, want 300", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s appended %d times", id, n)
		}
	}
}

// writeRetry writes n events one per transaction, retrying a transaction
// that SQLite refused as busy (a plain DSN begins them deferred).
func (f *fixture) writeRetry(t *testing.T, idPrefix string, n int) {
	ctx := context.Background()
	for i := 0; i < n; {
		tx, err := f.db.BeginTx(ctx, nil)
		if err == nil {
			err = f.w.Write(ctx, tx, 3, env(fmt.Sprintf("%s-%d", idPrefix, i), "bet-1", 3))
			if err == nil {
				err = tx.Commit()
			} else {
				_ = tx.Rollback()
			}
		}
		if err != nil {
			if strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "locked") {
				continue
			}
			t.Error(err)
			return
		}
		f.store.Notify()
		i++
	}
}

// slowPipes delays every pipeline, so that a relay's claim of the next
// batch is open while the current batch is appended.
type slowPipes struct{ delay time.Duration }

func (h slowPipes) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h slowPipes) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h slowPipes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		time.Sleep(h.delay)
		return next(ctx, cmds)
	}
}

// TestSQLiteRelayClaimsAheadInOrder: with the next batch leased while the
// current one is appended, a relay stopped mid-way leaves no lease behind
// and no row published that is not on the stream; a second relay then
// finishes, and the first appearances on the stream are every row once,
// in id order.
func TestSQLiteRelayClaimsAheadInOrder(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	rdb.AddHook(slowPipes{delay: 20 * time.Millisecond})
	f := newFixture(t, prefix, sqliteoutbox.Config{})
	var ids []string
	for i := range 6 {
		ids = append(ids, f.write(t, fmt.Sprintf("t%d", i), 50, 3)...)
	}
	key := prefix + "events:{wallet}"
	r, err := outbox.NewRelay(outbox.RelayConfig{Store: f.store, Client: rdb, BatchSize: 10, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	maxLeased := 0
	testkit.Eventually(t, 10*time.Second, "100 rows published", func() bool {
		maxLeased = max(maxLeased, f.count(t, "lease_token IS NOT NULL"))
		return f.count(t, "published_at IS NOT NULL") >= 100
	})
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if maxLeased <= 10 {
		t.Fatalf("at most %d rows leased at once; the next batch of 10 was never claimed during an append", maxLeased)
	}
	if n := f.count(t, "lease_token IS NOT NULL"); n != 0 {
		t.Fatalf("%d rows still leased after Serve returned", n)
	}
	onStream := map[string]bool{}
	for _, id := range streamIDs(t, rdb, key) {
		onStream[id] = true
	}
	rows, err := f.db.Query("SELECT event_id FROM headway_outbox WHERE published_at IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		if !onStream[id] {
			t.Fatalf("%s is marked published but not on the stream", id)
		}
	}
	_ = rows.Close()

	runRelay(t, outbox.RelayConfig{Store: f.store, Client: rdb, BatchSize: 10, PollInterval: 20 * time.Millisecond})
	testkit.Eventually(t, 20*time.Second, "all published", func() bool { return f.count(t, "published_at IS NULL") == 0 })
	var first []string
	seen := map[string]bool{}
	for _, id := range streamIDs(t, rdb, key) {
		if !seen[id] {
			seen[id] = true
			first = append(first, id)
		}
	}
	if !slices.Equal(first, ids) {
		t.Fatalf("first appearances on the stream:\n%v\nwant every row once in id order:\n%v", first, ids)
	}
}
