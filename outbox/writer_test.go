package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/outbox/outboxtest"
	"github.com/headwaylabs/headway/platform"
)

func migrated(t *testing.T) *pgtest.DB {
	t.Helper()
	db := pgtest.New(t)
	outboxtest.MigratedPostgres(t, db.Pool)
	return db
}

func env(id string, typ event.Type, agg string, brand event.BrandID) event.Envelope {
	b, _ := json.Marshal(map[string]string{"id": id})
	return event.Envelope{EventID: id, EventType: typ, SchemaVersion: 2, BrandID: brand,
		OccurredAt: time.Now().UTC().Truncate(time.Microsecond), AggregateID: agg, Payload: b}
}

func count(t *testing.T, db *pgtest.DB, where string) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM headway_outbox WHERE "+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	db := pgtest.New(t)
	store, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: db.Pool})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = store.Migrate(context.Background()) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	var n, distinct int
	_ = db.Pool.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT version) FROM headway_outbox_migrations").Scan(&n, &distinct)
	if n != 2 || distinct != 2 {
		t.Fatalf("%d migrations recorded (%d distinct); want each of the 2 once", n, distinct)
	}
	if _, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: db.Pool, Table: "Bad-Name"}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Fatalf("bad table name: %v", err)
	}
}

func TestWriteInCallerTransaction(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog()})
	if err != nil {
		t.Fatal(err)
	}
	listener, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Release()
	if _, err := listener.Exec(ctx, "LISTEN headway_outbox"); err != nil {
		t.Fatal(err)
	}

	e := env("w-1", platform.BetSettledConfirmed, "bet-1", 3)
	e.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	// Rolled back: nothing stays.
	_ = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if err := w.Write(ctx, tx, 3, e); err != nil {
			t.Fatal(err)
		}
		return errors.New("business failure")
	})
	if n := count(t, db, "true"); n != 0 {
		t.Fatalf("%d rows after rollback", n)
	}
	if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return w.Write(ctx, tx, 3, e) }); err != nil {
		t.Fatal(err)
	}
	var stream, typ, payload, tp string
	var brand, owner int64
	if err := db.Pool.QueryRow(ctx, `SELECT stream, event_type, brand_id, owner_brand_id, payload::text, traceparent
		FROM headway_outbox WHERE event_id = 'w-1'`).Scan(&stream, &typ, &brand, &owner, &payload, &tp); err != nil {
		t.Fatal(err)
	}
	if stream != "events:{wallet}" || typ != "BET_SETTLED_CONFIRMED" || brand != 3 || owner != 3 ||
		payload != string(e.Payload) || tp != e.TraceParent {
		t.Fatalf("row = %s %s %d %d %s %s", stream, typ, brand, owner, payload, tp)
	}
	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := listener.Conn().WaitForNotification(nctx)
	if err != nil || n.Channel != "headway_outbox" {
		t.Fatalf("no notification after commit: %v %v", n, err)
	}
}

// TestWriterFillsDefaults: a zero SchemaVersion is written as the current
// version and an empty EventID as a new time-ordered ID, set in the
// caller's slice; an explicit legacy version is still refused.
func TestWriterFillsDefaults(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog()})
	if err != nil {
		t.Fatal(err)
	}
	e := env("", platform.BetSettledConfirmed, "bet-1", 3)
	e.SchemaVersion = 0
	envs := []event.Envelope{e, e}
	if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return w.WriteBatch(ctx, tx, 3, envs) }); err != nil {
		t.Fatal(err)
	}
	uuidV7 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, got := range envs {
		if !uuidV7.MatchString(got.EventID) || got.SchemaVersion != event.CurrentSchemaVersion {
			t.Errorf("filled envelope: event_id %q, schema_version %d", got.EventID, got.SchemaVersion)
		}
	}
	if envs[0].EventID == envs[1].EventID {
		t.Errorf("two events got one ID %q", envs[0].EventID)
	}
	if n := count(t, db, fmt.Sprintf("schema_version = %d AND event_id IN ('%s', '%s')",
		event.CurrentSchemaVersion, envs[0].EventID, envs[1].EventID)); n != 2 {
		t.Errorf("%d rows with the filled ID and the current version, want 2", n)
	}
	legacy := env("legacy-1", platform.BetSettledConfirmed, "bet-1", 3)
	legacy.SchemaVersion = 1
	if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return w.Write(ctx, tx, 3, legacy) }); !errors.Is(err, outbox.ErrInvalidEvent) {
		t.Errorf("schema_version 1 written: %v, want ErrInvalidEvent", err)
	}
}

func TestWriteBatchUsesOneTransaction(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: "x:"})
	var envs []event.Envelope
	for i := range 200 {
		envs = append(envs, env(fmt.Sprintf("b-%d", i), platform.DepositApproved, fmt.Sprintf("dep-%d", i), 5))
	}
	if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return w.WriteBatch(ctx, tx, 5, envs) }); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "stream = 'x:events:{wallet}' AND published_at IS NULL"); n != 200 {
		t.Fatalf("%d rows, want 200", n)
	}
	// One bad event refuses the whole batch.
	bad := append([]event.Envelope{env("c-1", platform.DepositApproved, "d", 5)}, env("c-2", platform.DepositApproved, "d", 6))
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return w.WriteBatch(ctx, tx, 5, bad) })
	if !errors.Is(err, brandguard.ErrOwnerBrandMismatch) || count(t, db, "event_id LIKE 'c-%'") != 0 {
		t.Fatalf("batch with a mismatch: %v", err)
	}
}

