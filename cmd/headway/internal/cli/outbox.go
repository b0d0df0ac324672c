package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/headwaylabs/headway/outbox"
)

// EnvDatabaseURL names the environment variable that gives
// --database-url's default.
const EnvDatabaseURL = "DATABASE_URL"

var outboxParkedCommand = &command{
	path:    "outbox parked",
	summary: "list parked outbox rows: rows the relay can never append, with the reason",
	help: `Parked lists the rows of an outbox table that the relay parked because it can
never append them to their stream (they do not encode: over the size limit,
or an envelope that does not validate), oldest first: the row id, the
stream, the event's ID and type, when it was parked and why. A parked row is
not retried and holds up no other row; its event is not delivered until it
is unparked (after a fix) or dropped.

Examples:
  headway outbox parked --database-url postgres://relay@db/wallet
  headway outbox parked --table wallet_outbox --limit 0 --json`,
	run: (*app).outboxParked,
}

var outboxUnparkCommand = &command{
	path:    "outbox unpark",
	args:    "ID...",
	summary: "put parked outbox rows back for the relay, after a fix",
	help: `Unpark puts the parked rows with these ids back among the unpublished rows,
due now with no attempts, and notifies the relays. Fix the row (or deploy a
relay that can encode it) first: a row that still does not encode is parked
again. Ids that are not parked rows are left alone and reported; the exit
status is then 1.

Examples:
  headway outbox unpark 4711 4712`,
	run: (*app).outboxUnpark,
}

var outboxDropCommand = &command{
	path:    "outbox drop",
	args:    "ID...",
	summary: "delete parked outbox rows: their events are never appended",
	help: `Drop deletes the parked rows with these ids: by design their events never
reach the stream (re-emit a correct event from the producer if one is due).
Only parked rows are deleted; other ids are left alone and reported, and the
exit status is then 1. Copy a row first if it must be kept.

Examples:
  headway outbox drop 4711`,
	run: (*app).outboxDrop,
}

// pgFlags are the flags of the commands that talk to the outbox's
// PostgreSQL.
type pgFlags struct {
	url     string
	table   string
	timeout time.Duration
}

func (pf *pgFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&pf.url, "database-url", "", "PostgreSQL `URL` or keyword/value string of the outbox's database (default $"+EnvDatabaseURL+")")
	fs.StringVar(&pf.table, "table", outbox.DefaultTable, "outbox `table`")
	fs.DurationVar(&pf.timeout, "timeout", DefaultTimeout, "bound on connecting and on each database call")
}

// store connects to the database and returns the outbox store of the
// table. Messages never repeat the URL nor its password.
func (a *app) store(ctx context.Context, pf *pgFlags) (*outbox.PostgresStore, func(), error) {
	raw := pf.url
	if raw == "" {
		raw = a.env(EnvDatabaseURL)
	}
	if raw == "" {
		return nil, nil, usagef("no database: give --database-url or set %s", EnvDatabaseURL)
	}
	if pf.timeout <= 0 {
		return nil, nil, usagef("--timeout must be positive")
	}
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, nil, usagef("bad --database-url (the URL is not repeated: it may hold a password)")
	}
	cfg.ConnConfig.ConnectTimeout = pf.timeout
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, &dbError{err: err, raw: raw}
	}
	s, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: pool, Table: pf.table})
	if err != nil {
		pool.Close()
		return nil, nil, usagef("bad --table %q: a plain lower-case SQL identifier", pf.table)
	}
	pctx, cancel := context.WithTimeout(ctx, pf.timeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, nil, &dbError{err: fmt.Errorf("PostgreSQL does not answer: %w", err), raw: raw}
	}
	return s, pool.Close, nil
}

// dbError is err with the database URL and its secrets removed.
type dbError struct {
	err error
	raw string
}

