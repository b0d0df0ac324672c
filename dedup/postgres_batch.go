package dedup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TxBatcher is implemented by transactional stores that run the handlers
// of many events in one transaction, each in a savepoint of its own, so
// that one commit (and one WAL flush) covers the whole batch while a
// failing event rolls back alone.
type TxBatcher interface {
	Store
	// ProcessBatch runs fns[i] for keys[i], in order, in one transaction,
	// and sets out[i] and errs[i]:
	//   - Processed, nil: fns[i] returned nil; its writes and its key's
	//     mark committed together;
	//   - Duplicate, nil: the key was recorded before (by an earlier
	//     commit, or by a transaction that committed while this one
	//     waited for it); fns[i] did not run;
	//   - Busy, nil: the key appears earlier in keys, in the same
	//     transaction; fns[i] did not run (the event is left for
	//     redelivery, when it is a Duplicate or runs);
	//   - Failed, fns[i]'s error: fns[i] failed; its writes rolled back to
	//     its savepoint and its key is not recorded, while the other
	//     events of the batch go on;
	//   - 0, nil: ctx ended before fns[i] ran (a shutdown); the handlers
	//     that finished are committed, this key is not recorded.
	// It returns an error wrapping ErrStore when a transaction of the
	// batch did not commit (begin, the marks, the commit): out[i] is then
	// Failed or 0 for each event it did not record, and the caller runs
	// them again later; Duplicate and Busy stand, as do the outcomes of
	// transactions that committed before. As with Process, a commit cut
	// off by the network may have committed: redelivery then finds the
	// marks. An event left 0 with a nil error was not run (a shutdown, or
	// an event before it that did not end applied: nothing after that runs,
	// since a later event may be of its aggregate). A bad argument (an
	// invalid key, unequal lengths) is an error of its own, before anything
	// runs. len(keys), len(fns), len(out) and len(errs) must be equal.
	ProcessBatch(ctx context.Context, keys []Key, fns []Func, out []Outcome, errs []error) error
	// ProcessSet records keys and applies the events not recorded before
	// with one call of fn (more when fn names failed events: see
	// SetFunc), in one transaction. out and errs are set as by
	// ProcessBatch; an event fn named failed is Failed with its error,
	// its writes undone and its key not recorded.
	ProcessSet(ctx context.Context, keys []Key, fn SetFunc, out []Outcome, errs []error) error
}

var _ TxBatcher = (*PostgresStore)(nil)

// ProcessBatch implements [TxBatcher]. It runs the batch 63 events at a
// time (see maxTxEvents). For each, it begins a READ COMMITTED
// transaction and records every key with one statement (in key order, so
// that two batches racing on the same keys lock them in the same order and
// cannot deadlock); a key another transaction holds blocks the statement
// until that one ends, as in Process. Then each fn runs in a savepoint
// (the handler's [Tx] is that savepoint: its writes and only its writes
// roll back when it fails), the marks of the failed keys are deleted with
// one statement, and the transaction commits.
//
// A fn that fails and takes the transaction with it (a query cut off by
// fn's deadline closes the connection, so the rollback to its savepoint
// fails) fails alone, as in Process: the batch runs again without it, in
// a new transaction, and the fns before it run again. When the connection
// closed under a fn that returned nil, the fn may not be at fault: its
// error then wraps ErrStore.
//
// The handlers wait at most the store's LockWait for a lock another
// transaction holds (a batch keeps all its handlers' locks until it
// commits). A fn whose statement fails that way, or with a deadlock or a
// serialization failure, is rolled back to its savepoint; the batch
// commits what ran before it, runs it again alone in a Process call
// (which waits as long as ctx allows), and then goes on with the fns after
// it in a new transaction. Order holds: no fn runs before the fns before
// it have their outcome.
//
// When the server refuses the commit for the transaction's content (a
// deferred constraint, a serialization failure or deadlock: SQLSTATE
// classes 23 and 40), the batch cannot say which event caused it: each
// event whose fn succeeded is run again in a Process call of its own, and
// its outcome is that call's. fns may therefore run twice, as they may on
// any redelivery; nothing they did in the refused batch is kept.
func (s *PostgresStore) ProcessBatch(ctx context.Context, keys []Key, fns []Func, out []Outcome, errs []error) error {
	if len(fns) != len(keys) || len(out) != len(keys) || len(errs) != len(keys) {
		return fmt.Errorf("dedup: ProcessBatch of %d keys with %d funcs, %d outcomes and %d errors", len(keys), len(fns), len(out), len(errs))
	}
	clear(out)
	clear(errs)
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	for lo := 0; lo < len(keys); lo += maxTxEvents {
		hi := min(lo+maxTxEvents, len(keys))
		if err := s.processChunk(ctx, keys, fns, out, errs, lo, hi); err != nil {
			return err
		}
		if ctx.Err() != nil || slices.Contains(out[lo:hi], 0) {
			// A shutdown, or an event left not run: a later event may be
			// of its aggregate. The rest is not recorded.
			return nil
		}
	}
	return nil
}

