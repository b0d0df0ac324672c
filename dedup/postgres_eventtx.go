package dedup

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// eventTx is a batch's transaction as one event's handler sees it (see
// [PostgresStore.ProcessBatch]): everything but ending it, inside a
// savepoint of the event's own. The savepoint is opened with the
// handler's first statement — in the same round trip when that is an
// Exec — so an event costs no round trip beyond its handler's; a handler
// that makes no statement opens none.
//
// The events' savepoints nest (none is released: committing the
// transaction commits them all) and are named after their position in
// the transaction, so that the rollback of a failed event can only undo
// that event: a handler that released its own savepoint makes the
// rollback fail instead of undoing the event before it.
type eventTx struct {
	handlerTx
	name   string // the savepoint's, e.g. headway_event_3
	opened bool
}

func newEventTx(tx pgx.Tx, position int) *eventTx {
	return &eventTx{handlerTx: handlerTx{tx}, name: "headway_event_" + strconv.Itoa(position)}
}

// open opens the savepoint, once: opened says whether it exists.
func (t *eventTx) open(ctx context.Context) error {
	if t.opened {
		return nil
	}
	_, err := t.Tx.Exec(ctx, "SAVEPOINT "+t.name)
	t.opened = err == nil
	return err
}

// rollback undoes what the handler did since its savepoint, if it opened
// one.
func (t *eventTx) rollback(ctx context.Context) error {
	if !t.opened {
		return nil
	}
	_, err := t.Tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+t.name)
	return err
}

// undo is rollback on a context that outlives ctx's cancellation.
func (t *eventTx) undo(ctx context.Context) error {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	return t.rollback(c)
}

// Exec sends the savepoint and the handler's first statement together:
// in one pgx.Batch, or, for a statement without arguments (which may be
// several, as the simple protocol allows), in one simple query.
func (t *eventTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.opened {
		return t.Tx.Exec(ctx, sql, args...)
	}
	if len(args) == 0 {
		tag, err := t.Tx.Exec(ctx, "SAVEPOINT "+t.name+"; "+sql)
		// The savepoint goes first; it fails only in a transaction that
		// is aborted or gone, where the rollback to it fails too.
		t.opened = true
		return tag, err
	}
	switch args[0].(type) {
	case pgx.QueryExecMode, pgx.QueryRewriter: // options a batch does not take
		if err := t.open(ctx); err != nil {
			return pgconn.CommandTag{}, err
		}
		return t.Tx.Exec(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue("SAVEPOINT " + t.name)
	b.Queue(sql, args...)
	br := t.Tx.SendBatch(ctx, b)
	_, err := br.Exec()
	t.opened = err == nil
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

func (t *eventTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.open(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Query(ctx, sql, args...)
}

func (t *eventTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.open(ctx); err != nil {
		return errRow{err}
	}
	return t.Tx.QueryRow(ctx, sql, args...)
}

func (t *eventTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	_ = t.open(ctx) // when it fails, so does the batch: the transaction is aborted or gone
	return t.Tx.SendBatch(ctx, b)
}

func (t *eventTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, rows pgx.CopyFromSource) (int64, error) {
	if err := t.open(ctx); err != nil {
		return 0, err
	}
	return t.Tx.CopyFrom(ctx, table, columns, rows)
}

func (t *eventTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.open(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Prepare(ctx, name, sql)
}

func (t *eventTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.open(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Begin(ctx)
}

// Conn hands out the connection, on which the handler may run statements
// this wrapper does not see: the savepoint is opened first.
func (t *eventTx) Conn() *pgx.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	_ = t.open(ctx)
	return t.Tx.Conn()
}

func (t *eventTx) LargeObjects() pgx.LargeObjects {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	_ = t.open(ctx)
	return t.Tx.LargeObjects()
}

// errRow is a pgx.Row whose Scan returns err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// TxErr reports why the PostgreSQL inbox fails the handler that got ctx
// even though it returned nil: one of its statements failed (the
// transaction is aborted), it left a result set open, it ended the
// transaction, or the connection is closed (an error wrapping ErrStore:
// the handler may not be at fault). It returns nil for a context without
// an inbox transaction. A caller that must know an event's outcome before
// it runs the next handler — the consumer keeps an aggregate's events in
// order — calls it right after the handler returns nil.
func TxErr(ctx context.Context) error {
	switch t := ctx.Value(txKey{}).(type) {
	case *eventTx:
		return txErr(t.Tx)
	case handlerTx:
		return txErr(t.Tx)
	}
	return nil
}

// txErr is TxErr of the transaction tx, as the store handed it out.
func txErr(tx pgx.Tx) error {
	switch pc := tx.Conn().PgConn(); {
	case pc.IsBusy():
		return errors.New("dedup: the handler returned with a result set open")
	case pc.IsClosed():
		return errConnClosed
	case pc.TxStatus() == 'E':
		return errors.New("dedup: a statement of the handler failed and the handler returned nil")
	case pc.TxStatus() == 'I':
		return errTxEnded
	}
	return nil
}

// connLost is the error of a handler that failed with ferr on a
// connection that is now closed. A query the handler's own deadline cut
// off (pgx closes the connection) is its failure: a handler that hangs
// must reach MaxDeliveries. Anything else — the backend terminated, the
// network cut — is the store's (ErrStore), not counted against the
// event's deliveries.
func connLost(ferr error) error {
	if errors.Is(ferr, context.DeadlineExceeded) || errors.Is(ferr, context.Canceled) {
		return ferr
	}
	return fmt.Errorf("%w (the handler's error: %w)", errConnClosed, ferr)
}

var (
	errConnClosed = fmt.Errorf("%w: the connection closed while the handler ran", ErrStore)
	errTxEnded    = errors.New("dedup: the handler committed or rolled back the inbox transaction")
)
