package sqliteoutbox

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrInvalidConfig is returned for an invalid table name or a nil
// database.
var ErrInvalidConfig = errors.New("sqliteoutbox: invalid config")

// Open opens (creating if needed) the SQLite database file at path for an
// outbox: write-ahead logging with synchronous FULL (a commit that
// returned survives a power loss), a 10 s busy timeout, foreign keys on,
// and every transaction begun with BEGIN IMMEDIATE, so that a business
// transaction that reads before it writes never fails half-way on a lock
// upgrade. The store itself does not depend on these settings; the
// caller's transactions do.
func Open(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqliteoutbox: open %s: %w", path, err)
	}
	if err := db.Ping(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqliteoutbox: open %s: %w", path, err)
	}
	return db, nil
}

// Config configures a [Store]. DB is required.
type Config struct {
	// DB is the SQLite database, as [Open] returns it.
	DB *sql.DB
	// Table is the outbox table, a name outbox.ValidTableName accepts.
	// Default outbox.DefaultTable.
	Table string
	// Now is the clock of created_at, published_at, leases and the
	// backoff. Default time.Now.
	Now func() time.Time
	// LeaseTTL is how long a claim holds its rows. A relay that dies
	// mid-claim leaves them leased this long; one slower than this may see
	// them claimed and appended again by another (at least once, as with
	// PostgreSQL). A relay claims its next batch while it appends the
	// current one, so a lease covers up to two batches' appends. Default 1
	// minute.
	LeaseTTL time.Duration
}

// Store is an [outbox.Store] on SQLite. It is safe for concurrent use.
type Store struct {
	db    *sql.DB
	table string
	now   func() time.Time
	lease time.Duration

	mu   sync.Mutex
	seq  uint64        // notifications so far
	wake chan struct{} // closed and replaced by Notify
}

var _ outbox.Store = (*Store)(nil)

// Validate reports a nil DB and an invalid Table, wrapping
// [ErrInvalidConfig].
func (c Config) Validate() error {
	if c.DB == nil {
		return fmt.Errorf("%w: nil database", ErrInvalidConfig)
	}
	if c.Table != "" && !outbox.ValidTableName(c.Table) {
		return fmt.Errorf("%w: table name %q", ErrInvalidConfig, c.Table)
	}
	return nil
}

// New returns the store of cfg.Table in cfg.DB. It does not touch the
// database: call [Store.Migrate] before the first claim.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Table == "" {
		cfg.Table = outbox.DefaultTable
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = time.Minute
	}
	return &Store{db: cfg.DB, table: cfg.Table, now: cfg.Now, lease: cfg.LeaseTTL, wake: make(chan struct{})}, nil
}

