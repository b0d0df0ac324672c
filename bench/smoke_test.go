package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// TestSmoke runs every section with small sizes, so that CI notices when
// the command stops working. It needs Redis and PostgreSQL, like headway's
// own tests (HEADWAY_REDIS_ADDR and HEADWAY_DATABASE_URL point it
// elsewhere). The figures of so small a run mean nothing.
func TestSmoke(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out, log bytes.Buffer
	o := defaultOptions()
	if addr := os.Getenv("HEADWAY_REDIS_ADDR"); addr != "" {
		o.RedisAddr = addr
	}
	if url := os.Getenv("HEADWAY_DATABASE_URL"); url != "" {
		o.DatabaseURL = url
	}
	o.N, o.RelayN, o.Rate, o.Seconds, o.ScaleN, o.MemoryN = 2000, 500, 200, 1, 20, 20_000
	o.JSON = filepath.Join(t.TempDir(), "bench.json")
	o.Out, o.Log = &out, &log
	rep, err := run(context.Background(), o)
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, log.String())
	}

	for _, h := range []string{"### Drain", "### Relay", "### Replicas", "### End to end", "### Scale", "### Memory", "### Targets"} {
		if !strings.Contains(out.String(), h) {
			t.Errorf("output lacks %q:\n%s", h, out.String())
		}
	}
	if got := len(rep.Drain.Cases); got != 8 {
		t.Errorf("drain cases = %d, want 8", got)
	}
	if got := len(rep.Drain.Cases[0].Runs); got != o.Repeat {
		t.Errorf("raw drain ran %d times, want %d", got, o.Repeat)
	}
	if got := len(rep.Replicas.Cases); got != 2 {
		t.Errorf("replicas cases = %d, want 2", got)
	}
	for _, c := range slices.Concat(rep.Drain.Cases, rep.Relay.Cases, rep.Replicas.Cases) {
		if c.PerSec <= 0 || c.Ratio <= 0 {
			t.Errorf("%s: %v events/s, ratio %v", c.Name, c.PerSec, c.Ratio)
		}
	}
	if rep.E2E.P50 <= 0 || rep.E2E.P99 < rep.E2E.P50 {
		t.Errorf("e2e: p50 %v ms, p99 %v ms", rep.E2E.P50, rep.E2E.P99)
	}
	if s := rep.Scale; s.Streams != 100 || s.PerSec <= 0 || s.PeakConns == 0 || s.RSSPeak == 0 {
		t.Errorf("scale: %+v", s)
	}
	if m := rep.Memory; m.Samples == 0 || m.RSSMax == 0 {
		t.Errorf("memory: %+v", m)
	}
	if len(rep.Targets) != 9 {
		t.Errorf("%d targets judged, want 9", len(rep.Targets))
	}
	data, err := os.ReadFile(o.JSON)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil || back.Drain == nil || back.Memory == nil {
		t.Errorf("-json output does not read back: %v", err)
	}

	// Nothing of the run is left behind.
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: o.RedisAddr})
	defer func() { _ = rdb.Close() }()
	var left []string
	for cursor := uint64(0); ; {
		keys, next, err := rdb.Scan(ctx, cursor, rep.Prefix+"*", 1000).Result()
		if err != nil {
			t.Fatal(err)
		}
		if left = append(left, keys...); next == 0 {
			break
		}
		cursor = next
	}
	if len(left) > 0 {
		t.Errorf("keys left under %s: %v", rep.Prefix, left)
	}
	conn, err := pgx.Connect(ctx, o.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", rep.Schema).Scan(&n); err != nil || n != 0 {
		t.Errorf("schema %s left behind (%d, %v)", rep.Schema, n, err)
	}
}
