package outbox

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/headwaylabs/headway/event"
)

// PostgresStore is the production [Store]: the outbox table in
// PostgreSQL, created by [PostgresStore.Migrate]. Claims are transactions that lock their rows with FOR
// UPDATE SKIP LOCKED, so several relays share the table safely; wake-ups
// come from the writer's NOTIFY on a LISTEN connection of the store's own.
type PostgresStore struct {
	pool  *pgxpool.Pool
	table string

	mu   sync.Mutex
	held map[*pgClaim]struct{} // open claims with rows
}

var _ Store = (*PostgresStore)(nil)

// PostgresConfig configures a [PostgresStore]. Pool is required.
type PostgresConfig struct {
	// Pool is the database's connection pool.
	Pool *pgxpool.Pool
	// Table is the outbox table, a name [ValidTableName] accepts. Default
	// [DefaultTable].
	Table string
}

// Validate reports a nil Pool and an invalid Table, wrapping
// [ErrInvalidConfig].
func (c PostgresConfig) Validate() error {
	if c.Pool == nil {
		return fmt.Errorf("%w: nil pool", ErrInvalidConfig)
	}
	if c.Table != "" && !ValidTableName(c.Table) {
		return fmt.Errorf("%w: table name %q", ErrInvalidConfig, c.Table)
	}
	return nil
}

// NewPostgresStore returns the store of cfg.Table in cfg.Pool's database.
// It does not touch the database: call [PostgresStore.Migrate] (or create
// the table yourself) before the first claim.
func NewPostgresStore(cfg PostgresConfig) (*PostgresStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	table := cfg.Table
	if table == "" {
		table = DefaultTable
	}
	return &PostgresStore{pool: cfg.Pool, table: table, held: map[*pgClaim]struct{}{}}, nil
}

// Table returns the outbox table name.
func (s *PostgresStore) Table() string { return s.table }

// claimTx begins a claim's transaction with sorting disabled (so even on
// a table never analyzed the planner takes the unpublished rows in id
// order from the partial index and stops after limit rows) and without
// waiting for the WAL flush at commit (a crash may lose the last marks,
// whose rows are then appended again, which consumers deduplicate). Both
// ride on BEGIN, costing no round trip. ADR-011's "The claim's
// transaction" gives the measurements and the argument.
var claimTx = pgx.TxOptions{BeginQuery: "BEGIN; SET LOCAL enable_sort = off; SET LOCAL synchronous_commit = off"}

const claimColumns = `id, event_id, stream, event_type, schema_version, brand_id,
	owner_brand_id, aggregate_id, occurred_at, payload::text, coalesce(traceparent, ''), coalesce(tracestate, ''),
	created_at, attempts`

