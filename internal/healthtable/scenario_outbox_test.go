package healthtable

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/faultproxy"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/outbox/outboxtest"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/supervisor"
)

func init() {
	scenarios["postgres-frozen"] = postgresFrozen
	scenarios["relay-failing"] = relayFailing
	scenarios["outbox-row-parked"] = outboxRowParked
}

// outboxDB returns a fresh schema with the outbox table.
func outboxDB(t *testing.T) *pgtest.DB {
	t.Helper()
	db := pgtest.New(t)
	outboxtest.MigratedPostgres(t, db.Pool)
	return db
}

// pgProxy returns a pool on db's schema whose connections go through
// a faultproxy in front of PostgreSQL.
func pgProxy(t *testing.T, db *pgtest.DB) (*pgxpool.Pool, *faultproxy.Proxy) {
	t.Helper()
	cfg := db.Pool.Config().Copy()
	p, err := faultproxy.Start(net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", uint16(p.Port())
	cfg.ConnConfig.Fallbacks = nil
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the proxy's Close, so it runs first; the tree has
	// stopped by then (serve registers its cleanup later still).
	t.Cleanup(pool.Close)
	return pool, p
}

// relayClient returns a client of the test's Redis (keys under its
// prefix) whose calls honour context deadlines, as the relay asks.
func relayClient(t *testing.T) (*redis.Client, string) {
	t.Helper()
	shared, prefix := redistest.Client(t)
	opts := *shared.Options()
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(&opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, prefix
}

// relayWatermark is the relay's loop, with a 500ms stall window and the
// other rules at their defaults.
func (s *stack) relayWatermark() *readiness.Watermark {
	return s.loop(readiness.WatermarkConfig{Name: "relay/" + outbox.DefaultTable, StallWindow: 500 * time.Millisecond})
}

// outboxRelay adds a relay of the default table with short intervals to the
// tree as "relay": it polls and counts its backlog every 50ms, bounds
// each call by 300ms, and retries a failed row after at most 10ms, so a
// row that failed is due again at the next cycle. FailureLimit is high:
// these rows are about the loop while it fails, not about the restarts
// after FailureLimit failed cycles (the supervisor's rows).
func (s *stack) outboxRelay(pool *pgxpool.Pool, rdb redis.UniversalClient, wm *readiness.Watermark) *outbox.Relay {
	s.t.Helper()
	r, err := outbox.NewRelay(outbox.RelayConfig{Pool: pool, Client: rdb, Watermark: wm,
		PollInterval: 50 * time.Millisecond, InfoInterval: 50 * time.Millisecond, OpTimeout: 300 * time.Millisecond,
		Retry: backoff.Exponential{Initial: time.Millisecond, Max: 10 * time.Millisecond}, FailureLimit: 1000,
		Registerer: s.reg, Logger: s.log})
	if err != nil {
		s.t.Fatal(err)
	}
	s.add("relay", r)
	return r
}

// writeOutbox writes n events through w in one transaction on db's own
// pool (never through a proxy).
func writeOutbox(t *testing.T, db *pgtest.DB, w *outbox.Writer, prefix string, n int) {
	t.Helper()
	envs := make([]event.Envelope, n)
	for i := range envs {
		envs[i] = envelope(prefix+strconv.Itoa(i), platform.BetSettledConfirmed, "bet-"+prefix+strconv.Itoa(i))
	}
	ctx := context.Background()
	if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return w.WriteBatch(ctx, tx, 3, envs) }); err != nil {
		t.Fatal(err)
	}
}

// insertRow inserts r as it is, without the Writer's checks, as an older
// version or a hand-written INSERT could.
func insertRow(t *testing.T, db *pgtest.DB, r outbox.Row) {
	t.Helper()
	e := &r.Envelope
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO headway_outbox (event_id, stream, event_type,
		schema_version, brand_id, owner_brand_id, aggregate_id, occurred_at, payload)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		e.EventID, r.Stream, string(e.EventType), e.SchemaVersion, int64(e.BrandID), int64(r.OwnerBrand),
		e.AggregateID, e.OccurredAt, string(e.Payload)); err != nil {
		t.Fatal(err)
	}
}

// metricSum returns the value of the metric name (a gauge or counter without
// variable labels, or the sum of its series), or -1 when it is missing.
func (s *stack) metricSum(name string) float64 {
	s.t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		sum := 0.0
		for _, m := range mf.GetMetric() {
			sum += value(m)
		}
		return sum
	}
	return -1
}

// relayIdle waits until the relay has counted an empty backlog: it has run
// at least one cycle, and published nothing.
func relayIdle(t *testing.T, wm *readiness.Watermark) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, "the relay idle", func() bool {
		snap := wm.Snapshot()
		n, known := snap.Backlog, snap.BacklogKnown
		return known && n == 0 && wm.Status().State == readiness.StateIdle
	})
}

func postgresFrozen(t *testing.T) observation {
	db := outboxDB(t)
	pool, proxy := pgProxy(t, db)
	defer proxy.Thaw() // for the tree's and the pool's cleanup
	rdb, prefix := relayClient(t)
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, supervisor.Config{})
	wm := s.relayWatermark()
	s.outboxRelay(pool, rdb, wm)
	s.serve()
	relayIdle(t, wm)
	// Nothing was ever published: the rows are written after the freeze,
	// straight to PostgreSQL.
	proxy.Freeze()
	writeOutbox(t, db, w, "e", 5)
	testkit.Eventually(t, 15*time.Second, "failing", func() bool { return wm.Status().State == readiness.StateFailing })
	return s.observe(subject{loop: wm})
}

func relayFailing(t *testing.T) observation {
	db := outboxDB(t)
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog()})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, supervisor.Config{})
	wm := s.relayWatermark()
	s.outboxRelay(db.Pool, rdb, wm)
	s.serve()
	relayIdle(t, wm)
	// Nothing was ever published: Redis goes before the rows come.
	srv.Stop()
	writeOutbox(t, db, w, "e", 5)
	testkit.Eventually(t, 10*time.Second, "failing", func() bool { return wm.Status().State == readiness.StateFailing })
	return s.observe(subject{loop: wm})
}

func outboxRowParked(t *testing.T) observation {
	db := outboxDB(t)
	rdb, prefix := relayClient(t)
	key := prefix + event.StreamKey(platform.StreamWallet)
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	insertRow(t, db, outboxtest.TooLargeRow(key, "too-large"))
	writeOutbox(t, db, w, "first-", 1)
	s := newStack(t, supervisor.Config{})
	wm := s.relayWatermark()
	s.outboxRelay(db.Pool, rdb, wm)
	s.serve()
	// Good rows keep coming, so the relay keeps progressing.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			writeOutbox(t, db, w, "e"+strconv.Itoa(i)+"-", 1)
			time.Sleep(20 * time.Millisecond) // the flow's pace, not a synchronisation
		}
	})
	defer func() { stop(); wg.Wait() }()
	testkit.Eventually(t, 10*time.Second, "the row parked, the others published, progressing", func() bool {
		n, err := rdb.XLen(context.Background(), key).Result()
		return err == nil && n > 5 && s.metricSum("headway_outbox_parked_rows") == 1 &&
			wm.Status().State == readiness.StateProgressing
	})
	return s.observe(subject{loop: wm})
}
