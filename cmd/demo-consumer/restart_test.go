package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/testkit"
)

// stop sends SIGTERM and waits for a clean exit.
func (d *demo) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		d.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not stop within 30s of SIGTERM")
	}
}

// TestDemoSurvivesItsRestart: a second run on the database of a first one
// writes new business rows, without a duplicate key and with its producer
// ready, on the embedded SQLite file and on PostgreSQL.
func TestDemoSurvivesItsRestart(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		testRestart(t, []string{"-data-dir", dir}, nil)
	})
	t.Run("postgres", func(t *testing.T) {
		db := pgtest.New(t)
		// Each run's bets, told apart by the run part of their ids.
		runs := func() int {
			var n int
			if err := db.Pool.QueryRow(context.Background(),
				`SELECT count(DISTINCT split_part(id, '-', 2)) FROM wallet_bets`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		testRestart(t, []string{"-database-url", db.URL}, runs)
	})
}

// testRestart runs the demo twice with args; runs, when set, counts the
// runs that wrote bets.
func testRestart(t *testing.T, args []string, runs func() int) {
	written := func(d *demo) float64 {
		_, scrape := d.get(t, "/metrics")
		return counter(scrape, "headway_outbox_written_total", `stream="events:{wallet}"`)
	}
	first := startDemo(t, args...)
	testkit.Eventually(t, 20*time.Second, "the first run writing rows", func() bool { return written(first) >= 100 })
	first.stop(t)

	second := startDemo(t, args...)
	testkit.Eventually(t, 20*time.Second, "the second run writing rows", func() bool { return written(second) >= 100 })
	_, body := second.get(t, "/ready?full=1")
	if !strings.Contains(body, `"loop/wallet-producer": "OK"`) {
		t.Errorf("/ready?full=1 = %s; want loop/wallet-producer OK", body)
	}
	logs := second.log()
	for _, bad := range []string{"wallet write failed", "UNIQUE constraint", "duplicate key"} {
		if strings.Contains(logs, bad) {
			t.Errorf("the second run logs %q", bad)
		}
	}
	if runs != nil {
		if n := runs(); n != 2 {
			t.Errorf("bets of %d runs in the database, want 2", n)
		}
	}
}
