package cli

import (
	"strings"
	"testing"

	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/platform"
)

func TestDLQListAndShow(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	stream, dlq := walletKeys(prefix)
	a := deadLetter(t, rdb, prefix, envelope("a", platform.BetSettledConfirmed), "max_deliveries")
	b := deadLetter(t, rdb, prefix, envelope("b", platform.BetRolledBackConfirmed), "handler_permanent")
	c := deadLetterRaw(t, rdb, prefix, legacyFields("c"), "legacy_schema", 1)

	var all struct {
		DeadLetters []DeadLetter `json:"dead_letters"`
		Truncated   bool
	}
	decodeJSON(t, mustRun(t, "dlq", "list", "--prefix", prefix, "--json").stdout, &all)
	if len(all.DeadLetters) != 3 || all.Truncated {
		t.Fatalf("list: %+v", all)
	}
	first := all.DeadLetters[0]
	if first.ID != a || first.Stream != "wallet" || first.DeadLetterKey != dlq || first.EventID != "a" ||
		first.EventType != "BET_SETTLED_CONFIRMED" || first.Reason != "max_deliveries" || first.Deliveries != 5 ||
		first.SourceStream != stream || first.SourceID != "1747300000000-5" || first.Group != platform.ServiceRolling ||
		first.Consumer != "pod-a" || first.Error != "handler: ledger row missing" || first.Legacy || first.Fields != nil {
		t.Errorf("first dead letter: %+v", first)
	}
	if !all.DeadLetters[2].Legacy || all.DeadLetters[2].ID != c {
		t.Errorf("legacy entry not marked: %+v", all.DeadLetters[2])
	}

	filtered := func(args ...string) []string {
		t.Helper()
		var out struct {
			DeadLetters []DeadLetter `json:"dead_letters"`
			Truncated   bool
		}
		decodeJSON(t, mustRun(t, append([]string{"dlq", "list", "--prefix", prefix, "--json"}, args...)...).stdout, &out)
		var ids []string
		for _, dl := range out.DeadLetters {
			ids = append(ids, dl.EventID)
		}
		if out.Truncated {
			ids = append(ids, "…")
		}
		return ids
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--reason", "handler_permanent"}, "b"},
		{[]string{"--reason", "handler_permanent,legacy_schema"}, "b c"},
		{[]string{"--reason", "max_deliveries", "--reason", "legacy_schema"}, "a c"},
		{[]string{"--type", "BET_SETTLED_CONFIRMED"}, "a c"},
		{[]string{"--type", "BET_SETTLED_CONFIRMED", "--reason", "legacy_schema"}, "c"},
		{[]string{"--type", "DEPOSIT_APPROVED"}, ""},
		{[]string{"--limit", "2"}, "a b …"},
		{[]string{"--limit", "3"}, "a b c"},
		{[]string{"--stream", "rolling"}, ""},
	} {
		if got := strings.Join(filtered(tc.args...), " "); got != tc.want {
			t.Errorf("list %q = %q, want %q", tc.args, got, tc.want)
		}
	}

	// The table: one aligned row per entry, errors shown, payloads not.
	r := mustRun(t, "dlq", "list", "--prefix", prefix)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "STREAM  ID") {
		t.Fatalf("table:\n%s", r.stdout)
	}
	col := strings.Index(lines[0], "REASON")
	for i, want := range []string{"max_deliveries", "handler_permanent", "legacy_schema"} {
		if !strings.HasPrefix(lines[i+1][col:], want) {
			t.Errorf("row %d: reason column is not %s: %q", i+1, want, lines[i+1])
		}
	}
	if strings.Contains(r.stdout, "12.50") || !strings.Contains(r.stdout, "ledger row missing") {
		t.Errorf("table shows a payload or lacks the error:\n%s", r.stdout)
	}
	if r = mustRun(t, "dlq", "list", "--prefix", prefix, "--limit", "1"); !strings.Contains(r.stderr, "--limit 1") {
		t.Errorf("no hint that more entries exist: %q", r.stderr)
	}
	if r = mustRun(t, "dlq", "list", "--prefix", prefix, "--reason", "malformed"); r.stdout != "no dead letters\n" {
		t.Errorf("empty list: %q", r.stdout)
	}

	// show: everything, the original fields without the dlq_* ones.
	var dl DeadLetter
	decodeJSON(t, mustRun(t, "dlq", "show", b, "--prefix", prefix, "--json").stdout, &dl)
	want := fieldsOf(t, envelope("b", platform.BetRolledBackConfirmed))
	if dl.ID != b || dl.Reason != "handler_permanent" || len(dl.Fields) != len(want) {
		t.Errorf("show: %+v", dl)
	}
	for k, v := range want {
		if dl.Fields[k] != v {
			t.Errorf("show field %s = %q, want %q", k, dl.Fields[k], v)
		}
	}
	r = mustRun(t, "dlq", "show", "--prefix", prefix, "--stream", "wallet", c)
	for _, want := range []string{"Dead letter " + c, "legacy_schema", "yes: consumers reject it again", "schema_version", "payload"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "dlq_reason") {
		t.Errorf("show lists dlq_* among the original fields:\n%s", r.stdout)
	}

	// A missing entry is a failure, not a usage error.
	r = run(t, "dlq", "show", "--prefix", prefix, "1-1")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "no dead letter 1-1") {
		t.Errorf("missing entry: exit %d, %q", r.code, r.stderr)
	}
}