// Claim begins a transaction and locks up to limit due rows in it.
//
// While this store holds exactly one other open claim whose ids are
// consecutive (lo…hi, every id in between — a relay's current batch
// while it claims the next), the claim leaves that range out of its
// index scans instead of stepping over the held rows one lock attempt at
// a time. No other row can have an id in that range, so the rows claimed
// are the same. The held claim may be given back while this one runs; a
// relay does that only after a failed Finish, and then gives this claim
// back too, unappended.
func (s *PostgresStore) Claim(ctx context.Context, limit int) (Claim, error) {
	tx, err := s.pool.BeginTx(ctx, claimTx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	c := &pgClaim{s: s, tx: tx, ctx: context.WithoutCancel(ctx), rollback: callBound(ctx)}
	var rows pgx.Rows
	if lo, hi, ok := s.heldRange(); ok {
		rows, err = tx.Query(ctx, fmt.Sprintf(`SELECT * FROM (SELECT %[2]s FROM %[1]s
			WHERE published_at IS NULL AND parked_at IS NULL AND next_attempt_at <= now() AND id < $2
			ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) below
		UNION ALL
		SELECT * FROM (SELECT %[2]s FROM %[1]s
			WHERE published_at IS NULL AND parked_at IS NULL AND next_attempt_at <= now() AND id > $3
			ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) above
		LIMIT $1`, s.table, claimColumns), limit, lo, hi)
	} else {
		rows, err = tx.Query(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE published_at IS NULL AND parked_at IS NULL AND next_attempt_at <= now()
			ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, claimColumns, s.table), limit)
	}
	if err != nil {
		c.Release()
		return nil, fmt.Errorf("claim: %w", err)
	}
	for rows.Next() {
		var rw Row
		var typ, payload string
		var brand, owner int64
		if err := rows.Scan(&rw.ID, &rw.Envelope.EventID, &rw.Stream, &typ, &rw.Envelope.SchemaVersion, &brand, &owner,
			&rw.Envelope.AggregateID, &rw.Envelope.OccurredAt, &payload, &rw.Envelope.TraceParent, &rw.Envelope.TraceState,
			&rw.CreatedAt, &rw.Attempts); err != nil {
			rows.Close()
			c.Release()
			return nil, fmt.Errorf("claim: %w", err)
		}
		rw.Envelope.EventType, rw.Envelope.BrandID, rw.OwnerBrand = event.Type(typ), event.BrandID(brand), event.BrandID(owner)
		rw.Envelope.Payload = []byte(payload)
		c.rows = append(c.rows, rw)
	}
	if err := rows.Err(); err != nil {
		c.Release()
		return nil, fmt.Errorf("claim: %w", err)
	}
	// The two halves of a claim around a held range come in id order;
	// sorting costs nothing on sorted rows and keeps Rows' contract
	// independent of the plan.
	if !slices.IsSortedFunc(c.rows, func(a, b Row) int { return cmp.Compare(a.ID, b.ID) }) {
		slices.SortFunc(c.rows, func(a, b Row) int { return cmp.Compare(a.ID, b.ID) })
	}
	if n := len(c.rows); n > 0 {
		c.lo, c.hi = c.rows[0].ID, c.rows[n-1].ID
		s.mu.Lock()
		s.held[c] = struct{}{}
		s.mu.Unlock()
	}
	return c, nil
}

// heldRange returns the ids of this store's one open claim when they are
// consecutive.
func (s *PostgresStore) heldRange() (lo, hi int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.held) != 1 {
		return 0, 0, false
	}
	for c := range s.held {
		lo, hi, ok = c.lo, c.hi, c.hi-c.lo+1 == int64(len(c.rows))
	}
	return lo, hi, ok
}

type pgClaim struct {
	s        *PostgresStore
	tx       pgx.Tx
	ctx      context.Context // for the rollback in Release
	rollback time.Duration   // bound of the rollback in Release
	rows     []Row
	lo, hi   int64 // the first and last id of rows
}

// callBound is how long a call made on behalf of ctx may take when it
// cannot take ctx itself (a claim's rollback in Release, a connection's
// close): what ctx has left (the relay's OpTimeout), else DefaultOpTimeout.
// So a database that stops answering never holds the caller longer than
// its own call would have.
func callBound(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return DefaultOpTimeout
}

func (c *pgClaim) Rows() []Row { return c.rows }

