package dedup

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresConfig configures a [PostgresStore]. The zero value is valid.
type PostgresConfig struct {
	// Pool is the database's connection pool. Required.
	Pool *pgxpool.Pool
	// Table is the inbox table: a plain SQL identifier (letters, digits and
	// underscores, not starting with a digit, at most 63 bytes), optionally
	// qualified by a schema ("app.inbox"). It is folded to lower case, as
	// PostgreSQL folds unquoted names. Without a schema the table is found
	// through the connections' search_path. Default "headway_inbox".
	Table string
	// LockWait is how long a handler run by [PostgresStore.ProcessBatch]
	// or ProcessSet waits for a lock that another transaction holds (a
	// row it updates)
	// before its statement fails with lock_not_available: the handler is
	// then rolled back to its savepoint, the batch commits what ran
	// before it, and the event runs again alone, waiting as long as its
	// context allows (ADR-019). A batch holds the locks of all its
	// handlers until it commits, so an unbounded wait would chain batches
	// behind each other. Zero means DefaultLockWait; negative, no bound.
	// Process does not use it.
	LockWait time.Duration
}

// Defaults of [PostgresConfig] and [PostgresStore.Prune].
const (
	DefaultPostgresTable = "headway_inbox"
	DefaultPruneBatch    = 1000
	DefaultLockWait      = 100 * time.Millisecond
)

// identRE matches a plain identifier, optionally schema-qualified.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// maxIdentLen is PostgreSQL's NAMEDATALEN-1: longer names are truncated.
const maxIdentLen = 63

// Validate reports a missing Pool, and a Table that is not a plain,
// optionally schema-qualified, SQL identifier.
func (c PostgresConfig) Validate() error {
	if c.Pool == nil {
		return errors.New("dedup: nil PostgreSQL pool")
	}
	if c.Table == "" {
		return nil
	}
	if !identRE.MatchString(c.Table) {
		return fmt.Errorf("dedup: Table %q is not a plain SQL identifier (optionally schema.table)", c.Table)
	}
	for part := range strings.SplitSeq(c.Table, ".") {
		if len(part) > maxIdentLen {
			return fmt.Errorf("dedup: Table %q: %q is longer than %d bytes", c.Table, part, maxIdentLen)
		}
	}
	return nil
}

// PostgresStore is a [Store] on a PostgreSQL inbox table: the
// transactional inbox. Process inserts the event's key into the table and
// runs the handler in the same transaction; the handler gets that
// transaction with [Tx] and makes its own writes through it, so the
// writes and the "done" mark commit together or not at all. That is an
// exactly-once effect even when the process dies at any point: a crash
// before the commit rolls back both, and redelivery runs the handler again;
// after the commit, redelivery finds the mark and reports [Duplicate].
//
// The primary key (scope, event_id) is the lock: a second Process for a key
// whose transaction is in flight blocks in its INSERT until the first
// commits (then it returns Duplicate) or rolls back (then it runs the
// handler). Process therefore never returns [Busy]. PostgresStore does
// not implement [Batcher] (its leases would have to outlive their
// transaction); it implements [TxBatcher], which runs many events in one
// transaction.
//
// Each in-flight Process holds one pool connection for as long as its
// handler runs, and so does each call blocked behind it: size the pool
// above the consumer's concurrency, and do not let a handler wait for a
// second connection of the same pool (under exhaustion that deadlocks).
//
// Marks are kept until [PostgresStore.Prune] deletes them. PostgresStore is
// safe for concurrent use.
type PostgresStore struct {
	pool      *pgxpool.Pool
	table     string // sanitized, possibly schema-qualified
	createSQL string
	indexSQL  string
	insertSQL string
	cutoffSQL string
	pruneSQL  string

	markAllSQL, markBatchSQL, unmarkSQL string // ProcessBatch's
	// lastDuplicate is when a batch last met a key recorded before (Unix
	// nanoseconds): see beginBatch.
	lastDuplicate atomic.Int64
	lockWaitSQL   string // ProcessBatch's SET LOCAL lock_timeout, or ""
}

