package dedup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The marks of a batch: recorded when its transaction begins, deleted for
// the events that did not take effect before it commits.

// beginBatch begins a batch's READ COMMITTED transaction and records its
// keys with one statement, in key order; it returns whether each key was
// recorded by it (the others were recorded before). With the marks, in
// the same round trip, it runs lockWait, which bounds the handlers' lock
// waits: a mark waits for the transaction that holds its key (that is the
// inbox's lock), a handler waits at most LockWait.
//
// It records optimistically first, with a plain INSERT, which costs the
// server about half of what INSERT … ON CONFLICT DO NOTHING does per key
// (measured: 6 µs against 12 µs a key on PostgreSQL 15). When a key was
// recorded before (a redelivery after a crash, a replay) or appears twice,
// that fails with a unique violation; the batch then begins again and
// records with ON CONFLICT DO NOTHING RETURNING, and keeps doing so for a
// second (duplicates come in runs: a replay, a consumer's pending entries
// reclaimed). Errors wrap ErrStore.
func (s *PostgresStore) beginBatch(ctx context.Context, scopes, ids []string, lockWait string) (pgx.Tx, func(Key) bool, error) {
	mctx, cancel := context.WithTimeout(ctx, markWait) // see markWait
	defer cancel()
	tx, recorded, err := s.recordKeys(mctx, scopes, ids, lockWait)
	if err != nil && ctx.Err() == nil && mctx.Err() != nil {
		err = fmt.Errorf("%w (the marks waited %s)", err, markWait)
	}
	return tx, recorded, err
}

// recordKeys is beginBatch without its bound.
func (s *PostgresStore) recordKeys(ctx context.Context, scopes, ids []string, lockWait string) (pgx.Tx, func(Key) bool, error) {
	if time.Since(time.Unix(0, s.lastDuplicate.Load())) > time.Second {
		tx, err := s.begin(ctx)
		if err != nil {
			return nil, nil, err
		}
		err = s.recordAll(ctx, tx, scopes, ids, lockWait)
		if err == nil {
			return tx, func(Key) bool { return true }, nil
		}
		rollback(ctx, tx)
		var pg *pgconn.PgError
		if !errors.As(err, &pg) || pg.Code != "23505" {
			return nil, nil, fmt.Errorf("%w: record %d keys: %w", ErrStore, len(ids), err)
		}
		s.lastDuplicate.Store(time.Now().UnixNano())
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	recorded, err := s.recordNew(ctx, tx, scopes, ids, lockWait)
	if err != nil {
		rollback(ctx, tx)
		return nil, nil, fmt.Errorf("%w: record %d keys: %w", ErrStore, len(ids), err)
	}
	return tx, func(k Key) bool { return recorded[k] }, nil
}

func (s *PostgresStore) begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("%w: begin: %w", ErrStore, err)
	}
	return tx, nil
}

// rollback rolls tx back, on a context that outlives ctx's cancellation;
// a rollback that fails closes the connection: nothing commits.
func rollback(ctx context.Context, tx pgx.Tx) {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	_ = tx.Rollback(c)
}

// recordAll inserts every key's mark, and fails if one is there.
func (s *PostgresStore) recordAll(ctx context.Context, tx pgx.Tx, scopes, ids []string, lockWait string) error {
	b := &pgx.Batch{}
	b.Queue(s.markAllSQL, scopes, ids)
	if lockWait != "" {
		b.Queue(lockWait)
	}
	return tx.SendBatch(ctx, b).Close()
}

