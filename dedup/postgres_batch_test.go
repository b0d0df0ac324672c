package dedup_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/internal/pgtest"
)

// insertFn writes id into table through the inbox transaction; failAfter
// makes it fail after writing.
func insertFn(table, id string, failAfter bool) dedup.Func {
	return func(ctx context.Context) error {
		tx, ok := dedup.Tx(ctx)
		if !ok {
			return errors.New("no inbox transaction")
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id); err != nil {
			return err
		}
		if failAfter {
			return errors.New("failed after writing " + id)
		}
		return nil
	}
}

func ids(t *testing.T, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, table string) string {
	t.Helper()
	rows, err := q.Query(context.Background(), "SELECT id FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(got)
}

// TestPostgresBatchSavepoints: in one batch transaction, a handler that
// fails after writing loses its writes and its mark, alone; a handler that
// swallows an SQL error (its statement failed, it returned nil) fails
// alone too, rather than aborting its neighbours; the others' writes and
// marks commit together.
func TestPostgresBatchSavepoints(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE effects (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	swallow := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		_, _ = tx.Exec(ctx, "INSERT INTO no_such_table VALUES (1)") // fails; the error is dropped
		return nil
	}
	key := func(id string) dedup.Key { return dedup.Key{Scope: "g", EventID: id} }
	keys := []dedup.Key{key("a"), key("b"), key("c"), key("d")}
	out, errs := make([]dedup.Outcome, 4), make([]error, 4)
	err := s.ProcessBatch(ctx, keys, []dedup.Func{insertFn("effects", "a", false), insertFn("effects", "b", true),
		swallow, insertFn("effects", "d", false)}, out, errs)
	if err != nil {
		t.Fatal(err)
	}
	want := []dedup.Outcome{dedup.Processed, dedup.Failed, dedup.Failed, dedup.Processed}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("outcomes %v (errors %v), want %v", out, errs, want)
		}
	}
	if errors.Is(errs[1], dedup.ErrStore) || errors.Is(errs[2], dedup.ErrStore) {
		t.Errorf("a handler's failure wraps ErrStore: %v / %v", errs[1], errs[2])
	}
	if got := ids(t, db.Pool, "effects"); got != "[a d]" {
		t.Errorf("effects %s, want [a d]: the failed handler's write rolled back, its neighbours' kept", got)
	}
	if got := ids(t, db.Pool, "(SELECT event_id AS id FROM headway_inbox) m"); got != "[a d]" {
		t.Errorf("marks %s, want [a d]", got)
	}
}

// TestPostgresBatchRefusedCommitRedoesAlone: when the server refuses the
// batch's commit for its content (a deferred unique constraint two
// handlers both break), nothing of the batch is kept and each succeeded
// event runs again in a transaction of its own: the first commits, the
// second is refused alone as the handler's failure, not the store's; the
// event after it is not run (a later event may be of the same aggregate,
// and the caller ordered by the results the refusal contradicts): it stays
// unrecorded, for redelivery.
func TestPostgresBatchRefusedCommitRedoesAlone(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE uniq (id text UNIQUE DEFERRABLE INITIALLY DEFERRED)"); err != nil {
		t.Fatal(err)
	}
	runs := 0
	same := func(ctx context.Context) error { runs++; return insertFn("uniq", "same", false)(ctx) }
	keys := []dedup.Key{{Scope: "g", EventID: "e1"}, {Scope: "g", EventID: "e2"}, {Scope: "g", EventID: "e3"}}
	out, errs := make([]dedup.Outcome, 3), make([]error, 3)
	err := s.ProcessBatch(ctx, keys, []dedup.Func{same, same, insertFn("uniq", "other", false)}, out, errs)
	if err != nil {
		t.Fatalf("ProcessBatch = %v, want the refusal resolved event by event", err)
	}
	if out[0] != dedup.Processed || out[1] != dedup.Failed || errors.Is(errs[1], dedup.ErrStore) || out[2] != 0 {
		t.Fatalf("outcomes %v, errors %v: want processed, failed (not ErrStore), not run", out, errs)
	}
	if runs != 4 {
		t.Errorf("the clashing handler ran %d times, want 4 (twice in the refused batch, once each alone)", runs)
	}
	if got := ids(t, db.Pool, "uniq"); got != "[same]" {
		t.Errorf("rows %s, want [same]: one 'same', none from the refused batch", got)
	}
	if o, err := s.Process(ctx, keys[2], insertFn("uniq", "other", false)); o != dedup.Processed || err != nil {
		t.Errorf("the event not run: %v %v afterwards, want processed (not recorded)", o, err)
	}
}