var _ Store = (*PostgresStore)(nil)

// migrateLockID is the pg_advisory_xact_lock key that serializes
// [PostgresStore.Migrate] across processes: ASCII "headway" followed by 1.
const migrateLockID int64 = 0x6865616477617901

// settleTimeout bounds the commit or rollback that ends a Process call.
// They run on a context without the caller's cancellation, so a handler's
// finished work is not thrown away because the caller is shutting down.
const settleTimeout = 15 * time.Second

// markWait bounds the beginning of a transaction and the insertion of its
// marks, whatever the caller's context allows: a mark waits for the
// transaction that holds its key (the inbox's lock), but not forever — a
// holder that hangs (a process paused mid-transaction) must not stall the
// caller's loop.
const markWait = 15 * time.Second

// NewPostgres returns a PostgresStore whose inbox table is cfg.Table in the
// database of cfg.Pool. It does not touch the
// database; call [PostgresStore.Migrate] (or create the table yourself, see
// Migrate) before the first Process.
func NewPostgres(cfg PostgresConfig) (*PostgresStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	name := strings.ToLower(cfg.Table)
	if name == "" {
		name = DefaultPostgresTable
	}
	parts := strings.Split(name, ".")
	table := pgx.Identifier(parts).Sanitize()
	// The index lives in the table's schema; keep its name within the
	// identifier limit so PostgreSQL does not truncate it into another
	// relation's name.
	const suffix = "_processed_at_idx"
	base := parts[len(parts)-1]
	if len(base)+len(suffix) > maxIdentLen {
		base = base[:maxIdentLen-len(suffix)]
	}
	index := pgx.Identifier{base + suffix}.Sanitize()
	markAll, markBatch, unmark := batchSQL(table)
	lockWait := cfg.LockWait
	if lockWait == 0 {
		lockWait = DefaultLockWait
	}
	return &PostgresStore{
		markAllSQL: markAll, markBatchSQL: markBatch, unmarkSQL: unmark, lockWaitSQL: lockWaitSQL(lockWait),
		pool:  cfg.Pool,
		table: table,
		createSQL: `CREATE TABLE IF NOT EXISTS ` + table + ` (
	scope        text        NOT NULL,
	event_id     text        NOT NULL,
	processed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (scope, event_id)
)`,
		indexSQL:  `CREATE INDEX IF NOT EXISTS ` + index + ` ON ` + table + ` (processed_at)`,
		insertSQL: `INSERT INTO ` + table + ` (scope, event_id) VALUES ($1, $2) ON CONFLICT (scope, event_id) DO NOTHING`,
		cutoffSQL: `SELECT now() - $1::bigint * interval '1 microsecond'`,
		pruneSQL: `DELETE FROM ` + table + ` WHERE ctid = ANY(ARRAY(
	SELECT ctid FROM ` + table + ` WHERE processed_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`,
	}, nil
}

// Table returns the quoted, possibly schema-qualified, name of the inbox
// table, ready to use in SQL.
func (s *PostgresStore) Table() string { return s.table }

// Migrate creates the inbox table and its processed_at index if they do
// not exist:
//
//	CREATE TABLE IF NOT EXISTS headway_inbox (
//		scope        text        NOT NULL,
//		event_id     text        NOT NULL,
//		processed_at timestamptz NOT NULL DEFAULT now(),
//		PRIMARY KEY (scope, event_id)
//	);
//	CREATE INDEX IF NOT EXISTS headway_inbox_processed_at_idx ON headway_inbox (processed_at);
//
// It is idempotent and safe when several processes start together: it runs
// in one transaction holding a transaction-level advisory lock. It does not
// create the schema of a qualified Table. Errors wrap [ErrStore].
func (s *PostgresStore) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockID); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, s.createSQL); err != nil {
			return fmt.Errorf("create table: %w", err)
		}
		if _, err := tx.Exec(ctx, s.indexSQL); err != nil {
			return fmt.Errorf("create index: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: migrate %s: %w", ErrStore, s.table, err)
	}
	return nil
}

