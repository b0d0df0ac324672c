package healthtable

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// row is one row of the table in docs/health.md.
type row struct {
	id, scenario string
	live, ready  int
	reason       *regexp.Regexp // the Reason cell, … matching any text
	reasonText   string
	status       string   // "loop: idle", "job: overdue", "service: backoff" or "—"
	alerts       []string // the alerts named, in the order written
	alertCells   []alertCell
}

// alertCell is one alert of the "Alerts that fire" cell, as written:
// "HeadwayLoopStalled (critical, for 2m)".
type alertCell struct{ name, severity, forDur string }

const tablePath = "../../docs/health.md"

var (
	cellCode  = regexp.MustCompile("^`([^`]*)`$")
	alertExpr = regexp.MustCompile(`^(Headway[A-Za-z]+) \((critical|warning), for ([0-9a-z]+)\)$`)
)

// readTable parses the table of docs/health.md.
func readTable(t *testing.T) []row {
	t.Helper()
	f, err := os.Open(tablePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	header := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "| Row |") {
			header = true
			continue
		}
		if !header || !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 8 {
			t.Fatalf("docs/health.md: row with %d cells, want 8: %s", len(cells), line)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		r, err := parseRow(cells)
		if err != nil {
			t.Fatalf("docs/health.md: %v: %s", err, line)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("docs/health.md: no table rows found")
	}
	return rows
}

func parseRow(c []string) (row, error) {
	var r row
	m := cellCode.FindStringSubmatch(c[0])
	if m == nil {
		return r, fmt.Errorf("row id %q is not in backquotes", c[0])
	}
	r.id, r.scenario = m[1], c[1]
	var err error
	if r.live, err = strconv.Atoi(c[2]); err != nil {
		return r, fmt.Errorf("/live %q: %v", c[2], err)
	}
	if r.ready, err = strconv.Atoi(c[3]); err != nil {
		return r, fmt.Errorf("/ready %q: %v", c[3], err)
	}
	m = cellCode.FindStringSubmatch(c[4])
	if m == nil {
		return r, fmt.Errorf("reason %q is not in backquotes", c[4])
	}
	r.reasonText = m[1]
	parts := strings.Split(m[1], "…")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	r.reason = regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
	r.status = c[5]
	if c[6] != "none" {
		for _, a := range strings.Split(c[6], "), ") {
			if !strings.HasSuffix(a, ")") {
				a += ")"
			}
			m := alertExpr.FindStringSubmatch(a)
			if m == nil {
				return r, fmt.Errorf("alert %q is not written as \"Name (severity, for D)\"", a)
			}
			r.alerts = append(r.alerts, m[1])
			r.alertCells = append(r.alertCells, alertCell{m[1], m[2], m[3]})
		}
	}
	return r, nil
}

// TestHealthTable runs every row's scenario and compares what it observed
// with the row.
func TestHealthTable(t *testing.T) {
	rows := readTable(t)
	rules := readAlertRules(t)
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.id] {
			t.Fatalf("docs/health.md: row %s twice", r.id)
		}
		seen[r.id] = true
		for _, a := range r.alertCells {
			rule, ok := rules[a.name]
			switch {
			case !ok:
				t.Errorf("row %s names %s, which deploy/prometheus/headway-alerts.yml does not ship", r.id, a.name)
			case rule.severity != a.severity || rule.forDur != a.forDur:
				t.Errorf("row %s: %s is (%s, for %s) in the rules, (%s, for %s) in the table",
					r.id, a.name, rule.severity, rule.forDur, a.severity, a.forDur)
			}
		}
	}
	for id := range scenarios {
		if !seen[id] {
			t.Errorf("scenario %s has no row in docs/health.md", id)
		}
	}
	for _, r := range rows {
		run, ok := scenarios[r.id]
		if !ok {
			t.Errorf("row %s of docs/health.md has no scenario", r.id)
			continue
		}
		t.Run(r.id, func(t *testing.T) {
			t.Parallel()
			o := run(t)
			if t.Failed() {
				return
			}
			check(t, r, o, rules)
		})
	}
}

// check compares an observation with its row.
func check(t *testing.T, r row, o observation, rules map[string]alertRule) {
	t.Helper()
	if o.live != r.live {
		t.Errorf("/live = %d, the table says %d", o.live, r.live)
	}
	if o.ready != r.ready {
		t.Errorf("/ready = %d, the table says %d (%s)", o.ready, r.ready, o.reason)
	}
	if !r.reason.MatchString(o.reason) {
		t.Errorf("reason %q does not match the table's `%s`", o.reason, r.reasonText)
	}
	if o.status != r.status {
		t.Errorf("status metric %q, the table says %q", o.status, r.status)
	}
	var firing []string
	for name, rule := range rules {
		if rule.fires(o.metrics) {
			firing = append(firing, name)
		}
	}
	sort.Strings(firing)
	want := slices.Sorted(slices.Values(r.alerts))
	if !slices.Equal(firing, want) {
		t.Errorf("alerts whose condition holds: %v, the table says %v", firing, want)
	}
}