// TestPostgresBatchStoreFailure: a batch whose connection is gone fails
// as the store's failure, records nothing, and reports as failed the
// handlers that ran.
func TestPostgresBatchStoreFailure(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	var pid int
	kill := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		_, err := db.Pool.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid)
		return err
	}
	keys := []dedup.Key{{Scope: "g", EventID: "k1"}, {Scope: "g", EventID: "k2"}, {Scope: "g", EventID: "k3"}}
	out, errs := make([]dedup.Outcome, 3), make([]error, 3)
	err := s.ProcessBatch(ctx, keys, []dedup.Func{func(context.Context) error { return nil }, kill,
		func(context.Context) error { return nil }}, out, errs)
	if !errors.Is(err, dedup.ErrStore) {
		t.Fatalf("ProcessBatch = %v, want ErrStore", err)
	}
	if out[0] != dedup.Failed {
		t.Errorf("outcomes %v: the handler that ran before the connection died must be failed, not processed", out)
	}
	for _, k := range keys {
		if o, err := s.Process(ctx, k, func(context.Context) error { return nil }); o != dedup.Processed || err != nil {
			t.Errorf("%s after the failed batch: %v %v, want processed (nothing recorded)", k, o, err)
		}
	}
}

// TestPostgresBatchHandlerSwallowsACutOffQuery: a handler whose query is
// cut off by a deadline (pgx closes the connection) and that returns nil
// anyway leaves the batch without a connection. Whether the handler or
// the network is at fault cannot be told: the event fails alone as the
// store's failure (not counted against its deliveries, and not failing
// its neighbours on every redelivery), and the batch runs again without
// it.
func TestPostgresBatchHandlerSwallowsACutOffQuery(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	swallow := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		qctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, _ = tx.Exec(qctx, "SELECT pg_sleep(5)") // cut off; the error is dropped
		return nil
	}
	if runs := failsAlone(t, s, db, "swallows", swallow, true); runs != 2 {
		t.Errorf("the first handler ran %d times, want 2 (its transaction was lost, then run again)", runs)
	}
}

// TestPostgresBatchBackendTerminatedUnderAHandler: a handler whose
// backend was terminated (an operator's pg_terminate_backend, a failover)
// gets the error on its statement and returns it. The connection is gone:
// the event fails alone as the store's failure (not counted against its
// deliveries), and the batch runs again without it on a new connection,
// so its neighbours commit instead of failing one by one on the dead one.
func TestPostgresBatchBackendTerminatedUnderAHandler(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	terminated := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		var pid int
		if err := tx.Conn().QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		if _, err := db.Pool.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO effects (id) VALUES ('terminated')")
		return err // the backend's FATAL error, or the closed connection's
	}
	if runs := failsAlone(t, s, db, "terminated", terminated, true); runs != 2 {
		t.Errorf("the handler before it ran %d times, want 2 (its transaction was lost, then run again)", runs)
	}
}

// TestPostgresBatchHandlerLosesTheTransaction: a handler whose query is cut
// off by its deadline closes the connection, and its savepoint with it;
// it fails alone (its own error, not the store's) and the batch runs again
// without it, so its neighbours commit.
func TestPostgresBatchHandlerLosesTheTransaction(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	hang := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		qctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := tx.Exec(qctx, "SELECT pg_sleep(5)")
		return err
	}
	if runs := failsAlone(t, s, db, "hangs", hang, false); runs != 2 {
		t.Errorf("the handler before it ran %d times, want 2 (its transaction was lost, then run again)", runs)
	}
}

