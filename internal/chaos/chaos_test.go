package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// proc is one worker slot: a process that the harness kills and restarts
// under the same name, as a pod keeps its name across container restarts.
type proc struct {
	t    *testing.T
	args []string
	name string
	logs *os.File

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) start() {
	p.t.Helper()
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Stderr, cmd.Stdout = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (p *proc) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func TestChaosNothingLostNothingTwice(t *testing.T) {
	events := envInt("HEADWAY_CHAOS_EVENTS", 3000)
	rate := envInt("HEADWAY_CHAOS_RATE", 150)
	const bad = 12

	dir := t.TempDir()
	bin := filepath.Join(dir, "chaosworker")
	if out, err := exec.Command("go", "build", "-o", bin, "./chaosworker").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	srv := redistest.StartServer(t, redistest.ServerOptions{AppendOnly: true})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	db := pgtest.New(t)
	ctx := context.Background()
	if err := outbox.Migrate(ctx, db.Pool, ""); err != nil {
		t.Fatal(err)
	}
	inbox, _ := dedup.NewPostgres(db.Pool, dedup.PostgresConfig{})
	if err := inbox.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// chaos_applied has no unique key: an event applied twice would show
	// as two rows.
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE chaos_orders (id text PRIMARY KEY);
		CREATE TABLE chaos_applied (event_id text NOT NULL, consumer text NOT NULL, at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}

	logs, err := os.Create(filepath.Join(dir, "workers.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			lines := strings.Split(string(b), "\n")
			t.Logf("last worker log lines:\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	})
	newProc := func(role, name string, extra ...string) *proc {
		return &proc{t: t, name: name, logs: logs, args: append([]string{bin, "-role", role, "-name", name,
			"-database-url", db.URL, "-redis", srv.Addr}, extra...)}
	}
	producer := newProc("producer", "producer", "-count", strconv.Itoa(events), "-rate", strconv.Itoa(rate))
	var victims []*proc
	for i := range 2 {
		victims = append(victims, newProc("relay", fmt.Sprintf("relay-%d", i+1)))
	}
	for i := range 3 {
		victims = append(victims, newProc("consumer", fmt.Sprintf("c%d", i+1)))
	}
	producer.start()
	for _, p := range victims {
		p.start()
	}
	t.Cleanup(func() {
		for _, p := range append(victims, producer) {
			if !p.exited() {
				p.kill()
			}
		}
	})

	// Chaos until the producer is done: every 1–3 s a SIGKILL of a relay or
	// consumer (restarted after a moment), a Redis restart, or terminated
	// PostgreSQL backends; bad entries injected along the way.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills, restarts, terminations, injected := 0, 0, 0, map[string]bool{}
	inject := func() {
		k := len(injected)
		id := fmt.Sprintf("bad-%02d", k)
		fields := map[string]any{event.FieldEventID: id, event.FieldEventType: string(event.BetSettledConfirmed),
			event.FieldSchemaVersion: "2", event.FieldBrandID: "3", event.FieldAggregateID: "bad",
			event.FieldOccurredAt: time.Now().UTC().Format(time.RFC3339Nano), event.FieldPayload: "{}"}
		if k%2 == 0 {
			fields[event.FieldSchemaVersion] = "1" // legacy
		} else {
			delete(fields, event.FieldOccurredAt) // malformed
		}
		for ctx.Err() == nil {
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: event.StreamKey(event.StreamWallet), Values: fields}).Err(); err == nil {
				injected[id] = true
				return
			}
			time.Sleep(100 * time.Millisecond) // Redis is restarting
		}
	}
	for !producer.exited() {
		time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond) // the chaos schedule, not synchronisation
		if len(injected) < bad {
			inject()
		}
		switch r := rng.Float64(); {
		case r < 0.7:
			p := victims[rng.IntN(len(victims))]
			p.kill()
			kills++
			time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond) // how long the pod stays down
			p.start()
		case r < 0.85:
			srv.Restart()
			restarts++
		default:
			var n int
			if err := db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name LIKE 'chaos-%'`).Scan(&n); err == nil && n > 0 {
				terminations += n
			}
		}
	}
	for len(injected) < bad {
		inject()
	}

	// Converge: every event applied, every bad entry dead-lettered, nothing
	// pending.
	dlq := event.DeadLetterKey(event.StreamWallet)
	applied := func() (rows, distinct int) {
		_ = db.Pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT event_id) FROM chaos_applied").Scan(&rows, &distinct)
		return rows, distinct
	}
	testkit.Eventually(t, 120*time.Second, "every event applied and every bad entry dead-lettered", func() bool {
		_, distinct := applied()
		pend, err := rdb.XPending(ctx, event.StreamKey(event.StreamWallet), event.ServiceRolling).Result()
		return distinct == events && rdb.XLen(ctx, dlq).Val() == bad && err == nil && pend.Count == 0
	})

	var produced, unpublished, missing int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE published_at IS NULL),
		count(*) FILTER (WHERE event_id NOT IN (SELECT event_id FROM chaos_applied)) FROM headway_outbox`).
		Scan(&produced, &unpublished, &missing); err != nil {
		t.Fatal(err)
	}
	rows, distinct := applied()
	streamLen := rdb.XLen(ctx, event.StreamKey(event.StreamWallet)).Val()
	msgs, err := rdb.XRange(ctx, dlq, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	dead := map[string]int{}
	for _, m := range msgs {
		id, _ := m.Values[event.FieldEventID].(string)
		dead[id]++
	}
	t.Logf("chaos: %d events produced (outbox), %d stream entries (%d re-appended by relays), %d applied rows, %d distinct; "+
		"%d dead letters of %d injected; %d SIGKILLs, %d Redis restarts, %d PostgreSQL backends terminated",
		produced, streamLen, streamLen-int64(produced)-bad, rows, distinct, len(msgs), bad, kills, restarts, terminations)
	if produced != events || unpublished != 0 || missing != 0 {
		t.Errorf("outbox: %d rows (want %d), %d unpublished, %d never applied", produced, events, unpublished, missing)
	}
	if rows != events || distinct != events {
		t.Errorf("applied %d rows for %d distinct events; want exactly %d each: nothing lost, nothing twice", rows, distinct, events)
	}
	if len(dead) != bad {
		t.Errorf("dead letters by event: %v; want exactly the %d injected", dead, bad)
	}
	for id, n := range dead {
		if !injected[id] || n != 1 {
			t.Errorf("dead letter %q ×%d: want each injected entry once and nothing else", id, n)
		}
	}
}
