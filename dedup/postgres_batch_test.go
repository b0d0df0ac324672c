package dedup_test

import (
	"context"
	"errors"
	"fmt"
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
// second is refused alone as the handler's failure, not the store's.
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
	if out[0] != dedup.Processed || out[1] != dedup.Failed || errors.Is(errs[1], dedup.ErrStore) || out[2] != dedup.Processed {
		t.Fatalf("outcomes %v, errors %v: want processed, failed (not ErrStore), processed", out, errs)
	}
	if runs != 4 {
		t.Errorf("the clashing handler ran %d times, want 4 (twice in the refused batch, once each alone)", runs)
	}
	if got := ids(t, db.Pool, "uniq"); got != "[other same]" {
		t.Errorf("rows %s, want [other same]: one 'same', none from the refused batch", got)
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

// TestPostgresBatchHandlerLosesTheTransaction: a handler whose query is cut
// off by its deadline closes the connection, and its savepoint with it;
// it fails alone (its own error, not the store's) and the batch runs again
// without it, so its neighbours commit.
func TestPostgresBatchHandlerLosesTheTransaction(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE effects (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	firstRuns := 0
	first := func(ctx context.Context) error { firstRuns++; return insertFn("effects", "a", false)(ctx) }
	hang := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		qctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := tx.Exec(qctx, "SELECT pg_sleep(5)")
		return err
	}
	keys := []dedup.Key{{Scope: "g", EventID: "a"}, {Scope: "g", EventID: "hangs"}, {Scope: "g", EventID: "c"}}
	out, errs := make([]dedup.Outcome, 3), make([]error, 3)
	if err := s.ProcessBatch(ctx, keys, []dedup.Func{first, hang, insertFn("effects", "c", false)}, out, errs); err != nil {
		t.Fatalf("ProcessBatch = %v, want the lost transaction charged to its handler alone", err)
	}
	if out[0] != dedup.Processed || out[1] != dedup.Failed || errors.Is(errs[1], dedup.ErrStore) || out[2] != dedup.Processed {
		t.Fatalf("outcomes %v, errors %v: want processed, failed (its own error), processed", out, errs)
	}
	if firstRuns != 2 {
		t.Errorf("the handler before it ran %d times, want 2 (its transaction was lost, then run again)", firstRuns)
	}
	if got := ids(t, db.Pool, "effects"); got != "[a c]" {
		t.Errorf("effects %s, want [a c]", got)
	}
	if o, _ := s.Process(ctx, keys[1], func(context.Context) error { return nil }); o != dedup.Processed {
		t.Errorf("the handler that lost the transaction: %v afterwards, want processed (not recorded)", o)
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

// TestPostgresBatchHandlerEndsItsSavepoint: a handler that releases the
// batch's savepoint itself makes the batch's RELEASE fail; that is its
// failure alone (not the store's), and its neighbours commit.
func TestPostgresBatchHandlerEndsItsSavepoint(t *testing.T) {
	s, db := newPostgresStore(t, dedup.PostgresConfig{})
	ctx := testCtx(t)
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE effects (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	meddle := func(ctx context.Context) error {
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Exec(ctx, "RELEASE SAVEPOINT headway_event")
		return err
	}
	keys := []dedup.Key{{Scope: "g", EventID: "a"}, {Scope: "g", EventID: "meddles"}, {Scope: "g", EventID: "c"}}
	out, errs := make([]dedup.Outcome, 3), make([]error, 3)
	if err := s.ProcessBatch(ctx, keys, []dedup.Func{insertFn("effects", "a", false), meddle, insertFn("effects", "c", false)}, out, errs); err != nil {
		t.Fatalf("ProcessBatch = %v, want the meddling handler charged alone", err)
	}
	if out[0] != dedup.Processed || out[1] != dedup.Failed || errors.Is(errs[1], dedup.ErrStore) || out[2] != dedup.Processed {
		t.Fatalf("outcomes %v, errors %v: want processed, failed (not ErrStore), processed", out, errs)
	}
	if got := ids(t, db.Pool, "effects"); got != "[a c]" {
		t.Errorf("effects %s, want [a c]", got)
	}
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