// TestPostgresBatchRefusesATableThatRewritesKeys: an inbox table made by
// hand with a uuid event_id gives keys back in another form than they were
// sent (lower case); the batch refuses to go on rather than take a key it
// recorded for one it did not (which would skip its handler and lose it).
func TestPostgresBatchRefusesATableThatRewritesKeys(t *testing.T) {
	db := pgtest.New(t)
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE uuid_inbox (scope text, event_id uuid, processed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (scope, event_id))"); err != nil {
		t.Fatal(err)
	}
	s, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: db.Pool, Table: "uuid_inbox"})
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	keys := []dedup.Key{{Scope: "g", EventID: "550E8400-E29B-41D4-A716-446655440000"}}
	out, errs := make([]dedup.Outcome, 1), make([]error, 1)
	err = s.ProcessBatch(ctx, keys, []dedup.Func{func(context.Context) error { ran = true; return nil }}, out, errs)
	if !errors.Is(err, dedup.ErrStore) || ran || out[0] != 0 {
		t.Fatalf("ProcessBatch = %v, ran %v, outcome %v: want ErrStore, nothing run", err, ran, out[0])
	}
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM uuid_inbox").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d marks recorded (%v), want none", n, err)
	}
}

// TestPostgresBatchHandlerEndsItsSavepoint: a handler that releases its
// own savepoint (the second event's: headway_event_2) and then fails
// cannot be rolled back to it; the rollback must not undo the event
// before it instead. That is its failure alone (not the store's): the
// batch runs again without it, and its neighbours commit.
func TestPostgresBatchHandlerEndsItsSavepoint(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	meddle := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT headway_event_2"); err != nil {
			return err
		}
		return insertFn("effects", "meddles", true)(ctx)
	}
	failsAlone(t, s, db, "meddles", meddle, false)
}

