package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/chaos"
	"github.com/headwaylabs/headway/internal/faultproxy"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
)

// config is one run's shape; see the package doc for the variables.
type config struct {
	events, rate          int
	pgFreeze, redisFreeze time.Duration
	liveness              time.Duration
	transient, sqlFaults  float64
	pgTerminate           float64 // share of chaos steps that terminate the workers' backends
	converge              time.Duration
}

func loadConfig() config {
	return config{
		events:      envInt("HEADWAY_CHAOS_EVENTS", 3000),
		rate:        envInt("HEADWAY_CHAOS_RATE", 150),
		pgFreeze:    envDuration("HEADWAY_CHAOS_PG_FREEZE", 20*time.Second),
		redisFreeze: envDuration("HEADWAY_CHAOS_REDIS_FREEZE", 12*time.Second),
		liveness:    10 * time.Second,
		transient:   envFloat("HEADWAY_CHAOS_TRANSIENT", 0.10),
		sqlFaults:   envFloat("HEADWAY_CHAOS_SQL_FAULTS", 0.05),
		pgTerminate: envFloat("HEADWAY_CHAOS_PG_TERMINATE", 0.15),
		converge:    envDuration("HEADWAY_CHAOS_CONVERGE", 90*time.Second),
	}
}

func TestChaosNothingLostNothingTwice(t *testing.T) {
	cfg := loadConfig()
	const bad = 12

	dir := t.TempDir()
	bin := filepath.Join(dir, "chaosworker")
	if out, err := exec.Command("go", "build", "-o", bin, "./chaosworker").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The workers reach Redis and PostgreSQL through fault proxies, which
	// the harness freezes; the harness itself goes around them.
	srv := redistest.StartServer(t, redistest.ServerOptions{AppendOnly: true})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	redisProxy, err := faultproxy.Start(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redisProxy.Close() })
	db := pgtest.New(t)
	pgURL, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	pgProxy, err := faultproxy.Start(pgURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pgProxy.Close() })
	pgURL.Host = pgProxy.Addr()

	ctx := context.Background()
	migrate(t, ctx, db)

	logPath := filepath.Join(dir, "workers.log")
	if p := os.Getenv("HEADWAY_CHAOS_LOG"); p != "" {
		logPath = p // kept after the run
	}
	logs, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = logs.Close()
		if t.Failed() {
			t.Logf("last worker warnings and errors (dead letters and relay retries left out: the report counts them):\n%s",
				strings.Join(logTail(logs.Name(), 40), "\n"))
		}
	})
	newProc := func(role, name string, extra ...string) *proc {
		p := &proc{t: t, name: name, logs: logs, args: append([]string{bin, "-role", role, "-name", name,
			"-database-url", pgURL.String(), "-redis", redisProxy.Addr()}, extra...)}
		if role != "producer" {
			p.http = freeAddr(t)
			p.args = append(p.args, "-http", p.http, "-liveness-window", cfg.liveness.String())
		}
		return p
	}
	producer := newProc("producer", "producer", "-count", strconv.Itoa(cfg.events), "-rate", strconv.Itoa(cfg.rate))
	var victims []*proc
	for i := range 2 {
		victims = append(victims, newProc("relay", fmt.Sprintf("relay-%d", i+1)))
	}
	for i := range 3 {
		args := []string{"-transient", fmt.Sprint(cfg.transient), "-sql-faults", fmt.Sprint(cfg.sqlFaults)}
		if i == 2 {
			args = append(args, "-batch") // one consumer applies with a BatchHandler, set-based
		}
		victims = append(victims, newProc("consumer", fmt.Sprintf("c%d", i+1), args...))
	}
	start := time.Now()
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
	live := &livePoller{procs: victims, pg: pgProxy, redis: redisProxy, start: start}
	pollCtx, stopPolling := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() { defer close(polled); live.run(pollCtx) }()
	t.Cleanup(func() { stopPolling(); <-polled })
	frz := &freezer{t: t, pg: pgProxy, redis: redisProxy, pgFor: cfg.pgFreeze, redisFor: cfg.redisFreeze,
		first: 4 * time.Second, gap: 3 * time.Second, quiet: 20 * time.Second, start: start,
		stop: make(chan struct{}), done: make(chan struct{})}
	go frz.run()
	t.Cleanup(func() { frz.finish() })

	// Chaos until the producer is done: every 1–3 s a SIGKILL of a relay or
	// consumer (restarted after a moment), a Redis restart, or terminated
	// PostgreSQL backends (neither while that dependency is frozen); bad
	// entries appended to the stream and, once, bad rows inserted into the
	// outbox along the way; the freezes run on their own schedule.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var report chaos.Report
	injected := map[string]bool{}
	inject := func() {
		k := len(injected)
		id := fmt.Sprintf("bad-%02d", k)
		fields := map[string]any{event.FieldEventID: id, event.FieldEventType: string(platform.BetSettledConfirmed),
			event.FieldSchemaVersion: "2", event.FieldBrandID: "3", event.FieldAggregateID: "bad",
			event.FieldOccurredAt: time.Now().UTC().Format(time.RFC3339Nano), event.FieldPayload: "{}"}
		if k%2 == 0 {
			fields[event.FieldSchemaVersion] = "1" // legacy
		} else {
			delete(fields, event.FieldOccurredAt) // malformed
		}
		for ctx.Err() == nil {
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: event.StreamKey(platform.StreamWallet), Values: fields}).Err(); err == nil {
				injected[id] = true
				return
			}
			time.Sleep(100 * time.Millisecond) // Redis is restarting
		}
	}
	var badRows []badRow
	// A producer that is stuck for good ends the chaos too: the report
	// then says what was written.
	produceBy := start.Add(time.Duration(3*cfg.events/cfg.rate)*time.Second + 2*(cfg.pgFreeze+cfg.redisFreeze) + time.Minute)
	for !producer.exited() {
		if time.Now().After(produceBy) {
			t.Errorf("the producer has not finished after %v", time.Since(start).Round(time.Second))
			break
		}
		time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond) // the chaos schedule, not synchronisation
		if badRows == nil {
			badRows = insertBadRows(t, ctx, db.Pool)
		}
		if len(injected) < bad {
			inject()
		}
		// Of the steps, pgTerminate terminate backends, 0.15 restart Redis
		// and the rest kill a worker.
		switch r := rng.Float64(); {
		case r >= 1-cfg.pgTerminate && !pgProxy.Frozen():
			var n int
			if err := db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name LIKE 'chaos-%'`).Scan(&n); err == nil && n > 0 {
				report.PGTerminations += n
			}
		case r >= 1-cfg.pgTerminate-0.15 && !redisProxy.Frozen():
			srv.Restart()
			report.RedisRestarts++
		default:
			p := victims[rng.IntN(len(victims))]
			p.kill()
			report.Kills++
			time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond) // how long the pod stays down
			p.start()
		}
	}
	report.PGFrozen, report.RedisFrozen = frz.finish()
	if badRows == nil {
		badRows = insertBadRows(t, ctx, db.Pool)
	}
	for len(injected) < bad {
		inject()
	}

	// Converge: every good event applied or dead-lettered, every injected
	// entry dead-lettered, nothing pending. A run that does not settle in
	// time is reported as it stands.
	var st state
	deadline := time.Now().Add(cfg.converge)
	for {
		if st, err = readState(ctx, db.Pool, rdb); err != nil {
			t.Fatal(err)
		}
		if report.Converged = st.settled(cfg.events, injected); report.Converged || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	stopPolling()
	<-polled
	report.Took = time.Since(start)
	st.report(&report, injected, cfg.sqlFaults)
	report.ParkedColumn, report.Parked, report.Refused, report.Stuck, report.MaxAttempts = classifyBadRows(t, ctx, db.Pool, badRows)
	report.BadRows = len(badRows)
	report.LivePolls, report.LiveFailures, report.LiveByPhase = live.polls, live.failures, live.byPhase
	for _, s := range live.summary() {
		t.Logf("/live of %s", s)
	}
	logDoubles(t, ctx, db)
	// The consumer with the BatchHandler must have applied its share: a
	// set-based path that never ran would prove nothing.
	var bySet int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM chaos_applied WHERE consumer = 'c3'").Scan(&bySet); err != nil {
		t.Fatal(err)
	}
	t.Logf("effects written by c3, the consumer with the BatchHandler: %d", bySet)
	if bySet == 0 {
		t.Error("the consumer with the BatchHandler applied no event")
	}
	for _, n := range st.notes(injected, cfg.sqlFaults) {
		t.Log(n)
	}
	if !report.Converged {
		// Tells an event still pending (slow, or held) from one
		// acknowledged without its effect (lost).
		t.Logf("entries still pending in the group at the end: %d (-1: unknown)", st.pending)
	}

	t.Log(report.String())
	if report.Events != cfg.events {
		t.Errorf("the producer wrote %d of %d events", report.Events, cfg.events)
	}
	for _, f := range report.Failures() {
		t.Error(f)
	}
}

// migrate creates the outbox, the inbox and the tables of the handlers'
// effects: chaos_orders (the producer's business rows), chaos_applied (one
// row per effect, no unique key: an event applied twice shows as two
// rows), chaos_balances (one row per account) and chaos_constraint (whose
// CHECK the SQL fault violates).
func migrate(t *testing.T, ctx context.Context, db *pgtest.DB) {
	t.Helper()
	store, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: db.Pool})
	if err == nil {
		err = store.Migrate(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := dedup.NewPostgres(dedup.PostgresConfig{Pool: db.Pool})
	if err := inbox.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE chaos_orders (id text PRIMARY KEY);
		CREATE TABLE chaos_applied (event_id text NOT NULL, consumer text NOT NULL, attempt int NOT NULL,
			deliveries bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE chaos_balances (account text PRIMARY KEY, cents bigint NOT NULL DEFAULT 0);
		CREATE TABLE chaos_constraint (v int CHECK (v > 0))`); err != nil {
		t.Fatal(err)
	}
	var accounts []string
	for i := range chaos.Accounts {
		accounts = append(accounts, fmt.Sprintf("acct-%02d", i))
	}
	if _, err := db.Pool.Exec(ctx, "INSERT INTO chaos_balances (account) SELECT unnest($1::text[])", accounts); err != nil {
		t.Fatal(err)
	}
}

// logDoubles logs a few events that took effect more than once, with the
// attempt and delivery of each effect.
func logDoubles(t *testing.T, ctx context.Context, db *pgtest.DB) {
	t.Helper()
	rows, err := db.Pool.Query(ctx, `SELECT event_id, string_agg(format('%s attempt %s delivery %s', consumer, attempt, deliveries), '; ' ORDER BY at)
		FROM chaos_applied GROUP BY event_id HAVING count(*) > 1 ORDER BY event_id LIMIT 5`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, effects string
		if err := rows.Scan(&id, &effects); err != nil {
			t.Fatal(err)
		}
		t.Logf("applied more than once: %s: %s", id, effects)
	}
}

// logTail returns the last n lines of the workers' log at level WARN or
// ERROR, without the dead-letter and relay-retry lines.
func logTail(path string, n int) []string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if (strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`)) &&
			!strings.Contains(l, `"msg":"entry dead-lettered"`) && !strings.Contains(l, `"msg":"relay cycle failed`) {
			out = append(out, l)
		}
	}
	return out[max(0, len(out)-n):]
}