// maxTxEvents is how many events a batch transaction runs at most: each
// event's savepoint that writes is a subtransaction, and a transaction
// with more than 64 of them overflows its backend's cache of them, after
// which every snapshot check in the cluster that meets the transaction
// reads pg_subtrans. One is left to spare (a handler's own savepoint).
const maxTxEvents = 63

// processChunk runs the events lo to hi-1 of a batch, in one transaction
// or more (see ProcessBatch).
func (s *PostgresStore) processChunk(ctx context.Context, keys []Key, fns []Func, out []Outcome, errs []error, lo, hi int) error {
	active := make([]int, hi-lo)
	for i := range active {
		active[i] = lo + i
	}
	for len(active) > 0 {
		r, err := s.processOnce(ctx, keys, fns, out, errs, active)
		switch {
		case r.lost >= 0:
			// fns[lost] failed and took the transaction with it (a query
			// cut off by its deadline closes the connection): it failed
			// alone, as in Process; the others run again in a new
			// transaction.
			active = slices.DeleteFunc(active, func(i int) bool { return i == r.lost })
			for _, i := range active {
				out[i], errs[i] = 0, nil
			}
		case r.stop:
			return nil // the rest stays not run (0)
		case r.conflict >= 0:
			// fns[conflict] waited too long for a lock, or lost a
			// deadlock: the batch committed what ran before it, which
			// released its locks. It runs again alone, waiting as long
			// as its context allows, then the rest as a new batch —
			// unless it did not end applied: then the rest is not run
			// (a later event may be of its aggregate).
			if ctx.Err() != nil {
				return nil // a shutdown: it and the rest are not recorded
			}
			applied, err := s.runAlone(ctx, keys, fns, out, errs, r.conflict)
			if err != nil || !applied {
				return err
			}
			active = r.rest
		default:
			return err
		}
	}
	return nil
}

// onceResult is how one transaction of a batch ended, besides its error:
// lost is the index whose fn lost the transaction (the batch runs again
// without it), conflict the index whose fn met a lock conflict (the batch
// committed what ran before it; rest did not run); -1 when neither. stop:
// an event did not end applied where its fn had succeeded (see
// redoAlone), so nothing after it may run.
type onceResult struct {
	lost, conflict int
	rest           []int
	stop           bool // run nothing more of the batch: what did not run stays 0
}