// TestDLQListTruncated: a list cut by --limit says on stderr how many
// entries it left out, in the table and the JSON form, and still exits 0
// (docs/cli.md says why).
func TestDLQListTruncated(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	deadLetter(t, rdb, prefix, envelope("a", platform.BetSettledConfirmed), "max_deliveries")
	deadLetter(t, rdb, prefix, envelope("b", platform.BetRolledBackConfirmed), "handler_permanent")
	deadLetter(t, rdb, prefix, envelope("c", platform.BetSettledConfirmed), "max_deliveries")

	for _, tc := range []struct {
		args       []string
		shown      int
		total      int
		wantStderr string
	}{
		{[]string{"--limit", "2"}, 2, 3, "showing 2 of 3 dead letters (--limit 2); --limit 0 lists all\n"},
		{[]string{"--limit", "1", "--reason", "max_deliveries"}, 1, 2, "showing 1 of 2 dead letters (--limit 1); --limit 0 lists all\n"},
		{[]string{"--limit", "3"}, 3, 3, ""},
		{[]string{"--limit", "0"}, 3, 3, ""},
	} {
		args := append([]string{"dlq", "list", "--prefix", prefix}, tc.args...)
		r := mustRun(t, args...) // exit 0
		if r.stderr != tc.wantStderr {
			t.Errorf("%q: stderr %q, want %q", tc.args, r.stderr, tc.wantStderr)
		}
		if rows := len(strings.Split(strings.TrimSpace(r.stdout), "\n")) - 1; rows != tc.shown {
			t.Errorf("%q: %d rows, want %d:\n%s", tc.args, rows, tc.shown, r.stdout)
		}
		r = mustRun(t, append(args, "--json")...)
		if r.stderr != tc.wantStderr {
			t.Errorf("%q --json: stderr %q, want %q", tc.args, r.stderr, tc.wantStderr)
		}
		var got struct {
			DeadLetters []DeadLetter `json:"dead_letters"`
			Truncated   bool         `json:"truncated"`
			Total       int          `json:"total"`
		}
		decodeJSON(t, r.stdout, &got)
		if len(got.DeadLetters) != tc.shown || got.Total != tc.total || got.Truncated != (tc.shown < tc.total) {
			t.Errorf("%q --json: %d entries, total %d, truncated %v; want %d of %d",
				tc.args, len(got.DeadLetters), got.Total, got.Truncated, tc.shown, tc.total)
		}
	}
}
