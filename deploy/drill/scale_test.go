package drill

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScaleRules(t *testing.T) {
	in := `groups:
  - name: g
    rules:
      - alert: A # for: 5m in a comment is kept
        expr: increase(x_total{le="[5m]x"}[15m]) > 300
        for: 2m
        labels:
          for: 5m
      - alert: B
        expr: >-
          (x unless x offset 15m)
          or max_over_time(y[5m:1m]) == 1
        for: 1h30m
        annotations:
          description: over [15m]
      - alert: C
        expr: rate(z[10m])[30m:] > 0
        for: 0s
      - alert: D
        expr: max by (g) (x_lag_seconds) > 300
      - alert: E
        expr: time() - max(x_measured_timestamp_seconds) > 120 and x_seconds_total > 7
      - alert: F
        expr: >-
          increase(x_duration_seconds_total[5m]) > 3
          or (time() - x_timestamp_seconds > x_after_seconds)
`
	got, changes, err := ScaleRules(in, Scaling{Factor: 60, Floor: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := `groups:
  - name: g
    rules:
      - alert: A # for: 5m in a comment is kept
        expr: increase(x_total{le="[5m]x"}[15s]) > 300
        for: 2s
        labels:
          for: 5s
      - alert: B
        expr: >-
          (x unless x offset 15s)
          or max_over_time(y[5s:2s]) == 1
        for: 1m30s
        annotations:
          description: over [15m]
      - alert: C
        expr: rate(z[10s])[30s:] > 0
        for: 0s
      - alert: D
        expr: max by (g) (x_lag_seconds) > 5
      - alert: E
        expr: time() - max(x_measured_timestamp_seconds) > 2 and x_seconds_total > 2
      - alert: F
        expr: >-
          increase(x_duration_seconds_total[5s]) > 3
          or (time() - x_timestamp_seconds > x_after_seconds)
`
	// A threshold compared on a line that reads a metric in seconds is
	// scaled, to the floor too; on a line with only counters of seconds
	// (_seconds_total) it is a count and kept. E's second threshold shows
	// the rule is per line: keep a gauge in seconds and a count apart.
	// `labels:` then `for: 5m` is a label value that looks like a for:
	// line; the rules file has none, and scaling it would be harmless.
	// The `[5m]` inside a label value is scaled too: rules do not match
	// such strings, and a drill reading one would show it.
	want = strings.Replace(want, `le="[5m]x"`, `le="[5s]x"`, 1)
	if got != want {
		t.Errorf("scaled:\n%s\nwant:\n%s", got, want)
	}
	if len(changes) != 15 {
		t.Errorf("%d changes, want 15: %+v", len(changes), changes)
	}
}

func TestScaleRulesKeepsTheProductionFileValid(t *testing.T) {
	rules := filepath.Join("..", "prometheus", "headway-alerts.yml")
	b, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	scaled, changes, err := ScaleRules(string(b), Scaling{Factor: 60, Floor: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) == 0 {
		t.Fatal("nothing scaled")
	}
	// The three thresholds in seconds, and no other.
	var thresholds []string
	for _, c := range changes {
		if _, err := parseDuration(c.From); err != nil {
			thresholds = append(thresholds, c.From+"→"+c.To)
		}
	}
	if want := []string{"300→5", "300→5", "120→2"}; !slices.Equal(thresholds, want) {
		t.Errorf("thresholds scaled %v, want %v (lag, backlog age, measured timestamp in file order)", thresholds, want)
	}
	for _, l := range strings.Split(scaled, "\n") {
		if f, ok := strings.CutPrefix(strings.TrimSpace(l), "for: "); ok {
			if d, err := parseDuration(f); err != nil || d > time.Minute {
				t.Errorf("unscaled or unreadable for: %q", l)
			}
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("HEADWAY_REQUIRE_TOOLS") != "" {
			t.Fatal("promtool is required (HEADWAY_REQUIRE_TOOLS) and not installed")
		}
		t.Skip("promtool not installed")
	}
	path := filepath.Join(t.TempDir(), "scaled.yml")
	if err := os.WriteFile(path, []byte(scaled), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the scaled file: %v\n%s", err, out)
	}
}

func TestDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{"15m": 15 * time.Minute, "1h30m": 90 * time.Minute,
		"500ms": 500 * time.Millisecond, "2d": 48 * time.Hour, "1w": 7 * 24 * time.Hour} {
		got, err := parseDuration(in)
		if err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, _ := parseDuration(formatDuration(got)); back != got {
			t.Errorf("formatDuration(%v) = %q does not read back", got, formatDuration(got))
		}
	}
	if _, err := parseDuration("5 m"); err == nil {
		t.Error(`parseDuration("5 m"): no error`)
	}
}
