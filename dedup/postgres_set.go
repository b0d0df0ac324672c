package dedup

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// SetFunc applies many events together, set-based, in the inbox
// transaction that [Tx] returns from ctx: one multi-row INSERT, a COPY,
// an UPDATE … FROM (VALUES …). run holds the indices, into the keys given
// to [TxBatcher.ProcessSet], of the events to apply, in order. It sets
// errs[j] to the error of event run[j] when that one cannot be applied,
// and returns nil; an error it returns fails every event of run.
// len(errs) == len(run).
//
// A call that names a failed event is undone, and the function is called
// again without it: a failed event's writes never commit, whatever the
// function wrote for it.
type SetFunc func(ctx context.Context, run []int, errs []error) error

// ProcessSet implements [TxBatcher]. It begins a READ COMMITTED
// transaction and records every key with one statement (as ProcessBatch),
// then calls fn once for the keys it recorded, in a savepoint. When fn
// names failed events, it rolls back to the savepoint and calls fn again
// with the others, until a call names none (or none are left); then it
// deletes the failed keys' marks and commits. An error fn returns fails
// every event of that call.
//
// When fn's statement waits longer than LockWait for a lock, or loses a
// deadlock, the transaction is rolled back and the set runs once more
// in a new one that waits as long as ctx allows. When the server refuses
// the commit for the transaction's content (SQLSTATE classes 23 and 40),
// each event that fn applied runs again alone, in a set of one, so the
// culprit fails alone.
func (s *PostgresStore) ProcessSet(ctx context.Context, keys []Key, fn SetFunc, out []Outcome, errs []error) error {
	if len(out) != len(keys) || len(errs) != len(keys) {
		return fmt.Errorf("dedup: ProcessSet of %d keys with %d outcomes and %d errors", len(keys), len(out), len(errs))
	}
	clear(out)
	clear(errs)
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	refused, err := s.processSetOnce(ctx, keys, fn, out, errs, s.lockWaitSQL)
	if errors.Is(err, errSetConflict) {
		clear(out)
		clear(errs)
		refused, err = s.processSetOnce(ctx, keys, fn, out, errs, "")
	}
	if refused == nil {
		return err
	}
	// Refused: each event fn applied runs again alone, in a set of one;
	// after one that does not end applied, none (a later one may be of
	// its aggregate): those stay not run (0).
	for n := range keys {
		if out[n] != Processed {
			continue
		}
		one := func(ctx context.Context, _ []int, errs []error) error { return fn(ctx, []int{n}, errs) }
		o, e := make([]Outcome, 1), make([]error, 1)
		refused, err := s.processSetOnce(ctx, keys[n:n+1], one, o, e, "")
		if err != nil {
			markRan(out, indices(len(keys))[n:])
			return err
		}
		out[n], errs[n] = o[0], e[0]
		if refused != nil { // the culprit, alone
			out[n], errs[n] = Failed, fmt.Errorf("dedup: the commit was refused: %w", refused)
		}
		if out[n] != Processed && out[n] != Duplicate {
			notRun(out, errs, indices(len(keys))[n+1:])
			return nil
		}
	}
	return nil
}

// errSetConflict: a set's statement met a lock conflict under LockWait.
var errSetConflict = errors.New("dedup: lock conflict in a set")