// txKey is the context key of the inbox transaction.
type txKey struct{}

// Tx returns the inbox transaction of the [PostgresStore.Process] call
// whose handler received ctx, and false for any other context. The handler
// makes its own writes through it, so they commit together with the event's
// "done" mark, or roll back with it when the handler fails:
//
//	store.Process(ctx, key, func(ctx context.Context) error {
//		tx, ok := dedup.Tx(ctx)
//		if !ok {
//			return errors.New("not in a PostgreSQL inbox")
//		}
//		_, err := tx.Exec(ctx, "INSERT INTO orders (id, total) VALUES ($1, $2)", id, total)
//		return err
//	})
//
// The transaction is READ COMMITTED. Process owns it: its Commit and
// Rollback return an error and do nothing (return an error from the handler
// to roll back; Begin opens a savepoint as usual), and it must not be used
// after the handler returned.
//
// A transaction belongs to one handler attempt. The consumer runs each
// in-process retry in a Process call of its own, so an attempt that fails
// — after writing, or after an SQL error that aborted the transaction —
// leaves nothing behind, and the next attempt gets a new transaction
// (ADR-014). A handler that catches an SQL error and goes on must roll
// back to a savepoint of its own (tx.Begin) first: otherwise every later
// statement fails with SQLSTATE 25P02 and the commit rolls everything back.
func Tx(ctx context.Context) (pgx.Tx, bool) {
	tx, ok := ctx.Value(txKey{}).(pgx.Tx)
	return tx, ok
}

// errTxOwned is returned by Commit and Rollback of the transaction that
// [Tx] hands to a handler.
var errTxOwned = errors.New("dedup: the inbox transaction is committed or rolled back by PostgresStore.Process; return an error from the handler to roll back")

// handlerTx is the inbox transaction as the handler sees it: everything
// but ending it. A handler that committed would record its event as done
// even if it then failed.
type handlerTx struct{ pgx.Tx }

func (handlerTx) Commit(context.Context) error   { return errTxOwned }
func (handlerTx) Rollback(context.Context) error { return errTxOwned }

