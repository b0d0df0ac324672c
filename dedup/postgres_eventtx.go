package dedup

import (
	"context"
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

// open opens the savepoint, once.
func (t *eventTx) open(ctx context.Context) error {
	if t.opened {
		return nil
	}
	t.opened = true
	_, err := t.Tx.Exec(ctx, "SAVEPOINT "+t.name)
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

// Exec sends the savepoint and the handler's first statement together.
func (t *eventTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.opened {
		return t.Tx.Exec(ctx, sql, args...)
	}
	t.opened = true
	b := &pgx.Batch{}
	b.Queue("SAVEPOINT " + t.name)
	b.Queue(sql, args...)
	br := t.Tx.SendBatch(ctx, b)
	_, err := br.Exec()
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