// processOnce runs the batch of the keys at indices active in one
// transaction. See onceResult.
func (s *PostgresStore) processOnce(ctx context.Context, keys []Key, fns []Func, out []Outcome, errs []error, active []int) (onceResult, error) {
	res := onceResult{lost: -1, conflict: -1}
	scopes, ids := make([]string, len(active)), make([]string, len(active))
	for j, i := range active {
		scopes[j], ids[j] = keys[i].Scope, keys[i].EventID
	}
	tx, recorded, err := s.beginBatch(ctx, scopes, ids, s.lockWaitSQL)
	if err != nil {
		return res, err
	}
	abort := func() { rollback(ctx, tx) }
	seen := make(map[Key]bool, len(active))
	var failed, notRun []int
	pos := 0 // of the event in the transaction: its savepoint's name
	panicking := true
	defer func() {
		if panicking {
			abort() // the panic goes on to the caller; nothing commits
		}
	}()
	for _, i := range active {
		k := keys[i]
		switch {
		case seen[k]:
			out[i] = Busy
			continue
		case !recorded(k):
			out[i] = Duplicate
			continue
		}
		seen[k] = true
		if res.conflict >= 0 || ctx.Err() != nil {
			// After a lock conflict, or cancelled (a shutdown): run no
			// more handlers, and commit what finished; the rest is not
			// recorded, and runs in the next batch or again later.
			notRun = append(notRun, i)
			continue
		}
		pos++
		err := s.runInSavepoint(ctx, tx, pos, fns[i])
		var fl *fnLostTx
		switch {
		case err == nil:
			out[i] = Processed
		case errors.As(err, &fl):
			panicking = false
			abort()
			out[i], errs[i] = Failed, fl.err
			if fl.ended {
				// The handler committed or rolled back the transaction
				// through its connection: if it committed, the marks of
				// the events after it, and of those before it that failed,
				// are recorded without their effect. Delete them; the rerun
				// then finds the events before it that succeeded Duplicates
				// if that commit happened, and runs them if not.
				if err := s.forget(ctx, keys, out, active, i, recorded, seen); err != nil {
					return res, err
				}
			}
			res.lost = i
			return res, nil
		case lockConflict(err):
			// Its writes are rolled back; its locks and those of the
			// handlers before it are held until the commit.
			res.conflict = i
		default:
			out[i], errs[i] = Failed, err
			failed = append(failed, i)
		}
	}
	panicking = false
	unmark := append(failed, notRun...)
	if res.conflict >= 0 {
		unmark = append(unmark, res.conflict)
	}
	refused, err := s.settleTx(ctx, tx, keys, unmark)
	switch {
	case refused != nil:
		stopped, err := s.redoAlone(ctx, keys, fns, out, errs, active)
		if err != nil || stopped {
			return onceResult{lost: -1, conflict: -1, stop: stopped}, err
		}
		// Everything before the conflict (if any) is applied now: go on.
	case err != nil:
		markRan(out, active)
		return onceResult{lost: -1, conflict: -1}, err
	}
	if res.conflict >= 0 && ctx.Err() == nil {
		res.rest = notRun
	}
	return res, nil
}

// lockConflict reports whether err is a statement's failure to get a lock
// in time (lock_not_available, as LockWait makes it), or a deadlock or
// serialization failure: the event's content is not at fault, the
// transactions around it are.
func lockConflict(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return false
	}
	switch pg.Code {
	case "55P03", "40P01", "40001":
		return true
	}
	return false
}

// lockWaitSQL returns the statement that bounds the handlers' lock waits
// to d, or "" for no bound (d < 0).
func lockWaitSQL(d time.Duration) string {
	if d < 0 {
		return ""
	}
	return fmt.Sprintf("SET LOCAL lock_timeout = %d", max(d.Milliseconds(), 1))
}

// fnLostTx is the failure of a fn whose rollback to its savepoint failed
// too: the fn's error lost the transaction.
type fnLostTx struct {
	err, rollback error
	ended         bool // the handler ended the transaction itself (it may have committed)
}

func (e *fnLostTx) Error() string {
	if e.rollback == nil {
		return e.err.Error()
	}
	return fmt.Sprintf("%v (and the rollback to its savepoint failed: %v)", e.err, e.rollback)
}