// Migrate applies the embedded migrations to the store's table, each
// once, recorded in <table>_migrations. It is idempotent.
func (s *Store) Migrate(ctx context.Context) error {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(files)
	return s.inTx(ctx, func(tx *sql.Conn) error {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s_migrations (
			version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`, s.table)); err != nil {
			return fmt.Errorf("sqliteoutbox: migrations table: %w", err)
		}
		for _, f := range files {
			version := strings.TrimSuffix(strings.TrimPrefix(f, "migrations/"), ".sql")
			var n int
			if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM %s_migrations WHERE version = ?", s.table),
				version).Scan(&n); err != nil {
				return fmt.Errorf("sqliteoutbox: migration %s: %w", version, err)
			}
			if n > 0 {
				continue
			}
			body, err := migrations.ReadFile(f)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, strings.ReplaceAll(string(body), "{{table}}", s.table)); err != nil {
				return fmt.Errorf("sqliteoutbox: migration %s: %w", version, err)
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s_migrations (version, applied_at) VALUES (?, ?)", s.table),
				version, s.now().UnixNano()); err != nil {
				return fmt.Errorf("sqliteoutbox: migration %s: %w", version, err)
			}
		}
		return nil
	})
}

// inTx runs fn in a transaction begun with BEGIN IMMEDIATE on a connection
// of its own, whatever the database's DSN says, so that it holds the write
// lock from its first statement and never fails half-way on an upgrade.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Conn) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	if err := fn(conn); err != nil {
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
			// The connection's state is unknown: never give it back to the pool.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		return err
	}
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return err
	}
	return nil
}

// Table returns the outbox table name.
func (s *Store) Table() string { return s.table }

// DB returns the database the store is in.
func (s *Store) DB() *sql.DB { return s.db }

// Notify wakes the relays of this process that wait on the store: call it
// after committing a transaction that wrote outbox rows.
func (s *Store) Notify() {
	s.mu.Lock()
	s.seq++
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

// Claim leases up to limit due rows to this claim in one short statement,
// so SQLite's write lock is never held while the relay talks to Redis: a
// producer's transaction waits at most for that statement. Leased rows are
// not claimed again until the lease is finished, released or run out.
func (s *Store) Claim(ctx context.Context, limit int) (outbox.Claim, error) {
	now := s.now()
	c := &claim{s: s, token: rand.Text(), bound: callBound(ctx)}
	rows, err := s.db.QueryContext(ctx, fmt.Sprintf(`UPDATE %[1]s SET lease_token = ?, lease_until = ?
		WHERE id IN (SELECT id FROM %[1]s WHERE published_at IS NULL AND parked_at IS NULL AND next_attempt_at <= ? AND lease_until <= ?
			ORDER BY id LIMIT ?)
		RETURNING id, event_id, stream, event_type, schema_version, brand_id, owner_brand_id, aggregate_id,
			occurred_at, payload, coalesce(traceparent, ''), coalesce(tracestate, ''), created_at, attempts`, s.table),
		c.token, now.Add(s.lease).UnixNano(), now.UnixNano(), now.UnixNano(), limit)
	if err != nil {
		// The statement may have leased rows before the error (a context
		// cancelled as it finished): give back whatever this token holds,
		// or they would wait out their lease.
		c.Release()
		return nil, fmt.Errorf("claim: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var rw outbox.Row
		var typ, payload string
		var brand, owner, occurred, created int64
		if err := rows.Scan(&rw.ID, &rw.Envelope.EventID, &rw.Stream, &typ, &rw.Envelope.SchemaVersion, &brand, &owner,
			&rw.Envelope.AggregateID, &occurred, &payload, &rw.Envelope.TraceParent, &rw.Envelope.TraceState,
			&created, &rw.Attempts); err != nil {
			_ = rows.Close()
			c.Release()
			return nil, fmt.Errorf("claim: %w", err)
		}
		rw.Envelope.EventType, rw.Envelope.BrandID, rw.OwnerBrand = event.Type(typ), event.BrandID(brand), event.BrandID(owner)
		rw.Envelope.OccurredAt, rw.CreatedAt = time.Unix(0, occurred).UTC(), time.Unix(0, created)
		rw.Envelope.Payload = []byte(payload)
		c.rows = append(c.rows, rw)
	}
	if err := rows.Err(); err != nil {
		_ = rows.Close()
		c.Release()
		return nil, fmt.Errorf("claim: %w", err)
	}
	slices.SortFunc(c.rows, func(a, b outbox.Row) int { return cmp.Compare(a.ID, b.ID) }) // RETURNING has no order
	return c, nil
}

type claim struct {
	s     *Store
	token string
	bound time.Duration // of the statement in Release
	rows  []outbox.Row
	done  bool
}

// callBound is how long Release may take: what Claim's ctx had left (the
// relay's OpTimeout), else outbox.DefaultOpTimeout.
func callBound(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return outbox.DefaultOpTimeout
}

func (c *claim) Rows() []outbox.Row { return c.rows }

// Finish records the outcome in one short transaction, only on rows this
// claim still leases: rows whose lease ran out and were claimed again are
// left to the claim that holds them now.
func (c *claim) Finish(ctx context.Context, o outbox.Outcome) error {
	published, failed, lastErr, b := o.Published, o.Failed, o.LastError, o.Backoff
	if len(published) == 0 && len(failed) == 0 && len(o.Parked) == 0 {
		c.Release()
		return nil
	}
	now := c.s.now()
	attempts := make(map[int64]int, len(c.rows))
	for _, r := range c.rows {
		attempts[r.ID] = r.Attempts
	}
	err := c.s.inTx(ctx, func(tx *sql.Conn) error {
		if len(published) > 0 {
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET published_at = ?, lease_token = NULL, lease_until = 0
				WHERE id IN (SELECT value FROM json_each(?)) AND lease_token = ?`, c.s.table),
				now.UnixNano(), idList(published), c.token); err != nil {
				return fmt.Errorf("mark published (the rows will be appended again): %w", err)
			}
		}
		for _, id := range failed {
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET attempts = attempts + 1, last_error = ?,
				next_attempt_at = ?, lease_token = NULL, lease_until = 0 WHERE id = ? AND lease_token = ?`, c.s.table),
				lastErr, now.Add(b.Delay(attempts[id]+1)).UnixNano(), id, c.token); err != nil {
				return fmt.Errorf("record failure: %w", err)
			}
		}
		for _, p := range o.Parked {
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET parked_at = ?, park_reason = ?,
				lease_token = NULL, lease_until = 0 WHERE id = ? AND lease_token = ?`, c.s.table),
				now.UnixNano(), p.Reason, p.ID, c.token); err != nil {
				return fmt.Errorf("park: %w", err)
			}
		}
		return nil
	})
	c.Release() // rows of the claim that were in neither list
	return err
}