// TestPostgresBatchCancelledCommitsWhatFinished: a batch whose context is
// cancelled mid-way (a shutdown) runs no more handlers and commits those
// that finished, as Process commits finished work; the rest is not
// recorded (outcome 0) and runs on redelivery.
func TestPostgresBatchCancelledCommitsWhatFinished(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	if _, err := db.Pool.Exec(testCtx(t), "CREATE TABLE effects (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	ranLast := false
	keys := []dedup.Key{{Scope: "g", EventID: "a"}, {Scope: "g", EventID: "b"}, {Scope: "g", EventID: "c"}}
	fns := []dedup.Func{insertFn("effects", "a", false),
		func(ctx context.Context) error { err := insertFn("effects", "b", false)(ctx); cancel(); return err },
		func(context.Context) error { ranLast = true; return nil }}
	out, errs := make([]dedup.Outcome, 3), make([]error, 3)
	if err := s.ProcessBatch(ctx, keys, fns, out, errs); err != nil {
		t.Fatalf("ProcessBatch = %v, want what finished committed", err)
	}
	if out[0] != dedup.Processed || out[1] != dedup.Processed || out[2] != 0 || ranLast {
		t.Fatalf("outcomes %v (last ran: %v): want processed, processed, not run", out, ranLast)
	}
	if got := ids(t, db.Pool, "effects"); got != "[a b]" {
		t.Errorf("effects %s, want [a b]", got)
	}
	if o, err := s.Process(testCtx(t), keys[2], func(context.Context) error { return nil }); o != dedup.Processed || err != nil {
		t.Errorf("the key not run: %v %v afterwards, want processed (not recorded)", o, err)
	}
}

// bumpFn adds one to the balance of account through the inbox transaction,
// after calling before (when not nil), and counts its runs.
func bumpFn(account string, runs *atomic.Int32, before func()) dedup.Func {
	return func(ctx context.Context) error {
		runs.Add(1)
		if before != nil {
			before()
		}
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Exec(ctx, "UPDATE balances SET n = n + 1 WHERE account = $1", account)
		return err
	}
}

func balancesTable(t *testing.T, db *pgtest.DB, accounts ...string) {
	t.Helper()
	if _, err := db.Pool.Exec(testCtx(t), "CREATE TABLE balances (account text PRIMARY KEY, n int NOT NULL DEFAULT 0); CREATE TABLE effects (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(testCtx(t), "INSERT INTO balances (account) SELECT unnest($1::text[])", accounts); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresBatchLockConflictRunsAlone: a handler that waits longer than
// LockWait for a row another transaction holds is rolled back to its
// savepoint; the batch commits the handler before it (releasing its
// locks), runs it again alone — waiting for the row as long as its
// context allows — and then the handler after it: nothing fails, nothing
// is applied twice, and stream order holds.
func TestPostgresBatchLockConflictRunsAlone(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{LockWait: 50 * time.Millisecond})
	ctx := testCtx(t)
	balancesTable(t, db, "hot")
	holder, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx) //nolint:errcheck // committed below
	if _, err := holder.Exec(ctx, "UPDATE balances SET n = n + 100 WHERE account = 'hot'"); err != nil {
		t.Fatal(err)
	}
	var hotRuns, lastRuns atomic.Int32
	var firstCommitted atomic.Bool
	released := make(chan error, 1)
	hot := bumpFn("hot", &hotRuns, func() {
		if hotRuns.Load() != 2 {
			return
		}
		// Run again alone: the batch before it must have committed.
		var n int
		_ = db.Pool.QueryRow(ctx, "SELECT count(*) FROM effects WHERE id = 'a'").Scan(&n)
		firstCommitted.Store(n == 1)
		go func() { awaitBlockedBy(ctx, db, holder.Conn().PgConn().PID()); released <- holder.Commit(ctx) }() // it waits past LockWait now
	})
	keys := []dedup.Key{{Scope: "g", EventID: "a"}, {Scope: "g", EventID: "hot"}, {Scope: "g", EventID: "c"}}
	out, errs := make([]dedup.Outcome, 3), make([]error, 3)
	last := func(ctx context.Context) error { lastRuns.Add(1); return insertFn("effects", "c", false)(ctx) }
	if err := s.ProcessBatch(ctx, keys, []dedup.Func{insertFn("effects", "a", false), hot, last}, out, errs); err != nil {
		t.Fatalf("ProcessBatch = %v", err)
	}
	for _, o := range out {
		if o != dedup.Processed {
			t.Errorf("outcomes %v, errors %v: want all processed", out, errs)
			break
		}
	}
	if hotRuns.Load() >= 2 {
		if err := <-released; err != nil {
			t.Fatal(err)
		}
	}
	if hotRuns.Load() != 2 || lastRuns.Load() != 1 {
		t.Errorf("the conflicting handler ran %d times, the one after it %d; want 2 (in the batch, then alone) and 1", hotRuns.Load(), lastRuns.Load())
	}
	if !firstCommitted.Load() {
		t.Error("the handler before the conflict was not committed when the conflicting one ran again alone")
	}
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT n FROM balances WHERE account = 'hot'").Scan(&n); err != nil || n != 101 {
		t.Errorf("balance %d (%v), want 101: the holder's 100 and the event's 1, once", n, err)
	}
	if got := ids(t, db.Pool, "effects"); got != "[a c]" {
		t.Errorf("effects %s, want [a c]", got)
	}
}

// TestPostgresBatchesCrossingLocks: two batches that update two rows in
// opposite orders, each holding its first row when it asks for the second,
// would deadlock; LockWait ends both waits before PostgreSQL's deadlock
// detector picks a victim, each batch commits its first event, and the
// second events run alone: every event applied once, none failed.
func TestPostgresBatchesCrossingLocks(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{LockWait: 50 * time.Millisecond})
	ctx := testCtx(t)
	balancesTable(t, db, "x", "y")
	var runs [4]atomic.Int32
	var holding sync.WaitGroup
	holding.Add(2)
	first := func(account string, i int) dedup.Func {
		return func(ctx context.Context) error {
			runs[i].Add(1)
			tx, _ := dedup.Tx(ctx)
			if _, err := tx.Exec(ctx, "UPDATE balances SET n = n + 1 WHERE account = $1", account); err != nil {
				return err
			}
			if runs[i].Load() == 1 {
				holding.Done()
				holding.Wait()
			}
			return nil
		}
	}
	var wg sync.WaitGroup
	outs, errss, batchErrs := [2][]dedup.Outcome{}, [2][]error{}, [2]error{}
	for b, order := range [2][2]string{{"x", "y"}, {"y", "x"}} {
		outs[b], errss[b] = make([]dedup.Outcome, 2), make([]error, 2)
		keys := []dedup.Key{{Scope: "g", EventID: fmt.Sprintf("b%d-1", b)}, {Scope: "g", EventID: fmt.Sprintf("b%d-2", b)}}
		fns := []dedup.Func{first(order[0], 2*b), bumpFn(order[1], &runs[2*b+1], nil)}
		wg.Go(func() { batchErrs[b] = s.ProcessBatch(ctx, keys, fns, outs[b], errss[b]) })
	}
	wg.Wait()
	for b := range 2 {
		if batchErrs[b] != nil || outs[b][0] != dedup.Processed || outs[b][1] != dedup.Processed {
			t.Errorf("batch %d: %v, outcomes %v, errors %v; want both processed", b, batchErrs[b], outs[b], errss[b])
		}
	}
	var x, y int
	if err := db.Pool.QueryRow(ctx, "SELECT (SELECT n FROM balances WHERE account = 'x'), (SELECT n FROM balances WHERE account = 'y')").Scan(&x, &y); err != nil {
		t.Fatal(err)
	}
	if x != 2 || y != 2 {
		t.Errorf("balances x=%d y=%d, want 2 and 2: each event once", x, y)
	}
}