// runInSavepoint runs fn as the position-th event of tx, in a savepoint
// of its own (see eventTx): rolled back to when fn fails or panics, or
// when it returned nil after one of its statements failed (the
// transaction is then aborted: PostgreSQL's status 'E').
func (s *PostgresStore) runInSavepoint(ctx context.Context, tx pgx.Tx, position int, fn Func) (err error) {
	et := newEventTx(tx, position)
	undo := func() error { return et.undo(ctx) }
	done := false
	defer func() {
		if !done { // fn panicked: undo its writes before the panic goes on
			_ = undo()
		}
	}()
	ferr := fn(context.WithValue(ctx, txKey{}, pgx.Tx(et)))
	done = true
	if te := txErr(tx); errors.Is(te, errTxEnded) {
		return &fnLostTx{err: te, ended: true}
	} else if ferr == nil {
		ferr = te
	}
	switch {
	case ferr == nil:
		return nil
	case errors.Is(ferr, errConnClosed):
		// The server or the network ended the connection while the
		// handler ran, or the handler swallowed the error of a query
		// cut off by its deadline (which closes it). Which one cannot be
		// told: the event fails alone, as the store's failure (not
		// counted against its deliveries), and its neighbours go on.
		return &fnLostTx{err: ferr}
	case tx.Conn().PgConn().IsClosed():
		// The connection is gone with the transaction, whatever the
		// handler returned: nothing more runs on it (connLost says whose
		// failure it is).
		return &fnLostTx{err: connLost(ferr), rollback: errConnClosed}
	case !et.opened && tx.Conn().PgConn().TxStatus() != 'T':
		// It broke the transaction without a savepoint to undo it (a
		// failed Prepare, say): its failure, and it lost the transaction.
		return &fnLostTx{err: ferr, rollback: errors.New("no savepoint to roll back to")}
	}
	if ferr != nil {
		if err := undo(); err != nil {
			// The connection is gone or busy, or the handler ended its
			// savepoint itself: it took the transaction with it.
			return &fnLostTx{err: ferr, rollback: err}
		}
		return ferr
	}
	return nil
}

// markRan sets Failed for the keys at indices active whose fn ran and
// committed nothing (Processed before the batch failed).
func markRan(out []Outcome, active []int) {
	for _, i := range active {
		if out[i] == Processed {
			out[i] = Failed
		}
	}
}

// redoAlone runs again, each in a Process call of its own, the events a
// refused batch commit covered and whose fn had succeeded. When one of
// them does not end applied, it runs none after it (a later one may be of
// the same aggregate: the caller keeps order by the fns' results, which a
// refused commit contradicts): those stay not run (0), and are redelivered.
// It returns whether it stopped so, and the store's failure.
func (s *PostgresStore) redoAlone(ctx context.Context, keys []Key, fns []Func, out []Outcome, errs []error, active []int) (stopped bool, _ error) {
	for n, i := range active {
		if out[i] != Processed {
			continue
		}
		applied, err := s.runAlone(ctx, keys, fns, out, errs, i)
		if err != nil {
			markRan(out, active[n+1:])
			return false, err
		}
		if !applied {
			notRun(out, errs, active[n+1:])
			return true, nil
		}
	}
	return false, nil
}

// notRun sets to 0 (not run: not recorded) the outcomes at indices that
// were Processed in a transaction that did not commit.
func notRun(out []Outcome, errs []error, indices []int) {
	for _, i := range indices {
		if out[i] == Processed {
			out[i], errs[i] = 0, nil
		}
	}
}

// runAlone runs fns[i] in a Process call of its own and sets its outcome;
// it returns whether the event ended applied (Processed, or Duplicate),
// and the store's failure.
func (s *PostgresStore) runAlone(ctx context.Context, keys []Key, fns []Func, out []Outcome, errs []error, i int) (applied bool, _ error) {
	o, err := s.Process(ctx, keys[i], fns[i])
	out[i], errs[i] = o, err
	if errors.Is(err, ErrStore) {
		return false, err
	}
	return o == Processed || o == Duplicate, nil
}
