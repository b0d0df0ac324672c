package cli

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/outbox/outboxtest"
)

// parkedFixture is a migrated outbox with one published-to-be row and two
// rows parked as the relay parks them.
func parkedFixture(t *testing.T) (db *pgtest.DB, good, bad1, bad2 int64) {
	t.Helper()
	db = pgtest.New(t)
	ctx := context.Background()
	outboxtest.MigratedPostgres(t, db.Pool)
	ids := make([]int64, 3)
	for i, r := range []outbox.Row{outboxtest.Row("events:{wallet}", "ok-1"), outboxtest.Row("events:{wallet}", "bad-1"),
		outboxtest.Row("events:{wallet}", "bad-2")} {
		e := &r.Envelope
		if err := db.Pool.QueryRow(ctx, `INSERT INTO headway_outbox (event_id, stream, event_type, schema_version, brand_id,
			owner_brand_id, aggregate_id, occurred_at, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
			e.EventID, r.Stream, string(e.EventType), e.SchemaVersion, int64(e.BrandID), int64(r.OwnerBrand), e.AggregateID,
			e.OccurredAt, string(e.Payload)).Scan(&ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE headway_outbox SET parked_at = now(),
		park_reason = 'event: entry too large: 1048700 bytes, limit 1048576' WHERE event_id LIKE 'bad-%'`); err != nil {
		t.Fatal(err)
	}
	return db, ids[0], ids[1], ids[2]
}

func rowsWhere(t *testing.T, db *pgtest.DB, where string) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM headway_outbox WHERE "+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOutboxParkedUnparkDrop(t *testing.T) {
	db, good, bad1, bad2 := parkedFixture(t)
	url := "--database-url=" + db.URL
	id := func(n int64) string { return strconv.FormatInt(n, 10) }

	r := mustRun(t, "outbox", "parked", url)
	if !strings.Contains(r.stdout, "bad-1") || !strings.Contains(r.stdout, "bad-2") || strings.Contains(r.stdout, "ok-1") ||
		!strings.Contains(r.stdout, "entry too large") || !strings.Contains(r.stdout, "BET_SETTLED_CONFIRMED") {
		t.Fatalf("outbox parked:\n%s", r.stdout)
	}
	var listed struct {
		Table  string      `json:"table"`
		Parked []ParkedRow `json:"parked"`
		More   bool        `json:"truncated"`
	}
	decodeJSON(t, mustRun(t, "outbox", "parked", url, "--json", "--limit", "1").stdout, &listed)
	if listed.Table != "headway_outbox" || len(listed.Parked) != 1 || !listed.More || listed.Parked[0].ID != bad1 ||
		listed.Parked[0].Stream != "events:{wallet}" || listed.Parked[0].ParkedAt.IsZero() ||
		!strings.Contains(listed.Parked[0].Reason, "entry too large") {
		t.Fatalf("outbox parked --json --limit 1 = %+v", listed)
	}

	// A row that is not parked is left alone and reported: exit 1.
	r = run(t, "outbox", "unpark", url, id(bad1), id(good))
	if r.code != ExitFailure || !strings.Contains(r.stdout, "unparked 1 rows of headway_outbox: "+id(bad1)) ||
		!strings.Contains(r.stderr, "not parked rows, left alone: "+id(good)) {
		t.Fatalf("unpark of a parked and an unparked row: %+v", r)
	}
	if rowsWhere(t, db, "parked_at IS NULL AND published_at IS NULL AND attempts = 0 AND park_reason IS NULL") != 2 {
		t.Fatal("the unparked row is not back among the unpublished rows")
	}

	r = run(t, "outbox", "drop", url, id(good), id(bad2), "--json")
	var dropped map[string][]int64
	decodeJSON(t, r.stdout, &dropped)
	if r.code != ExitFailure || len(dropped["dropped"]) != 1 || dropped["dropped"][0] != bad2 ||
		len(dropped["not_parked"]) != 1 || dropped["not_parked"][0] != good {
		t.Fatalf("drop of an unparked and a parked row: %+v, %v", r, dropped)
	}
	if rowsWhere(t, db, "true") != 2 || rowsWhere(t, db, "id = "+id(bad2)) != 0 {
		t.Fatal("drop must delete the parked row and only it")
	}
	if r := mustRun(t, "outbox", "parked", url); !strings.Contains(r.stdout, "no parked rows in headway_outbox") {
		t.Fatalf("outbox parked after resolving every row:\n%s", r.stdout)
	}
}

func TestOutboxUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"outbox", "parked"}, "no database"},
		{[]string{"outbox", "unpark", "--database-url=postgres://x@127.0.0.1:1/db"}, "missing argument ID..."},
		{[]string{"outbox", "drop", "--database-url=postgres://x@127.0.0.1:1/db", "abc"}, `"abc" is not an outbox row id`},
		{[]string{"outbox", "parked", "--database-url=postgres://x@127.0.0.1:1/db", "--table", "Bad-Name"}, "bad --table"},
		{[]string{"outbox", "parked", "--database-url=postgres://u:s3cret@[::1/db"}, "bad --database-url"},
	} {
		r := run(t, c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "s3cret") {
			t.Errorf("headway %q: exit %d, stderr %q; want exit 2 and %q", c.args, r.code, r.stderr, c.want)
		}
	}
	r := run(t, "outbox", "parked", "--database-url=postgres://u:s3cret@127.0.0.1:1/db", "--timeout", "500ms")
	if r.code != ExitFailure || strings.Contains(r.stderr+r.stdout, "s3cret") {
		t.Fatalf("unreachable database: %+v", r)
	}
}
