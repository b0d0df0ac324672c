package dedup_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/dedup/deduptest"
	"github.com/headwaylabs/headway/internal/pgtest"
)

// newPostgresStore returns a migrated store in a fresh schema of its own.
func newPostgresStore(t testing.TB, cfg dedup.PostgresConfig) (*dedup.PostgresStore, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	cfg.Pool = db.Pool
	s, err := dedup.NewPostgres(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return s, db
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func count(t *testing.T, db *pgtest.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func marks(t *testing.T, db *pgtest.DB, s *dedup.PostgresStore, k dedup.Key) int {
	t.Helper()
	return count(t, db, "SELECT count(*) FROM "+s.Table()+" WHERE scope = $1 AND event_id = $2", k.Scope, k.EventID)
}

func TestPostgresStoreConformance(t *testing.T) {
	t.Parallel()
	deduptest.Run(t, func(t *testing.T) dedup.Store {
		s, _ := newPostgresStore(t, dedup.PostgresConfig{})
		return s
	})
}

// TestPostgresExactlyOnceEffect: the handler's own writes through Tx commit
// with the mark or not at all.
func TestPostgresExactlyOnceEffect(t *testing.T) {
	t.Parallel()
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE orders (event_id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	k := dedup.Key{Scope: "billing", EventID: "e1"}
	runs := 0
	handler := func(fail error, panics bool) dedup.Func {
		return func(ctx context.Context) error {
			runs++
			tx, ok := dedup.Tx(ctx)
			if !ok {
				return errors.New("no inbox transaction in the handler's context")
			}
			if _, err := tx.Exec(ctx, "INSERT INTO orders (event_id) VALUES ($1)", k.EventID); err != nil {
				return err
			}
			if panics {
				panic("boom")
			}
			return fail
		}
	}
	rows := func() (orders, mark int) {
		return count(t, db, "SELECT count(*) FROM orders"), marks(t, db, s, k)
	}

	errAfterWrite := errors.New("failed after the write")
	if o, err := s.Process(ctx, k, handler(errAfterWrite, false)); o != dedup.Failed || !errors.Is(err, errAfterWrite) {
		t.Fatalf("failing handler: %v, %v; want Failed and its error", o, err)
	}
	if o, m := rows(); o != 0 || m != 0 {
		t.Fatalf("after a failure: %d business rows, %d marks; want 0, 0", o, m)
	}

	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the handler's panic", r)
			}
		}()
		_, _ = s.Process(ctx, k, handler(nil, true))
	}()
	if o, m := rows(); o != 0 || m != 0 {
		t.Fatalf("after a panic: %d business rows, %d marks; want 0, 0", o, m)
	}

	if o, err := s.Process(ctx, k, handler(nil, false)); o != dedup.Processed || err != nil {
		t.Fatalf("redelivery: %v, %v; want Processed", o, err)
	}
	if o, m := rows(); o != 1 || m != 1 {
		t.Fatalf("after success: %d business rows, %d marks; want 1, 1", o, m)
	}

	if o, err := s.Process(ctx, k, handler(nil, false)); o != dedup.Duplicate || err != nil {
		t.Fatalf("third delivery: %v, %v; want Duplicate", o, err)
	}
	if o, m := rows(); o != 1 || m != 1 {
		t.Fatalf("after the duplicate: %d business rows, %d marks; want 1, 1", o, m)
	}
	if runs != 3 {
		t.Fatalf("handler ran %d times, want 3 (fail, panic, success)", runs)
	}
}

// TestPostgresSecondCallWaitsForFirst: a Process for a key whose
// transaction is in flight blocks on the primary key, then runs the
// handler if the first rolled back and reports Duplicate if it committed.
func TestPostgresSecondCallWaitsForFirst(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		firstErr  error
		want      dedup.Outcome
		secondRan bool
	}{
		{"FirstFails", errors.New("first failed"), dedup.Processed, true},
		{"FirstSucceeds", nil, dedup.Duplicate, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, db := newPostgresStore(t, dedup.PostgresConfig{})
			ctx := testCtx(t)
			k := dedup.Key{Scope: "g", EventID: "e1"}

			pid := make(chan uint32, 1)
			release := make(chan struct{})
			firstDone := make(chan error, 1)
			go func() {
				_, err := s.Process(ctx, k, func(ctx context.Context) error {
					tx, _ := dedup.Tx(ctx)
					pid <- tx.Conn().PgConn().PID()
					<-release
					return tc.firstErr
				})
				firstDone <- err
			}()
			firstPID := <-pid

			var secondRan atomic.Bool
			type result struct {
				o   dedup.Outcome
				err error
			}
			second := make(chan result, 1)
			go func() {
				o, err := s.Process(ctx, k, func(context.Context) error { secondRan.Store(true); return nil })
				second <- result{o, err}
			}()

			// Poll until the second INSERT waits for the first's lock.
			deadline := time.Now().Add(10 * time.Second)
			for count(t, db, "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", int(firstPID)) == 0 {
				if time.Now().After(deadline) {
					close(release)
					t.Fatal("the second Process never waited for the first's transaction")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if secondRan.Load() {
				t.Fatal("the second handler ran while the first held the key")
			}
			close(release)
			if err := <-firstDone; !errors.Is(err, tc.firstErr) {
				t.Fatalf("first: %v, want %v", err, tc.firstErr)
			}
			r := <-second
			if r.o != tc.want || r.err != nil || secondRan.Load() != tc.secondRan {
				t.Fatalf("second: %v, %v, ran=%v; want %v, nil, ran=%v", r.o, r.err, secondRan.Load(), tc.want, tc.secondRan)
			}
			if m := marks(t, db, s, k); m != 1 {
				t.Fatalf("%d marks, want 1", m)
			}
		})
	}
}

func TestPostgresMigrateTwiceAndConcurrently(t *testing.T) {
	t.Parallel()
	for range 4 {
		db := pgtest.New(t)
		ctx := testCtx(t)
		a, _ := dedup.NewPostgres(dedup.PostgresConfig{Pool: db.Pool})
		b, _ := dedup.NewPostgres(dedup.PostgresConfig{Pool: db.Pool})
		start := make(chan struct{})
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, s := range []*dedup.PostgresStore{a, b} {
			wg.Go(func() {
				<-start
				errs[i] = s.Migrate(ctx)
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
		if err := a.Migrate(ctx); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		if n := count(t, db, "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'headway_inbox'", db.Schema); n != 2 {
			t.Fatalf("%d indexes on the inbox, want 2 (primary key, processed_at)", n)
		}
	}
}

func TestPostgresConfigTable(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 63)
	for _, tc := range []struct {
		table string
		valid bool
	}{
		{"", true},
		{"inbox", true},
		{"_inbox_2", true},
		{"Order", true}, // a reserved word, folded to lower case and quoted
		{"SCHEMA.inbox", true},
		{long, true},
		{long + "x", false},
		{"a.b.c", false},
		{"1inbox", false},
		{"in-box", false},
		{"inbox;DROP TABLE x", false},
		{`"inbox"`, false},
		{" inbox", false},
		{"inbox.", false},
		{".inbox", false},
		{"inbøx", false},
	} {
		_, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: &pgxpool.Pool{}, Table: tc.table})
		if (err == nil) != tc.valid {
			t.Errorf("Table %q: %v; valid=%v", tc.table, err, tc.valid)
		}
	}
	if _, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: nil}); err == nil {
		t.Error("nil pool accepted")
	}
}