// TestPostgresBatchHandlerLeavesRowsOpen: a handler that returns with a
// result set still open leaves the connection busy, so the batch cannot
// release its savepoint; that is the handler's failure alone (not the
// store's: it would fail the whole batch on every redelivery, uncounted),
// and the batch runs again without it.
func TestPostgresBatchHandlerLeavesRowsOpen(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	leaky := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Query(ctx, "SELECT generate_series(1, 3)") // never closed
		return err
	}
	failsAlone(t, s, db, "leaks", leaky, false)
}

// TestPostgresBatchKeyWithNUL: PostgreSQL's text cannot hold a NUL byte;
// such a key is refused as invalid before anything runs, by ProcessBatch
// and by Process alike, instead of failing the batch's mark statement as
// the store's failure on every redelivery.
func TestPostgresBatchKeyWithNUL(t *testing.T) {
	s, _ := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	bad := dedup.Key{Scope: "g", EventID: "a\x00b"}
	ran := false
	fn := func(context.Context) error { ran = true; return nil }
	out, errs := make([]dedup.Outcome, 2), make([]error, 2)
	err := s.ProcessBatch(ctx, []dedup.Key{{Scope: "g", EventID: "ok"}, bad}, []dedup.Func{fn, fn}, out, errs)
	if !errors.Is(err, dedup.ErrInvalidKey) || ran {
		t.Errorf("ProcessBatch = %v (ran %v), want ErrInvalidKey before running anything", err, ran)
	}
	if _, err := s.Process(ctx, bad, fn); !errors.Is(err, dedup.ErrInvalidKey) || ran {
		t.Errorf("Process = %v (ran %v), want ErrInvalidKey", err, ran)
	}
}

// TestPostgresBatchSplitsAtSubtransactionCache: a batch of 150 events runs
// in three transactions of at most 63 events, so no transaction has more
// subtransactions (one per event's savepoint that writes) than the 64
// PostgreSQL caches per backend; every event is processed once.
func TestPostgresBatchSplitsAtSubtransactionCache(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE txids (id text PRIMARY KEY, txid bigint NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	const n = 150
	keys, fns := make([]dedup.Key, n), make([]dedup.Func, n)
	for i := range n {
		id := fmt.Sprintf("e%03d", i)
		keys[i] = dedup.Key{Scope: "g", EventID: id}
		fns[i] = func(ctx context.Context) error {
			tx, _ := dedup.Tx(ctx)
			_, err := tx.Exec(ctx, "INSERT INTO txids VALUES ($1, txid_current())", id)
			return err
		}
	}
	out, errs := make([]dedup.Outcome, n), make([]error, n)
	if err := s.ProcessBatch(ctx, keys, fns, out, errs); err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if o != dedup.Processed {
			t.Fatalf("event %d: %v %v, want processed", i, o, errs[i])
		}
	}
	rows, err := db.Pool.Query(ctx, "SELECT count(*) FROM txids GROUP BY txid ORDER BY min(id)")
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sizes) != "[63 63 24]" {
		t.Errorf("events per transaction %v, want [63 63 24]", sizes)
	}
}

