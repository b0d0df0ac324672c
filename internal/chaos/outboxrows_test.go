package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

// badRow is an outbox row the relay can never append: inserted with SQL,
// past the writer's checks.
type badRow struct {
	kind    string
	eventID string
	refused bool // the database refused the insert (a constraint)
}

// insertBadRows inserts the bad rows: two above event.DefaultMaxEntryBytes
// and one of each envelope defect the schema lets through. A row the
// database refuses with an integrity error (SQLSTATE class 23) is
// recorded as refused; any other error fails the test.
func insertBadRows(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []badRow {
	t.Helper()
	big := fmt.Sprintf(`{"order":"big","pad":"%s"}`, strings.Repeat("x", event.DefaultMaxEntryBytes))
	now := time.Now().UTC().Format(time.RFC3339Nano)
	type row struct {
		kind, id, typ, agg, at, payload, traceparent string
	}
	ok := string(platform.BetSettledConfirmed)
	rows := []row{
		{"too_large", "badrow-too-large-1", ok, "bad", now, big, ""},
		{"too_large", "badrow-too-large-2", ok, "bad", now, big, ""},
		{"event_id_too_long", "badrow-" + strings.Repeat("x", 200), ok, "bad", now, "{}", ""},
		{"empty_aggregate_id", "badrow-empty-aggregate", ok, "", now, "{}", ""},
		{"bad_event_type", "badrow-bad-type", "not a type!", "bad", now, "{}", ""},
		{"bad_traceparent", "badrow-bad-traceparent", ok, "bad", now, "{}", "garbage"},
		{"year_10000", "badrow-year-10000", ok, "bad", "10000-01-01T00:00:00Z", "{}", ""},
	}
	var out []badRow
	for _, r := range rows {
		_, err := pool.Exec(ctx, `INSERT INTO headway_outbox (event_id, stream, event_type, schema_version, brand_id,
			owner_brand_id, aggregate_id, occurred_at, payload, traceparent) VALUES ($1, $2, $3, 2, 3, 3, $4, $5, $6, nullif($7, ''))`,
			r.id, event.StreamKey(platform.StreamWallet), r.typ, r.agg, r.at, r.payload, r.traceparent)
		var pgErr *pgconn.PgError
		refused := errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "23")
		if err != nil && !refused {
			t.Fatalf("insert bad outbox row %s: %v", r.kind, err)
		}
		out = append(out, badRow{kind: r.kind, eventID: r.id, refused: refused})
	}
	return out
}

// parkedColumn finds the outbox column that marks a parked row: parked_at
// if there is one, else the first column whose name starts with
// "parked"; "" when there is none.
func parkedColumn(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var col string
	err := pool.QueryRow(ctx, `SELECT coalesce(min(column_name::text) FILTER (WHERE column_name = 'parked_at'), min(column_name::text), '')
		FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'headway_outbox' AND column_name LIKE 'parked%'`).Scan(&col)
	return col, err
}

// classifyBadRows says how each bad row ended: refused at insert, parked
// (the parked column set; a row moved out of the table counts too), or
// stuck (unpublished and not parked, still retried — or appended to the
// stream, which no relay should do with it). It logs each row.
func classifyBadRows(t *testing.T, ctx context.Context, pool *pgxpool.Pool, rows []badRow) (col string, parked, refused, stuck, maxAttempts int) {
	t.Helper()
	col, err := parkedColumn(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	parkedExpr := "false"
	if col != "" {
		parkedExpr = fmt.Sprintf("(%[1]s IS NOT NULL AND %[1]s::text <> 'false')", pgx.Identifier{col}.Sanitize())
	}
	for _, r := range rows {
		short := r.eventID[:min(len(r.eventID), 40)]
		if r.refused {
			refused++
			t.Logf("bad outbox row %s (%s): refused at insert", short, r.kind)
			continue
		}
		var published, isParked bool
		var attempts int
		var lastErr string
		err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT published_at IS NOT NULL, %s, attempts,
			coalesce(nullif(to_jsonb(o)->>'park_reason', ''), last_error, '')
			FROM headway_outbox o WHERE event_id = $1`, parkedExpr), r.eventID).Scan(&published, &isParked, &attempts, &lastErr)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			parked++
			t.Logf("bad outbox row %s (%s): gone from the outbox (moved out: counted as parked)", short, r.kind)
		case err != nil:
			t.Fatal(err)
		case isParked:
			parked++
			t.Logf("bad outbox row %s (%s): parked after %d attempts: %.160s", short, r.kind, attempts, lastErr)
		default:
			stuck++
			maxAttempts = max(maxAttempts, attempts)
			t.Logf("bad outbox row %s (%s): NOT parked (published %t, %d attempts): %.120s", short, r.kind, published, attempts, lastErr)
		}
	}
	return col, parked, refused, stuck, maxAttempts
}
