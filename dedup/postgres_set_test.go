package dedup_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/internal/pgtest"
)

// insertSet writes one row per event of run into table with one
// statement, then names as failed the events whose id is in fail.
func insertSet(table string, keys []dedup.Key, fail map[string]bool, calls *int) dedup.SetFunc {
	return func(ctx context.Context, run []int, errs []error) error {
		*calls++
		tx, _ := dedup.Tx(ctx)
		ids := make([]string, len(run))
		for j, i := range run {
			ids[j] = keys[i].EventID
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) SELECT unnest($1::text[])", ids); err != nil {
			return err
		}
		for j, id := range ids {
			if fail[id] {
				errs[j] = errors.New("cannot apply " + id)
			}
		}
		return nil
	}
}

// TestPostgresSetNamedFailureIsUndone: the set function writes every
// event's row in one statement and names one event failed; the call is
// undone and made again without it, so its row never commits while the
// others' do.
func TestPostgresSetNamedFailureIsUndone(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE effects (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	keys := []dedup.Key{{Scope: "g", EventID: "a"}, {Scope: "g", EventID: "b"}, {Scope: "g", EventID: "c"}}
	calls := 0
	out, errs := make([]dedup.Outcome, 3), make([]error, 3)
	if err := s.ProcessSet(ctx, keys, insertSet("effects", keys, map[string]bool{"b": true}, &calls), out, errs); err != nil {
		t.Fatal(err)
	}
	if out[0] != dedup.Processed || out[1] != dedup.Failed || errs[1] == nil || out[2] != dedup.Processed || calls != 2 {
		t.Fatalf("outcomes %v, errors %v, %d calls: want processed, failed, processed in 2 calls", out, errs, calls)
	}
	if got := ids(t, db.Pool, "effects"); got != "[a c]" {
		t.Errorf("effects %s, want [a c]: the failed event's row undone", got)
	}
}

// TestPostgresSetLockConflictWaitsOnce: a set whose statement waits longer
// than LockWait for a row another transaction holds is rolled back and run
// once more in a transaction that waits; it then applies, once.
func TestPostgresSetLockConflictWaitsOnce(t *testing.T) {
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
	calls := 0
	released := make(chan error, 1)
	fn := func(ctx context.Context, run []int, _ []error) error {
		calls++
		if calls == 2 {
			go func() { awaitBlockedBy(ctx, db, holder.Conn().PgConn().PID()); released <- holder.Commit(ctx) }() // it waits past LockWait now
		}
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Exec(ctx, "UPDATE balances SET n = n + $1 WHERE account = 'hot'", len(run))
		return err
	}
	keys := []dedup.Key{{Scope: "g", EventID: "a"}, {Scope: "g", EventID: "b"}}
	out, errs := make([]dedup.Outcome, 2), make([]error, 2)
	if err := s.ProcessSet(ctx, keys, fn, out, errs); err != nil {
		t.Fatal(err)
	}
	if calls >= 2 {
		if err := <-released; err != nil {
			t.Fatal(err)
		}
	}
	if out[0] != dedup.Processed || out[1] != dedup.Processed || calls != 2 {
		t.Fatalf("outcomes %v, errors %v, %d calls: want both processed, in 2 calls (the conflict, then the wait)", out, errs, calls)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT n FROM balances WHERE account = 'hot'").Scan(&n); err != nil || n != 102 {
		t.Errorf("balance %d (%v), want 102: the holder's 100 and the set's 2, once", n, err)
	}
}

// TestPostgresSetRefusedCommitRedoesAlone: two events of a set break a
// deferred unique constraint together; the commit is refused, and each
// event runs again alone: the first commits, the second fails as its
// own (not the store's) failure.
func TestPostgresSetRefusedCommitRedoesAlone(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE uniq (id text UNIQUE DEFERRABLE INITIALLY DEFERRED)"); err != nil {
		t.Fatal(err)
	}
	calls := 0
	fn := func(ctx context.Context, run []int, _ []error) error {
		calls++
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Exec(ctx, "INSERT INTO uniq SELECT 'same' FROM generate_series(1, $1)", len(run))
		return err
	}
	keys := []dedup.Key{{Scope: "g", EventID: "e1"}, {Scope: "g", EventID: "e2"}}
	out, errs := make([]dedup.Outcome, 2), make([]error, 2)
	if err := s.ProcessSet(ctx, keys, fn, out, errs); err != nil {
		t.Fatalf("ProcessSet = %v, want the refusal resolved event by event", err)
	}
	if out[0] != dedup.Processed || out[1] != dedup.Failed || errors.Is(errs[1], dedup.ErrStore) || calls != 3 {
		t.Fatalf("outcomes %v, errors %v, %d calls: want processed, failed (not ErrStore), in 3 calls", out, errs, calls)
	}
	if got := ids(t, db.Pool, "uniq"); got != "[same]" {
		t.Errorf("rows %s, want [same]", got)
	}
}

// awaitBlockedBy returns once a session waits for a lock that the
// backend pid holds (or ctx ends).
func awaitBlockedBy(ctx context.Context, db *pgtest.DB, pid uint32) {
	for ctx.Err() == nil {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE $1::int = ANY(pg_blocking_pids(pid))`, int(pid)).Scan(&n); err == nil && n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}