// TestPostgresTableNames: a schema-qualified, reserved or maximal name
// works end to end.
func TestPostgresTableNames(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE SCHEMA "+db.Schema+"_q"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Pool.Exec(context.Background(), "DROP SCHEMA "+db.Schema+"_q CASCADE") })
	for _, tc := range []struct{ table, schema, name string }{
		{strings.ToUpper(db.Schema) + "_Q.Inbox", db.Schema + "_q", "inbox"},
		{"order", db.Schema, "order"},
		{strings.Repeat("y", 63), db.Schema, strings.Repeat("y", 63)},
	} {
		s, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: db.Pool, Table: tc.table})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("Table %q: %v", tc.table, err)
			}
		}
		if o, err := s.Process(ctx, dedup.Key{Scope: "g", EventID: "e"}, func(context.Context) error { return nil }); o != dedup.Processed || err != nil {
			t.Fatalf("Table %q: %v, %v", tc.table, o, err)
		}
		if n := count(t, db, "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = $2", tc.schema, tc.name); n != 2 {
			t.Fatalf("Table %q: %d indexes on %s.%s, want 2", tc.table, n, tc.schema, tc.name)
		}
	}
}

// TestPostgresTx: the transaction is there only inside a handler, and the
// handler cannot end it.
func TestPostgresTx(t *testing.T) {
	t.Parallel()
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, ok := dedup.Tx(ctx); ok {
		t.Fatal("Tx outside a handler")
	}
	k := dedup.Key{Scope: "g", EventID: "e1"}
	o, err := s.Process(ctx, k, func(ctx context.Context) error {
		tx, ok := dedup.Tx(ctx)
		if !ok {
			return errors.New("no Tx")
		}
		if tx.Commit(ctx) == nil || tx.Rollback(ctx) == nil {
			return errors.New("the handler ended the inbox transaction")
		}
		// Begin opens a savepoint: a nested failure rolls back only it.
		if err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			_, err := sp.Exec(ctx, "CREATE TABLE scratch (id int)")
			if err != nil {
				return err
			}
			return errors.New("undo the savepoint")
		}); err == nil {
			return errors.New("savepoint error lost")
		}
		return nil
	})
	if o != dedup.Processed || err != nil {
		t.Fatalf("%v, %v", o, err)
	}
	if m := marks(t, db, s, k); m != 1 {
		t.Fatalf("%d marks after a refused Commit/Rollback and a savepoint, want 1", m)
	}
	if n := count(t, db, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'scratch'", db.Schema); n != 0 {
		t.Fatal("the rolled-back savepoint's table exists")
	}
}