// processSetOnce runs the set in one transaction, its handlers' lock waits
// bounded by lockWait (a SET LOCAL statement, or "" for none). It returns
// the server's refusal of the commit for the transaction's content (out
// then holds the outcomes fn had reached: the caller redoes the Processed
// ones), or errSetConflict, or the store's failure.
func (s *PostgresStore) processSetOnce(ctx context.Context, keys []Key, fn SetFunc, out []Outcome, errs []error, lockWait string) (refused, _ error) {
	scopes, ids := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		scopes[i], ids[i] = k.Scope, k.EventID
	}
	tx, recorded, err := s.beginBatch(ctx, scopes, ids, lockWait)
	if err != nil {
		return nil, err
	}
	abort := func() { rollback(ctx, tx) }
	seen := make(map[Key]bool, len(keys))
	var run []int
	for i, k := range keys {
		switch {
		case seen[k]:
			out[i] = Busy
		case !recorded(k):
			out[i] = Duplicate
		default:
			seen[k] = true
			run = append(run, i)
		}
	}
	panicking := true
	defer func() {
		if panicking {
			abort() // the panic goes on to the caller; nothing commits
		}
	}()
	for pos := 1; len(run) > 0; pos++ {
		if ctx.Err() != nil {
			break // a shutdown: what did not run is not recorded
		}
		ferrs := make([]error, len(run))
		ferr, lost := s.callSet(ctx, tx, pos, fn, run, ferrs)
		switch {
		case lost != nil:
			// The call took the transaction with it: nothing commits —
			// unless the handler committed it through its connection;
			// then the marks of the events failed by earlier calls are
			// recorded without their effect: delete them.
			panicking = false
			abort()
			var earlier []int
			for i := range keys {
				if out[i] == Failed {
					earlier = append(earlier, i)
				}
			}
			for _, i := range run {
				out[i], errs[i] = Failed, lost
			}
			if errors.Is(lost, errTxEnded) {
				return nil, s.unmarkNow(ctx, keys, earlier)
			}
			return nil, nil
		case ferr != nil && lockConflict(ferr) && lockWait != "":
			panicking = false
			abort()
			return nil, errSetConflict
		case ferr != nil:
			for _, i := range run {
				out[i], errs[i] = Failed, ferr
			}
			run = nil
		default:
			rest := run[:0:0]
			for j, i := range run {
				if ferrs[j] != nil {
					out[i], errs[i] = Failed, ferrs[j]
				} else {
					rest = append(rest, i)
				}
			}
			if len(rest) == len(run) {
				for _, i := range run {
					out[i] = Processed
				}
				run = nil
			} else {
				run = rest // undone: called again without the failed ones
			}
		}
	}
	panicking = false
	var unmark []int
	for i := range keys {
		if out[i] == Failed || out[i] == 0 && seen[keys[i]] {
			unmark = append(unmark, i)
		}
	}
	refused, err = s.settleTx(ctx, tx, keys, unmark)
	if err != nil {
		markRan(out, indices(len(keys)))
	}
	return refused, err
}

// callSet calls fn for run in a savepoint of its own (the pos-th of tx),
// and leaves the savepoint rolled back to when fn failed, named a failed
// event, panicked, or returned nil after one of its statements failed.
// It returns fn's error, or lost when the rollback was not possible (the
// transaction is lost).
func (s *PostgresStore) callSet(ctx context.Context, tx pgx.Tx, pos int, fn SetFunc, run []int, ferrs []error) (ferr, lost error) {
	et := newEventTx(tx, pos)
	undo := func() error { return et.undo(ctx) }
	done := false
	defer func() {
		if !done { // fn panicked: undo its writes before the panic goes on
			_ = undo()
		}
	}()
	ferr = fn(context.WithValue(ctx, txKey{}, pgx.Tx(et)), run, ferrs)
	done = true
	if te := txErr(tx); errors.Is(te, errTxEnded) {
		return nil, te
	} else if errors.Is(te, errConnClosed) {
		if ferr != nil {
			return nil, connLost(ferr) // as for one handler (runInSavepoint)
		}
		return nil, te
	} else if ferr == nil {
		ferr = te
	}
	if ferr != nil && !et.opened && tx.Conn().PgConn().TxStatus() != 'T' {
		return nil, fmt.Errorf("%w (and there is no savepoint to roll back to)", ferr)
	}
	named := false
	for _, e := range ferrs {
		named = named || e != nil
	}
	if ferr != nil || named {
		if err := undo(); err != nil {
			if ferr == nil {
				ferr = errors.New("dedup: the handler named failed events")
			}
			return nil, fmt.Errorf("%w (and the rollback to its savepoint failed: %v)", ferr, err)
		}
	}
	return ferr, nil
}

// indices returns 0, 1, …, n-1.
func indices(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