// Release gives back the rows this claim still leases.
func (c *claim) Release() {
	if c.done {
		return
	}
	c.done = true
	ctx, cancel := context.WithTimeout(context.Background(), c.bound)
	defer cancel()
	_, _ = c.s.db.ExecContext(ctx, fmt.Sprintf(
		"UPDATE %s SET lease_token = NULL, lease_until = 0 WHERE lease_token = ?", c.s.table), c.token)
}

// idList renders ids as a JSON array, for json_each.
func idList(ids []int64) string {
	b := make([]byte, 0, len(ids)*8+2)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}

// Backlog counts the unpublished rows that are not parked, the age of the
// oldest, and the parked rows.
func (s *Store) Backlog(ctx context.Context) (outbox.Backlog, error) {
	var b outbox.Backlog
	var oldest sql.NullInt64
	if err := s.db.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*), min(created_at),
		(SELECT count(*) FROM %[1]s WHERE parked_at IS NOT NULL)
		FROM %[1]s WHERE published_at IS NULL AND parked_at IS NULL`, s.table)).Scan(&b.Rows, &oldest, &b.Parked); err != nil {
		return outbox.Backlog{}, err
	}
	if oldest.Valid {
		b.Oldest = max(s.now().Sub(time.Unix(0, oldest.Int64)), 0)
	}
	return b, nil
}

// Prune deletes up to limit rows published more than olderThan ago,
// oldest first.
func (s *Store) Prune(ctx context.Context, olderThan time.Duration, limit int) (int64, error) {
	res, err := s.db.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE id IN (
		SELECT id FROM %[1]s WHERE published_at < ? ORDER BY published_at LIMIT ?)`, s.table),
		s.now().Add(-olderThan).UnixNano(), limit)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Subscribe returns a subscription to [Store.Notify].
func (s *Store) Subscribe(context.Context) outbox.Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &subscription{s: s, seen: s.seq}
}

type subscription struct {
	s    *Store
	seen uint64
}

// Wait returns at once if Notify was called since the last Wait returned
// (so a notification between a claim and this wait is not lost), else on
// the next Notify, after d, or when ctx ends.
func (sub *subscription) Wait(ctx context.Context, d time.Duration) {
	sub.s.mu.Lock()
	seq, wake := sub.s.seq, sub.s.wake
	sub.s.mu.Unlock()
	if seq != sub.seen {
		sub.seen = seq
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-ctx.Done():
	}
	sub.s.mu.Lock()
	sub.seen = sub.s.seq
	sub.s.mu.Unlock()
}

func (sub *subscription) Close() {}