// deleteCounter counts the DELETE statements sent on a pool.
type deleteCounter struct{ n atomic.Int32 }

func (c *deleteCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(d.SQL, "DELETE") {
		c.n.Add(1)
	}
	return ctx
}

func (*deleteCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestPostgresPrune(t *testing.T) {
	t.Parallel()
	_, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	deletes := &deleteCounter{}
	cfg.ConnConfig.Tracer = deletes
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := db.Pool.Exec(ctx, `INSERT INTO headway_inbox (scope, event_id, processed_at)
		SELECT 'g', 'old-' || i, now() - interval '2 hours' FROM generate_series(1, 25) i`); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"new-1", "new-2", "new-3"} {
		if o, err := s.Process(ctx, dedup.Key{Scope: "g", EventID: id}, func(context.Context) error { return nil }); o != dedup.Processed || err != nil {
			t.Fatal(o, err)
		}
	}

	n, err := s.Prune(ctx, time.Hour, 10)
	if n != 25 || err != nil {
		t.Fatalf("Prune: %d, %v; want 25, nil", n, err)
	}
	if d := deletes.n.Load(); d != 3 {
		t.Fatalf("%d DELETE statements, want 3 batches (10, 10, 5)", d)
	}
	if left := count(t, db, "SELECT count(*) FROM headway_inbox"); left != 3 {
		t.Fatalf("%d rows left, want the 3 new ones", left)
	}
	if n, err := s.Prune(ctx, time.Hour, 0); n != 0 || err != nil {
		t.Fatalf("second Prune: %d, %v; want 0, nil", n, err)
	}
	// A pruned event is forgotten: its redelivery runs again.
	if o, err := s.Process(ctx, dedup.Key{Scope: "g", EventID: "old-1"}, func(context.Context) error { return nil }); o != dedup.Processed || err != nil {
		t.Fatalf("after prune: %v, %v; want Processed", o, err)
	}
	if _, err := s.Prune(ctx, -time.Second, 10); err == nil {
		t.Fatal("negative olderThan accepted")
	}
}