func TestWriterRefuses(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), Registerer: reg})
	write := func(owner event.BrandID, e event.Envelope) error {
		return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return w.Write(ctx, tx, owner, e) })
	}
	if err := w.Check(); err != nil {
		t.Fatalf("Check before any violation: %v", err)
	}
	err := write(4, env("m-1", platform.BetSettledConfirmed, "bet-1", 3))
	var me *brandguard.MismatchError
	if !errors.Is(err, brandguard.ErrOwnerBrandMismatch) || !errors.As(err, &me) || me.Other != 4 {
		t.Fatalf("brand mismatch: %v", err)
	}
	if err := w.Check(); err == nil || !strings.Contains(err.Error(), "producer brand violation") {
		t.Fatalf("a violation must surface in Check: %v", err)
	}
	if err := write(3, env("r-1", platform.BetAuthorized, "bet-1", 3)); !errors.Is(err, outbox.ErrNotEmitted) ||
		!strings.Contains(err.Error(), "reserved") {
		t.Fatalf("reserved type: %v", err)
	}
	if err := write(3, env("r-2", platform.BrandAwarePublishingBegins, "x", 3)); !errors.Is(err, outbox.ErrNotEmitted) {
		t.Fatalf("retired type: %v", err)
	}
	legacy := env("l-1", platform.BetSettledConfirmed, "bet-1", 3)
	legacy.SchemaVersion = 1
	if err := write(3, legacy); !errors.Is(err, outbox.ErrInvalidEvent) {
		t.Fatalf("schema_version 1: %v", err)
	}
	// Valid, but over the codec's size limit: the relay could never
	// append it, so the writer refuses it.
	huge := env("h-1", platform.BetSettledConfirmed, "bet-1", 3)
	huge.Payload = []byte(`"` + strings.Repeat("x", event.DefaultMaxEntryBytes) + `"`)
	if err := huge.Validate(); err != nil {
		t.Fatalf("the oversized event must be valid but for its size: %v", err)
	}
	err = write(3, huge)
	if !errors.Is(err, outbox.ErrEventTooLarge) || !errors.Is(err, outbox.ErrInvalidEvent) || !errors.Is(err, event.ErrEntryTooLarge) {
		t.Fatalf("event over the entry size limit: %v", err)
	}
	if n := count(t, db, "true"); n != 0 {
		t.Fatalf("%d rows written by refused writes", n)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP headway_outbox_write_refused_total Outbox writes refused, by reason (brand_mismatch, not_emitted, invalid_event, too_large).
# TYPE headway_outbox_write_refused_total counter
headway_outbox_write_refused_total{reason="brand_mismatch"} 1
headway_outbox_write_refused_total{reason="invalid_event"} 1
headway_outbox_write_refused_total{reason="not_emitted"} 2
headway_outbox_write_refused_total{reason="too_large"} 1
`), "headway_outbox_write_refused_total"); err != nil {
		t.Error(err)
	}
	if v := testutil.ToFloat64(mustCounter(t, reg, "headway_brandguard_producer_violations_total")); v != 1 {
		t.Errorf("producer violations = %v", v)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, _ := reg.Gather()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sum"})
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				c.Add(m.GetCounter().GetValue())
			}
		}
	}
	return c
}

// TestDatabaseEnforcesOwnerBrand: writers that bypass the library are held
// by the CHECK and by the composite foreign key pattern on an owner table.
func TestDatabaseEnforcesOwnerBrand(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	mustExec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	mustExec(`CREATE TABLE wallet_bets (id text PRIMARY KEY, brand_id bigint NOT NULL, UNIQUE (id, brand_id))`)
	mustExec(`ALTER TABLE headway_outbox ADD CONSTRAINT outbox_owner_brand
		FOREIGN KEY (aggregate_id, owner_brand_id) REFERENCES wallet_bets (id, brand_id)`)
	mustExec(`INSERT INTO wallet_bets VALUES ('bet-1', 3)`)
	insert := func(id string, brand, owner int64) error {
		_, err := db.Pool.Exec(ctx, `INSERT INTO headway_outbox (event_id, stream, event_type, schema_version,
			brand_id, owner_brand_id, aggregate_id, occurred_at, payload)
			VALUES ($1, 'events:{wallet}', 'BET_SETTLED_CONFIRMED', 2, $2, $3, 'bet-1', now(), '{}')`, id, brand, owner)
		return err
	}
	var pgErr *pgconn.PgError
	if err := insert("raw-1", 4, 3); !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Fatalf("envelope brand 4 for owner brand 3: %v, want a check violation", err)
	}
	if err := insert("raw-2", 4, 4); !errors.As(err, &pgErr) || pgErr.Code != "23503" {
		t.Fatalf("claiming owner brand 4 for a brand 3 bet: %v, want a foreign key violation", err)
	}
	if err := insert("raw-3", 3, 3); err != nil {
		t.Fatalf("matching brands refused: %v", err)
	}
	// The library's writer goes through the same constraint.
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog()})
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		return w.Write(ctx, tx, 5, env("w-5", platform.BetSettledConfirmed, "bet-1", 5)) // owner brand given wrong by the caller
	})
	if !errors.As(err, &pgErr) || pgErr.Code != "23503" {
		t.Fatalf("writer with a wrong owner brand: %v, want the foreign key to refuse it", err)
	}
}