func (c *pgClaim) Finish(ctx context.Context, o Outcome) error {
	defer c.Release()
	if len(o.Published) > 0 {
		if _, err := c.tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET published_at = now() WHERE id = ANY($1)", c.s.table), o.Published); err != nil {
			return fmt.Errorf("mark published (the rows will be appended again): %w", err)
		}
	}
	if len(o.Failed) > 0 {
		// The database computes the backoff, so that next_attempt_at and
		// the claim's now() come from one clock.
		if _, err := c.tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET attempts = attempts + 1, last_error = $2,
			next_attempt_at = now() + least($3::interval * power(2, least(attempts, 30)), $4::interval)
			WHERE id = ANY($1)`, c.s.table), o.Failed, o.LastError, o.Backoff.Initial, o.Backoff.Max); err != nil {
			return fmt.Errorf("record failure: %w", err)
		}
	}
	if len(o.Parked) > 0 {
		ids, reasons := make([]int64, len(o.Parked)), make([]string, len(o.Parked))
		for i, p := range o.Parked {
			ids[i], reasons[i] = p.ID, p.Reason
		}
		if _, err := c.tx.Exec(ctx, fmt.Sprintf(`UPDATE %s t SET parked_at = now(), park_reason = p.reason
			FROM unnest($1::bigint[], $2::text[]) AS p(id, reason) WHERE t.id = p.id`, c.s.table), ids, reasons); err != nil {
			return fmt.Errorf("park: %w", err)
		}
	}
	if len(o.Published) == 0 && len(o.Failed) == 0 && len(o.Parked) == 0 {
		return nil
	}
	if err := c.tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit (appended rows will be appended again): %w", err)
	}
	return nil
}

// Release rolls the claim's transaction back, within the time Claim's ctx
// had (a rollback on a connection that stopped answering gives up and
// closes it: the server drops the locks when it notices).
func (c *pgClaim) Release() {
	ctx, cancel := context.WithTimeout(c.ctx, c.rollback)
	defer cancel()
	_ = c.tx.Rollback(ctx)
	c.s.mu.Lock()
	delete(c.s.held, c)
	c.s.mu.Unlock()
}

// Backlog counts the unpublished rows that are not parked, the age of the
// oldest by the database's clock, and the parked rows, in one statement
// on the two partial indexes.
func (s *PostgresStore) Backlog(ctx context.Context) (Backlog, error) {
	var b Backlog
	var age float64
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*),
		coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8,
		(SELECT count(*) FROM %[1]s WHERE parked_at IS NOT NULL)
		FROM %[1]s WHERE published_at IS NULL AND parked_at IS NULL`, s.table)).Scan(&b.Rows, &age, &b.Parked)
	if err != nil {
		return Backlog{}, err
	}
	b.Oldest = time.Duration(max(age, 0) * float64(time.Second))
	return b, nil
}

// Prune deletes up to limit rows published more than olderThan ago, in one
// statement, oldest first.
func (s *PostgresStore) Prune(ctx context.Context, olderThan time.Duration, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE id IN (
		SELECT id FROM %[1]s WHERE published_at < now() - $1::interval ORDER BY published_at LIMIT $2)`, s.table),
		olderThan, limit)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// Subscribe opens a LISTEN connection on the table's channel (the writer
// notifies it in the writing transaction). While it has none — the
// database is down — Wait just sleeps, and the relay polls. Opening the
// connection, in Subscribe or in a Wait, takes at most 5s and never
// longer than the call's ctx allows.
func (s *PostgresStore) Subscribe(ctx context.Context) Subscription {
	l := &listener{pool: s.pool, channel: s.table}
	l.connect(ctx)
	return l
}

// listener waits for NOTIFY on its own connection, reconnecting when it
// breaks; while it has none it just sleeps (polling).
type listener struct {
	pool    *pgxpool.Pool
	channel string
	conn    *pgx.Conn
}

// connect opens the listening connection; it reports whether it did.
func (l *listener) connect(ctx context.Context) bool {
	// Bounded, so a database that drops packets cannot hold the loop (and
	// its heartbeat) in a connect.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, l.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false
	}
	if _, err = c.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = c.Close(cctx)
		cancel()
		return false
	}
	l.conn = c
	return true
}

// Wait returns on a notification, after d, or when ctx ends. Without a
// listening connection it tries to open one and, when that works, returns
// at once: notifications sent while there was none are lost, so the caller
// must look for rows now.
func (l *listener) Wait(ctx context.Context, d time.Duration) {
	if l.conn != nil && l.conn.IsClosed() {
		l.conn = nil
	}
	if l.conn == nil && l.connect(ctx) {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if l.conn == nil {
		<-wctx.Done()
		return
	}
	if _, err := l.conn.WaitForNotification(wctx); err != nil && wctx.Err() == nil {
		// Failed before its time (the connection broke): drop it, wait out
		// the interval, and reconnect on the next wait.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callBound(wctx))
		_ = l.conn.Close(cctx)
		cancel()
		l.conn = nil
		<-wctx.Done()
	}
}

func (l *listener) Close() {
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = l.conn.Close(ctx)
	}
}