func TestPostgresStoreErrorsWrapErrStore(t *testing.T) {
	t.Parallel()
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	k := dedup.Key{Scope: "g", EventID: "e1"}
	ran := false
	fn := func(context.Context) error { ran = true; return nil }

	t.Run("CancelledContext", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		o, err := s.Process(cctx, k, fn)
		if o != 0 || !errors.Is(err, dedup.ErrStore) || !errors.Is(err, context.Canceled) || ran {
			t.Fatalf("%v, %v, ran=%v; want 0, ErrStore wrapping context.Canceled, not run", o, err, ran)
		}
		if _, err := s.Prune(cctx, time.Hour, 10); !errors.Is(err, dedup.ErrStore) {
			t.Fatalf("Prune: %v, want ErrStore", err)
		}
	})

	t.Run("ClosedPool", func(t *testing.T) {
		pool, err := pgxpool.New(ctx, db.URL)
		if err != nil {
			t.Fatal(err)
		}
		closed, _ := dedup.NewPostgres(dedup.PostgresConfig{Pool: pool})
		pool.Close()
		if o, err := closed.Process(ctx, k, fn); o != 0 || !errors.Is(err, dedup.ErrStore) || ran {
			t.Fatalf("Process: %v, %v, ran=%v; want 0, ErrStore, not run", o, err, ran)
		}
		if err := closed.Migrate(ctx); !errors.Is(err, dedup.ErrStore) {
			t.Fatalf("Migrate: %v, want ErrStore", err)
		}
		if _, err := closed.Prune(ctx, time.Hour, 10); !errors.Is(err, dedup.ErrStore) {
			t.Fatalf("Prune: %v, want ErrStore", err)
		}
	})

	t.Run("MissingTable", func(t *testing.T) {
		missing, _ := dedup.NewPostgres(dedup.PostgresConfig{Pool: db.Pool, Table: "not_migrated"})
		if o, err := missing.Process(ctx, k, fn); o != 0 || !errors.Is(err, dedup.ErrStore) || ran {
			t.Fatalf("%v, %v, ran=%v; want 0, ErrStore, not run", o, err, ran)
		}
	})

	t.Run("CommitRefusedForContent", func(t *testing.T) {
		// A deferred constraint is checked at commit: the handler succeeds,
		// the commit does not. The transaction's content failed: the
		// handler's failure, not the store's.
		if _, err := db.Pool.Exec(ctx, "CREATE TABLE uniq (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)"); err != nil {
			t.Fatal(err)
		}
		o, err := s.Process(ctx, k, func(ctx context.Context) error {
			tx, _ := dedup.Tx(ctx)
			_, err := tx.Exec(ctx, "INSERT INTO uniq VALUES (1), (1)")
			return err
		})
		var pg *pgconn.PgError
		if o != dedup.Failed || errors.Is(err, dedup.ErrStore) || !errors.As(err, &pg) || pg.Code != "23505" {
			t.Fatalf("%v, %v; want Failed with the unique violation, not ErrStore", o, err)
		}
		if m := marks(t, db, s, k); m != 0 {
			t.Fatalf("%d marks after a failed commit, want 0", m)
		}
		if o, err := s.Process(ctx, k, fn); o != dedup.Processed || err != nil || !ran {
			t.Fatalf("redelivery: %v, %v, ran=%v; want Processed", o, err, ran)
		}
	})

	t.Run("HandlerDeadlineInAQuery", func(t *testing.T) {
		// fn's own deadline cuts its query off; pgx closes the connection,
		// so the rollback fails too. The failure is fn's: a consumer must
		// count it, not give the delivery back as a store outage.
		k := dedup.Key{Scope: "g", EventID: "slow"}
		o, err := s.Process(ctx, k, func(ctx context.Context) error {
			tx, _ := dedup.Tx(ctx)
			qctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			_, err := tx.Exec(qctx, "SELECT pg_sleep(5)")
			return err
		})
		if o != dedup.Failed || err == nil || errors.Is(err, dedup.ErrStore) {
			t.Fatalf("%v, %v; want Failed with the handler's error, not ErrStore", o, err)
		}
		if m := marks(t, db, s, k); m != 0 {
			t.Fatalf("%d marks after the handler failed, want 0", m)
		}
	})

	t.Run("HandlerSwallowedAnSQLError", func(t *testing.T) {
		// fn's statement failed and fn returned nil: the transaction is
		// aborted and the commit rolls back. fn's failure, not the store's.
		k := dedup.Key{Scope: "g", EventID: "swallowed"}
		o, err := s.Process(ctx, k, func(ctx context.Context) error {
			tx, _ := dedup.Tx(ctx)
			_, _ = tx.Exec(ctx, "SELECT 1/0")
			return nil
		})
		if o != dedup.Failed || !errors.Is(err, pgx.ErrTxCommitRollback) || errors.Is(err, dedup.ErrStore) {
			t.Fatalf("%v, %v; want Failed wrapping pgx.ErrTxCommitRollback, not ErrStore", o, err)
		}
		if m := marks(t, db, s, k); m != 0 {
			t.Fatalf("%d marks after an aborted transaction, want 0", m)
		}
	})

	t.Run("InvalidKey", func(t *testing.T) {
		closedPool, _ := dedup.NewPostgres(dedup.PostgresConfig{Pool: &pgxpool.Pool{}})
		// A zero pool would panic if touched: an invalid key must not be.
		if _, err := closedPool.Process(ctx, dedup.Key{Scope: "g"}, fn); !errors.Is(err, dedup.ErrInvalidKey) {
			t.Fatalf("%v, want ErrInvalidKey", err)
		}
	})
}