// Process implements [Store]. It begins a READ COMMITTED transaction,
// inserts the key into the inbox and, if the key was not there, runs fn
// with a context that carries the transaction (see [Tx]); it commits when
// fn returns nil and rolls back when fn fails or panics.
//
// Outcomes: (Processed, nil) after the commit; (Duplicate, nil) when the
// key was recorded before, without running fn; (Failed, fn's error) after
// a rollback. Process blocks while another transaction holds the key, and
// never returns Busy. Errors of the store wrap [ErrStore]: (0, err) when
// beginning or inserting failed; (Failed, err) when the commit failed
// after fn succeeded — the outcome of a commit cut off by the network is
// unknown, but redelivery then either finds the mark or runs fn again.
// The commit and the rollback run even when ctx is cancelled, for at most
// 15 seconds.
//
// What fn's transaction did is fn's failure, not the store's, and does
// not wrap ErrStore (a consumer counts it against MaxDeliveries): fn's
// error when the rollback after it failed too (a query cut off by fn's
// deadline closes the connection), and a commit the server refused for
// the transaction's content — a deferred constraint (SQLSTATE class 23),
// a serialization failure or deadlock (class 40), or statements of fn
// that failed while fn returned nil.
func (s *PostgresStore) Process(ctx context.Context, key Key, fn Func) (Outcome, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	// Beginning and the mark are bounded on their own (markWait): a key
	// another transaction holds for longer, or a server that does not
	// answer, is the store's failure, retried later.
	mctx, cancelMark := context.WithTimeout(ctx, markWait)
	defer cancelMark()
	tx, err := s.pool.BeginTx(mctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return 0, fmt.Errorf("%w: begin: %w", ErrStore, err)
	}
	settleCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	}
	rollback := func() error {
		c, cancel := settleCtx()
		defer cancel()
		if err := tx.Rollback(c); err != nil {
			return fmt.Errorf("%w: rollback: %w", ErrStore, err)
		}
		return nil
	}
	// Stronger isolation would turn a concurrent duplicate into a
	// serialization failure; READ COMMITTED waits and then sees the mark.
	tag, err := tx.Exec(mctx, s.insertSQL, key.Scope, key.EventID)
	if err != nil {
		_ = rollback()
		return 0, fmt.Errorf("%w: insert %s: %w", ErrStore, key, err)
	}
	if tag.RowsAffected() == 0 {
		// The key was recorded before. A failed rollback of this
		// transaction, which wrote nothing, changes nothing: pgx closes
		// its connection.
		_ = rollback()
		return Duplicate, nil
	}

	panicking := true
	defer func() {
		if panicking {
			// Drop the mark and the handler's writes; the panic (or
			// runtime.Goexit) continues to the caller.
			_ = rollback()
		}
	}()
	ferr := fn(context.WithValue(ctx, txKey{}, pgx.Tx(handlerTx{tx})))
	panicking = false
	if ferr != nil {
		if tx.Conn().PgConn().IsClosed() {
			// The connection is gone with the transaction: whose failure
			// it is, connLost says. The rollback (which fails) gives the
			// connection back to the pool.
			_ = rollback()
			return Failed, connLost(ferr)
		}
		if rerr := rollback(); rerr != nil {
			// The handler's verdict stands; the connection is gone
			// with its transaction.
			return Failed, fmt.Errorf("%w (and the rollback failed: %v)", ferr, rerr)
		}
		return Failed, ferr
	}
	c, cancel := settleCtx()
	defer cancel()
	if err := tx.Commit(c); err != nil {
		if refusedContent(err) {
			return Failed, fmt.Errorf("dedup: commit %s refused: %w", key, err)
		}
		return Failed, fmt.Errorf("%w: commit %s: %w", ErrStore, key, err)
	}
	return Processed, nil
}

// refusedContent reports whether a failed commit was refused for what the
// transaction did, rather than for the store's sake (a connection lost, a
// backend terminated, the server out of resources).
func refusedContent(err error) bool {
	if errors.Is(err, pgx.ErrTxCommitRollback) {
		return true // a statement of fn failed, and fn returned nil
	}
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return false
	}
	// 55P03: a deferred check at the commit waited past a batch's
	// LockWait; run alone, without the bound, it waits.
	return strings.HasPrefix(pg.Code, "23") || strings.HasPrefix(pg.Code, "40") || pg.Code == "55P03"
}

// Prune deletes the marks of events processed more than olderThan ago, in
// transactions of at most batch rows each, so that a large backlog never
// becomes one long transaction; it stops when a batch deletes fewer than
// batch rows. A batch of 0 or less means [DefaultPruneBatch]. Concurrent
// Prune calls skip each other's rows. It returns the number of rows
// deleted, also when it fails part way.
//
// Keep olderThan above the longest time an event can wait for redelivery:
// an event redelivered after its mark was pruned runs again. Errors wrap
// [ErrStore]; a negative olderThan is an error.
func (s *PostgresStore) Prune(ctx context.Context, olderThan time.Duration, batch int) (deleted int64, err error) {
	if olderThan < 0 {
		return 0, fmt.Errorf("dedup: Prune: negative olderThan %v", olderThan)
	}
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	// One cutoff, in the database's clock, for every batch.
	var cutoff time.Time
	if err := s.pool.QueryRow(ctx, s.cutoffSQL, olderThan.Microseconds()).Scan(&cutoff); err != nil {
		return 0, fmt.Errorf("%w: prune %s: %w", ErrStore, s.table, err)
	}
	for {
		tag, err := s.pool.Exec(ctx, s.pruneSQL, cutoff, batch)
		if err != nil {
			return deleted, fmt.Errorf("%w: prune %s: %w", ErrStore, s.table, err)
		}
		n := tag.RowsAffected()
		deleted += n
		if n < int64(batch) {
			return deleted, nil
		}
	}
}
