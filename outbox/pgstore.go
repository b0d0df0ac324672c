package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/headwaylabs/headway/event"
)

// PostgresStore is the production [Store]: the outbox table of [Migrate]
// in PostgreSQL. Claims are transactions that lock their rows with FOR
// UPDATE SKIP LOCKED, so several relays share the table safely; wake-ups
// come from the writer's NOTIFY on a LISTEN connection of the store's own.
type PostgresStore struct {
	pool  *pgxpool.Pool
	table string
}

var _ Store = (*PostgresStore)(nil)

// NewPostgresStore returns the store of table (default DefaultTable) in
// pool's database. The table must exist (see [Migrate]).
func NewPostgresStore(pool *pgxpool.Pool, table string) (*PostgresStore, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", ErrInvalidConfig)
	}
	if table == "" {
		table = DefaultTable
	}
	if !validTable(table) {
		return nil, fmt.Errorf("%w: table name %q", ErrInvalidConfig, table)
	}
	return &PostgresStore{pool: pool, table: table}, nil
}

// Table returns the outbox table name.
func (s *PostgresStore) Table() string { return s.table }

// Claim begins a transaction and locks up to limit due rows in it.
func (s *PostgresStore) Claim(ctx context.Context, limit int) (Claim, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	c := &pgClaim{s: s, tx: tx, ctx: context.WithoutCancel(ctx)}
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT id, event_id, stream, event_type, schema_version, brand_id,
		owner_brand_id, aggregate_id, occurred_at, payload::text, coalesce(traceparent, ''), coalesce(tracestate, ''),
		created_at, attempts
		FROM %s WHERE published_at IS NULL AND next_attempt_at <= now()
		ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, s.table), limit)
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
	return c, nil
}

type pgClaim struct {
	s    *PostgresStore
	tx   pgx.Tx
	ctx  context.Context // for the rollback in Release
	rows []Row
}

func (c *pgClaim) Rows() []Row { return c.rows }

func (c *pgClaim) Finish(ctx context.Context, published, failed []int64, lastErr string, b Backoff) error {
	defer c.Release()
	if len(published) > 0 {
		if _, err := c.tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET published_at = now() WHERE id = ANY($1)", c.s.table), published); err != nil {
			return fmt.Errorf("mark published (the rows will be appended again): %w", err)
		}
	}
	if len(failed) > 0 {
		// The database computes the backoff, so that next_attempt_at and
		// the claim's now() come from one clock.
		if _, err := c.tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET attempts = attempts + 1, last_error = $2,
			next_attempt_at = now() + least($3::interval * power(2, least(attempts, 30)), $4::interval)
			WHERE id = ANY($1)`, c.s.table), failed, truncate(lastErr, 1024), b.Initial, b.Max); err != nil {
			return fmt.Errorf("record failure: %w", err)
		}
	}
	if len(published) == 0 && len(failed) == 0 {
		return nil
	}
	if err := c.tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit (appended rows will be appended again): %w", err)
	}
	return nil
}

func (c *pgClaim) Release() { _ = c.tx.Rollback(c.ctx) }

// Backlog counts the unpublished rows and the age of the oldest, by the
// database's clock.
func (s *PostgresStore) Backlog(ctx context.Context) (int64, time.Duration, error) {
	var n int64
	var age float64
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*),
		coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8
		FROM %s WHERE published_at IS NULL`, s.table)).Scan(&n, &age)
	if err != nil {
		return 0, 0, err
	}
	return n, time.Duration(max(age, 0) * float64(time.Second)), nil
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
// database is down — Wait just sleeps, and the relay polls.
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
		_ = c.Close(context.WithoutCancel(ctx))
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
		_ = l.conn.Close(context.WithoutCancel(ctx))
		l.conn = nil
		<-wctx.Done()
	}
}

func (l *listener) Close() {
	if l.conn != nil {
		_ = l.conn.Close(context.Background())
	}
}