func (e *dbError) Error() string {
	msg := strings.ReplaceAll(e.err.Error(), e.raw, "<database-url>")
	for _, s := range urlSecrets(e.raw) {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

func (e *dbError) Unwrap() error { return e.err }

// ParkedRow is one parked row as outbox parked --json writes it.
type ParkedRow struct {
	ID        int64     `json:"id"`
	EventID   string    `json:"event_id"`
	Stream    string    `json:"stream"`
	EventType string    `json:"event_type"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
	ParkedAt  time.Time `json:"parked_at"`
}

func (a *app) outboxParked(ctx context.Context, c *command, args []string) error {
	fs := flagSet(c)
	var (
		pf      pgFlags
		limit   int
		jsonOut bool
	)
	pf.register(fs)
	fs.IntVar(&limit, "limit", DefaultListLimit, "print at most `n` rows; 0 prints all")
	fs.BoolVar(&jsonOut, "json", false, "write JSON instead of a table")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	if limit < 0 {
		return usagef("--limit must not be negative")
	}
	s, closeDB, err := a.store(ctx, &pf)
	if err != nil {
		return err
	}
	defer closeDB()
	qctx, cancel := context.WithTimeout(ctx, pf.timeout)
	defer cancel()
	fetch := 0
	if limit > 0 {
		fetch = limit + 1 // one more tells whether there are more
	}
	rows, err := s.ListParked(qctx, fetch)
	if err != nil {
		return err
	}
	truncated := limit > 0 && len(rows) > limit
	if truncated {
		rows = rows[:limit]
	}
	out := make([]ParkedRow, len(rows))
	for i, r := range rows {
		out[i] = ParkedRow{ID: r.ID, EventID: r.EventID, Stream: r.Stream, EventType: string(r.EventType),
			Reason: r.Reason, CreatedAt: r.CreatedAt.UTC(), ParkedAt: r.ParkedAt.UTC()}
	}
	if jsonOut {
		return writeJSON(a.stdout, struct {
			Table     string      `json:"table"`
			Parked    []ParkedRow `json:"parked"`
			Truncated bool        `json:"truncated"`
		}{s.Table(), out, truncated})
	}
	if len(out) == 0 {
		fmt.Fprintf(a.stdout, "no parked rows in %s\n", s.Table())
		return nil
	}
	t := newTable(a.stdout)
	t.row("ID", "STREAM", "EVENT ID", "TYPE", "PARKED", "REASON")
	for _, r := range out {
		t.row(strconv.FormatInt(r.ID, 10), r.Stream, r.EventID, r.EventType, r.ParkedAt.Format(time.RFC3339), truncate(r.Reason, 80))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if truncated {
		fmt.Fprintf(a.stderr, "more parked rows than --limit %d: raise it, or 0 for all\n", limit)
	}
	return nil
}

func (a *app) outboxUnpark(ctx context.Context, c *command, args []string) error {
	return a.resolveParked(ctx, c, args, "unparked", (*outbox.PostgresStore).Unpark)
}

func (a *app) outboxDrop(ctx context.Context, c *command, args []string) error {
	return a.resolveParked(ctx, c, args, "dropped", (*outbox.PostgresStore).DropParked)
}

// errNotParked: some ids given to unpark or drop were not parked rows.
var errNotParked = errors.New("not parked rows, left alone")

// resolveParked runs op (unpark or drop) on the ids in args and reports
// what it did.
func (a *app) resolveParked(ctx context.Context, c *command, args []string, did string,
	op func(*outbox.PostgresStore, context.Context, ...int64) ([]int64, error)) error {
	fs := flagSet(c)
	var (
		pf      pgFlags
		jsonOut bool
	)
	pf.register(fs)
	fs.BoolVar(&jsonOut, "json", false, "write JSON")
	pos, err := a.parse(c, fs, args, 1, math.MaxInt)
	if err != nil {
		return err
	}
	ids := make([]int64, len(pos))
	for i, p := range pos {
		if ids[i], err = strconv.ParseInt(p, 10, 64); err != nil || ids[i] <= 0 {
			return usagef("%q is not an outbox row id (a positive integer, as 'outbox parked' prints it)", p)
		}
	}
	s, closeDB, err := a.store(ctx, &pf)
	if err != nil {
		return err
	}
	defer closeDB()
	qctx, cancel := context.WithTimeout(ctx, pf.timeout)
	defer cancel()
	done, err := op(s, qctx, ids...)
	if err != nil {
		return err
	}
	var missing []int64
	for _, id := range ids {
		if !slices.Contains(done, id) && !slices.Contains(missing, id) {
			missing = append(missing, id)
		}
	}
	if jsonOut {
		if err := writeJSON(a.stdout, map[string][]int64{did: nonNil(done), "not_parked": nonNil(missing)}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.stdout, "%s %d rows of %s: %s\n", did, len(done), s.Table(), idText(done))
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", errNotParked, idText(missing))
	}
	return nil
}

func nonNil(ids []int64) []int64 {
	if ids == nil {
		return []int64{}
	}
	return ids
}

func idText(ids []int64) string {
	if len(ids) == 0 {
		return "none"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, " ")
}