// TestPostgresBatchEveryWayToWriteIsInTheSavepoint: a handler's savepoint
// is opened lazily, with its first statement; whichever way the handler
// writes — Exec, Query, QueryRow, SendBatch, CopyFrom, a nested Begin or
// statements on Conn() — a failed handler's write rolls back and a
// successful one's commits.
func TestPostgresBatchEveryWayToWriteIsInTheSavepoint(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE effects (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	const insert = "INSERT INTO effects (id) VALUES ($1)"
	ways := map[string]func(ctx context.Context, tx pgx.Tx, id string) error{
		"exec": func(ctx context.Context, tx pgx.Tx, id string) error { _, err := tx.Exec(ctx, insert, id); return err },
		"query": func(ctx context.Context, tx pgx.Tx, id string) error {
			rows, err := tx.Query(ctx, insert+" RETURNING id", id)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		},
		"queryrow": func(ctx context.Context, tx pgx.Tx, id string) error {
			var got string
			return tx.QueryRow(ctx, insert+" RETURNING id", id).Scan(&got)
		},
		"sendbatch": func(ctx context.Context, tx pgx.Tx, id string) error {
			b := &pgx.Batch{}
			b.Queue(insert, id)
			return tx.SendBatch(ctx, b).Close()
		},
		"copyfrom": func(ctx context.Context, tx pgx.Tx, id string) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"effects"}, []string{"id"}, pgx.CopyFromRows([][]any{{id}}))
			return err
		},
		"begin": func(ctx context.Context, tx pgx.Tx, id string) error {
			nested, err := tx.Begin(ctx)
			if err != nil {
				return err
			}
			if _, err := nested.Exec(ctx, insert, id); err != nil {
				return err
			}
			return nested.Commit(ctx)
		},
		"conn": func(ctx context.Context, tx pgx.Tx, id string) error {
			_, err := tx.Conn().Exec(ctx, insert, id)
			return err
		},
	}
	var keys []dedup.Key
	var fns []dedup.Func
	var want []string
	for name, write := range ways {
		for _, fail := range []bool{false, true} {
			id := fmt.Sprintf("%s-%v", name, fail)
			keys = append(keys, dedup.Key{Scope: "g", EventID: id})
			fns = append(fns, func(ctx context.Context) error {
				tx, _ := dedup.Tx(ctx)
				if err := write(ctx, tx, id); err != nil {
					return err
				}
				if fail {
					return errors.New("fails after writing")
				}
				return nil
			})
			if !fail {
				want = append(want, id)
			}
		}
	}
	out, errs := make([]dedup.Outcome, len(keys)), make([]error, len(keys))
	if err := s.ProcessBatch(ctx, keys, fns, out, errs); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		wantOutcome := dedup.Processed
		if strings.HasSuffix(k.EventID, "true") {
			wantOutcome = dedup.Failed
		}
		if out[i] != wantOutcome {
			t.Errorf("%s: %v (%v), want %v", k.EventID, out[i], errs[i], wantOutcome)
		}
	}
	slices.Sort(want)
	if got := ids(t, db.Pool, "effects"); got != fmt.Sprint(want) {
		t.Errorf("effects %s, want %v: only the successful handlers' writes", got, want)
	}
}

// TestPostgresBatchFirstStatementForms: a handler's first statement may be
// several statements without arguments (the simple protocol), or carry a
// pgx.QueryExecMode; both run in its savepoint as they run in Process. A
// handler whose Prepare fails breaks the transaction before its savepoint
// exists: that is its failure alone — the event after it is not charged.
func TestPostgresBatchFirstStatementForms(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE effects (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	multi := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Exec(ctx, "INSERT INTO effects VALUES ('m1'); INSERT INTO effects VALUES ('m2')")
		return err
	}
	mode := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Exec(ctx, "INSERT INTO effects VALUES ($1)", pgx.QueryExecModeSimpleProtocol, "mode")
		return err
	}
	prepare := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Prepare(ctx, "bad", "SELECT * FROM no_such_table")
		return err
	}
	keys := []dedup.Key{{Scope: "g", EventID: "multi"}, {Scope: "g", EventID: "mode"}, {Scope: "g", EventID: "prepare"}, {Scope: "g", EventID: "after"}}
	out, errs := make([]dedup.Outcome, 4), make([]error, 4)
	if err := s.ProcessBatch(ctx, keys, []dedup.Func{multi, mode, prepare, insertFn("effects", "after", false)}, out, errs); err != nil {
		t.Fatal(err)
	}
	if out[0] != dedup.Processed || out[1] != dedup.Processed || out[2] != dedup.Failed || out[3] != dedup.Processed {
		t.Fatalf("outcomes %v, errors %v: want processed, processed, failed, processed", out, errs)
	}
	if got := ids(t, db.Pool, "effects"); got != "[after m1 m2 mode]" {
		t.Errorf("effects %s, want [after m1 m2 mode]", got)
	}
}