// recordNew inserts the marks of the keys that are not there, and returns
// the keys it inserted.
func (s *PostgresStore) recordNew(ctx context.Context, tx pgx.Tx, scopes, ids []string, lockWait string) (map[Key]bool, error) {
	b := &pgx.Batch{}
	b.Queue(s.markBatchSQL, scopes, ids)
	if lockWait != "" {
		b.Queue(lockWait)
	}
	br := tx.SendBatch(ctx, b)
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	sent := make(map[Key]bool, len(ids))
	for i := range ids {
		sent[Key{Scope: scopes[i], EventID: ids[i]}] = true
	}
	recorded := make(map[Key]bool, len(ids))
	var k Key
	_, err = pgx.ForEachRow(rows, []any{&k.Scope, &k.EventID}, func() error {
		if !sent[k] {
			// The table gave back a key in another form than it was sent
			// (a column that is not text: uuid, char(n)): the batch could
			// not tell which keys it recorded, and would skip one it did.
			return fmt.Errorf("the inbox returned key %s, which the batch did not send: its scope and event_id columns must be text", k)
		}
		recorded[k] = true
		return nil
	})
	if err == nil && lockWait != "" {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return recorded, err
}

// settleTx deletes the marks of the keys at indices unmark and commits tx,
// on a context that outlives ctx's cancellation (finished work is
// committed even when ctx is cancelled, as in Process). It returns the
// server's refusal of the commit for the transaction's content (SQLSTATE
// classes 23 and 40), or the store's failure: then nothing committed.
func (s *PostgresStore) settleTx(ctx context.Context, tx pgx.Tx, keys []Key, unmark []int) (refused, _ error) {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if len(unmark) > 0 {
		fs, fi := make([]string, len(unmark)), make([]string, len(unmark))
		for j, i := range unmark {
			fs[j], fi[j] = keys[i].Scope, keys[i].EventID
		}
		if _, err := tx.Exec(c, s.unmarkSQL, fs, fi); err != nil {
			_ = tx.Rollback(c)
			return nil, fmt.Errorf("%w: unmark %d keys: %w", ErrStore, len(unmark), err)
		}
	}
	if err := tx.Commit(c); err != nil {
		if refusedContent(err) {
			return err, nil
		}
		return nil, fmt.Errorf("%w: commit: %w", ErrStore, err)
	}
	return nil, nil
}

// forget deletes, in a transaction of its own, the marks a handler that
// ended the batch's transaction (at index lost) may have committed without
// their effect: those of the events before it that failed (their
// savepoints were rolled back, their marks were not), and those of the
// keys after it that the batch recorded and did not run.
func (s *PostgresStore) forget(ctx context.Context, keys []Key, out []Outcome, active []int, lost int, recorded func(Key) bool, seen map[Key]bool) error {
	var idx []int
	after := false
	for _, i := range active {
		k := keys[i]
		switch {
		case !after && i != lost && out[i] == Failed:
			idx = append(idx, i)
		case after && recorded(k) && !seen[k]:
			seen[k] = true
			idx = append(idx, i)
		}
		after = after || i == lost
	}
	return s.unmarkNow(ctx, keys, idx)
}

// unmarkNow deletes the marks of the keys at indices idx in a transaction
// of its own, after a handler ended the batch's transaction (which may
// have committed them without their effect); three tries.
func (s *PostgresStore) unmarkNow(ctx context.Context, keys []Key, idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	fs, fi := make([]string, len(idx)), make([]string, len(idx))
	for j, i := range idx {
		fs[j], fi[j] = keys[i].Scope, keys[i].EventID
	}
	var err error
	for range 3 {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		_, err = s.pool.Exec(c, s.unmarkSQL, fs, fi)
		cancel()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: a handler ended the batch's transaction, and the marks of %d events it did not apply could not be deleted (they may be recorded without their effect): %w",
		ErrStore, len(idx), err)
}

// batchSQL returns the statements of ProcessBatch for table.
func batchSQL(table string) (markAll, mark, unmark string) {
	markAll = `INSERT INTO ` + table + ` (scope, event_id)
SELECT s, e FROM unnest($1::text[], $2::text[]) AS k(s, e) ORDER BY s, e`
	mark = `INSERT INTO ` + table + ` (scope, event_id)
SELECT s, e FROM unnest($1::text[], $2::text[]) AS k(s, e) ORDER BY s, e
ON CONFLICT (scope, event_id) DO NOTHING RETURNING scope, event_id`
	unmark = `DELETE FROM ` + table + ` WHERE (scope, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`
	return markAll, mark, unmark
}