// TestPostgresBatchHandlerCommitsTheTransaction: a handler that commits
// the batch's transaction through its connection (against the contract)
// also commits the marks of the events after it, which have not run, and
// of the events before it that failed (their savepoints were rolled back,
// their marks were not); the store deletes those marks, so those events
// still take effect — none is recorded as done without its effect.
func TestPostgresBatchHandlerCommitsTheTransaction(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE effects (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	commits := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Conn().Exec(ctx, "COMMIT")
		return err
	}
	keys := []dedup.Key{{Scope: "g", EventID: "a"}, {Scope: "g", EventID: "b"}, {Scope: "g", EventID: "commits"}, {Scope: "g", EventID: "c"}}
	out, errs := make([]dedup.Outcome, 4), make([]error, 4)
	fns := []dedup.Func{insertFn("effects", "a", false), insertFn("effects", "b", true), commits, insertFn("effects", "c", false)}
	if err := s.ProcessBatch(ctx, keys, fns, out, errs); err != nil {
		t.Fatal(err)
	}
	if out[1] != dedup.Failed || out[2] != dedup.Failed || out[3] != dedup.Processed || (out[0] != dedup.Processed && out[0] != dedup.Duplicate) {
		t.Fatalf("outcomes %v, errors %v: want a applied, b and commits failed, c processed", out, errs)
	}
	if got := ids(t, db.Pool, "effects"); got != "[a c]" {
		t.Errorf("effects %s, want [a c]: the event after the commit took effect", got)
	}
	if o, err := s.Process(ctx, keys[1], insertFn("effects", "b", false)); o != dedup.Processed || err != nil {
		t.Errorf("b, which failed before the handler committed: %v %v afterwards, want processed (its mark not committed)", o, err)
	}
}

// failsAlone runs the batch a, name, c — a and c insert their rows into
// effects, name runs fn — and checks that fn's event fails alone (as the
// store's failure when store) while a and c commit. It returns how many
// times a's handler ran (2 when fn's transaction was lost and run again).
func failsAlone(t *testing.T, s *dedup.PostgresStore, db *pgtest.DB, name string, fn dedup.Func, store bool) (firstRuns int) {
	t.Helper()
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE effects (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	first := func(ctx context.Context) error { firstRuns++; return insertFn("effects", "a", false)(ctx) }
	keys := []dedup.Key{{Scope: "g", EventID: "a"}, {Scope: "g", EventID: name}, {Scope: "g", EventID: "c"}}
	out, errs := make([]dedup.Outcome, 3), make([]error, 3)
	if err := s.ProcessBatch(ctx, keys, []dedup.Func{first, fn, insertFn("effects", "c", false)}, out, errs); err != nil {
		t.Fatalf("ProcessBatch = %v, want %s's event failed alone", err, name)
	}
	if out[0] != dedup.Processed || out[1] != dedup.Failed || errors.Is(errs[1], dedup.ErrStore) != store || out[2] != dedup.Processed {
		t.Fatalf("outcomes %v, errors %v: want processed, failed (ErrStore: %v), processed", out, errs, store)
	}
	if got := ids(t, db.Pool, "effects"); got != "[a c]" {
		t.Errorf("effects %s, want [a c]", got)
	}
	if o, _ := s.Process(ctx, keys[1], func(context.Context) error { return nil }); o != dedup.Processed {
		t.Errorf("%s afterwards: %v, want processed (not recorded)", name, o)
	}
	return firstRuns
}
