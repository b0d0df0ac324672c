package drill

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/outbox/sqliteoutbox"
	"github.com/headwaylabs/headway/platform"
)

var (
	drillFlag  = flag.Bool("drill", false, "run the alert drill (also: HEADWAY_DRILL=1)")
	scaleFlag  = flag.Int("drill.scale", 60, "divide every alert duration and demo window by this factor")
	holdFlag   = flag.Duration("drill.hold", 0, "keep a fault that has an end at least this long from its start (0: end it once the expected alerts fire); with -drill.scale 1, a real outage")
	reportFlag = flag.String("drill.report", "", "write the measured table as markdown to this `file` (relative: from the repository root)")
)

// The alerts, by name.
const (
	loopStalled     = "HeadwayLoopStalled"
	loopFailing     = "HeadwayLoopFailing"
	relayFailing    = "HeadwayOutboxRelayFailing"
	workerBackoff   = "HeadwayWorkerBackoff"
	workerStopped   = "HeadwayWorkerStopped"
	jobOverdue      = "HeadwayJobOverdue"
	jobFailing      = "HeadwayJobFailing"
	legacyEvents    = "HeadwayLegacySchemaEvents"
	deadLetters     = "HeadwayConsumerDeadLetters"
	lostToTrim      = "HeadwayConsumerLostToTrim"
	entriesTaken    = "HeadwayConsumerEntriesTaken"
	groupRecreated  = "HeadwayConsumerGroupRecreated"
	brandViolations = "HeadwayProducerBrandViolations"
	publishFailures = "HeadwayOutboxPublishFailures"
	loopBehind      = "HeadwayLoopBehind"
	lagTooOld       = "HeadwayConsumerLagTooOld"
	deadLetterFails = "HeadwayConsumerDeadLetterFailing"
	brandMismatch   = "HeadwayBrandMismatchObserved"
	backlogTooOld   = "HeadwayOutboxBacklogTooOld"
	backlogBlind    = "HeadwayOutboxBacklogUnmeasured"
	rowsParked      = "HeadwayOutboxRowsParked"
)

// drillCase is one fault. The expected alerts are what the runbook
// (docs/operations.md, docs/health.md) says the fault pages with; the drill
// waits until exactly they fire together.
type drillCase struct {
	name   string
	expect []string // alerts that must fire together, with no other but tolerated ones
	// tolerate lists alerts the fault may also raise, before or beside
	// the expected ones, each for a reason given at the case: the drill
	// scales the rules and the demo's windows, but not the timeouts
	// compiled into the library, so a loop can be stalled for a scaled 2m
	// before its unscaled timeouts make it failing; and a fault held until
	// its page lasts, scaled, long enough for the warnings that follow a
	// long incident (HeadwayConsumerLagTooOld, HeadwayOutboxBacklogTooOld).
	tolerate []string
	needFlag string // the case is skipped when the demo's -help lacks this flag

	// page is the production time to page from the runbook; the budget to
	// fire is page ÷ S + fixed + slack. fixed is the time the demo needs
	// that the drill cannot scale (timeouts, failure bounds and backoffs
	// compiled into the demo and the library).
	page, fixed time.Duration

	redis    redistest.ServerOptions
	env      []string      // the demo's environment ("KEY=value"), at every start of the case
	flags    []string      // demo flags while the fault lasts; without inject, the fault starts with the demo
	faultFor time.Duration // adds -fault-for: the flags' fault ends by itself this long after the start
	inject   func(e *env)  // injects the fault into a healthy demo; nil: flags do
	end      func(e *env)  // ends the fault; nil: it has no end (a one-off event) or faultFor ends it
}

var cases = []drillCase{
	// The outage budget (docs/operations.md): a refused dependency pages
	// within 3 minutes, through the supervisor's restarts. Tolerated: the
	// relay stalled before its dial retries fail five cycles (in
	// production its 30s stall window is longer than that), the publish
	// failures warning (for: 20m, scaled to 20s) and the backoff of a
	// worker that also fails on start; and the outbox backlog too old:
	// the rows wait for Redis, and the outage held to its page lasts,
	// scaled, past that warning's 10 minutes (docs/operations.md, "When
	// many alerts fire at once"); and the reconciliation job, when the
	// outage caught one group a batch ahead of the other and the gap
	// outlasts the grace (as in the Redis-full case below).
	{name: "Redis outage (redis-server killed)",
		expect: []string{loopFailing, relayFailing}, tolerate: []string{loopStalled, publishFailures, workerBackoff, backlogTooOld, lagTooOld, jobFailing},
		page: 3 * time.Minute, fixed: 40 * time.Second, redis: redistest.ServerOptions{AppendOnly: true},
		inject: func(e *env) { e.redis.Stop() }, end: func(e *env) { e.redis.Restart() }},
	// A hung dependency pages within 4 minutes. Tolerated: stalled while
	// the unscaled read timeouts (Block + 5s each) run up to the failure
	// bound; in production failing comes first (about 30s, against a 30s
	// stall window and 2m of for:); and the backlog and lag warnings and
	// the reconciliation job, as in the outage above.
	{name: "Redis frozen (SIGSTOP)",
		expect: []string{loopFailing, relayFailing}, tolerate: []string{loopStalled, backlogTooOld, lagTooOld, jobFailing},
		page: 4 * time.Minute, fixed: 75 * time.Second, // the relay: 5 cycles of up to two 10s op timeouts, unscaled
		inject: func(e *env) { e.redis.Pause() }, end: func(e *env) { e.redis.Resume() }},
	// The relay crash-loops while the outbox observer measures the rows
	// piling up (docs/operations.md, HeadwayOutboxBacklogTooOld: "the
	// relay is not running").
	{name: "relay down (-fault-crash relay)",
		expect: []string{workerBackoff, backlogTooOld},
		page:   10 * time.Minute, fixed: 15 * time.Second,
		flags: []string{"-fault-crash", "relay"}, faultFor: 35 * time.Second},
	// Neither the relay nor the observer measures the backlog; they never
	// measured since the start, so the timestamp is 0 and as stale as
	// can be. Both crash-loop, which pages as it does for the relay.
	{name: "backlog unmeasured (-fault-crash relay,outbox-observer)",
		expect: []string{backlogBlind, workerBackoff},
		page:   10 * time.Minute, fixed: 15 * time.Second,
		flags: []string{"-fault-crash", "relay,outbox-observer"}, faultFor: 35 * time.Second},
	// The stall pages first (2m30s in production; its own time is in
	// brackets in the report); held, the group stops reading once its
	// batch of 500 is delivered, so its lag grows and
	// HeadwayConsumerLagTooOld follows (10 minutes in production: 5m of
	// lag, then for: 5m), and the reconciliation job fails as in the crash
	// loop (ADR-004).
	{name: "hung handler (-fault-hang promotion)",
		expect: []string{loopStalled, lagTooOld, jobFailing},
		page:   10 * time.Minute, fixed: 15 * time.Second,
		flags: []string{"-fault-hang", "promotion"}, end: redeploy},
	// The reconciliation job sees the projections disagree while rolling
	// applies nothing, and fails loudly (ADR-004).
	{name: "crash loop (-fault-crash rolling)",
		expect: []string{workerBackoff, jobFailing},
		page:   10 * time.Minute, fixed: 15 * time.Second,
		flags: []string{"-fault-crash", "rolling"}, faultFor: 35 * time.Second},
	{name: "overdue job (-fault-job-hang)",
		expect: []string{jobOverdue},
		page:   2 * time.Minute, fixed: 10 * time.Second,
		flags: []string{"-fault-job-hang"}, faultFor: 25 * time.Second},
	{name: "legacy events (-fault-legacy 0.05)",
		expect: []string{legacyEvents},
		page:   time.Minute, fixed: 5 * time.Second,
		flags: []string{"-fault-legacy", "0.05"}, end: redeploy},
	{name: "malformed input (-fault-malformed 0.05)",
		expect: []string{deadLetters},
		page:   time.Minute, fixed: 5 * time.Second,
		flags: []string{"-fault-malformed", "0.05"}, end: redeploy},
	// The demo is killed to end this fault (a clean stop would wait out
	// the hung handler's drain): outbox rows its relay had claimed stay
	// leased for the SQLite store's unscaled 1m lease, so the backlog can
	// age past its scaled threshold until the lease ends — hence the
	// tolerated HeadwayOutboxBacklogTooOld and the minute in fixed.
	{name: "trimmed pending entries (XTRIM MAXLEN 0 under a hung handler)",
		expect: []string{lostToTrim}, tolerate: []string{loopStalled, jobFailing, backlogTooOld},
		page: time.Minute, fixed: 70 * time.Second,
		flags: []string{"-fault-hang", "promotion"}, inject: trimPending},
	{name: "group destroyed (XGROUP DESTROY rolling_service)",
		expect: []string{groupRecreated},
		page:   time.Minute, fixed: 5 * time.Second,
		inject: func(e *env) {
			e.redisDo(func(ctx context.Context, c *redis.Client) error {
				return c.XGroupDestroy(ctx, event.StreamKey(platform.StreamWallet), platform.ServiceRolling).Err()
			})
		}},
	{name: "brand violations (-fault-producer-violation 0.05)",
		expect: []string{brandViolations}, needFlag: "-fault-producer-violation",
		page: time.Minute, fixed: 5 * time.Second,
		flags: []string{"-fault-producer-violation", "0.05"}, end: redeploy},
	{name: "permanent stop (-fault-stop rolling)",
		expect: []string{workerStopped}, needFlag: "-fault-stop",
		page: time.Minute, fixed: 5 * time.Second,
		flags: []string{"-fault-stop", "rolling"}, end: redeploy},
	{name: "brand mismatches observed (MULTI_BRAND_ENFORCEMENT=observe, -fault-mismatch 0.05)",
		expect: []string{brandMismatch},
		page:   time.Minute, fixed: 5 * time.Second, env: []string{"MULTI_BRAND_ENFORCEMENT=observe"},
		flags: []string{"-fault-mismatch", "0.05"}, end: redeploy},
	// A handler slower than the producer: the promotion group progresses
	// and its backlog grows.
	//
	// The consumer measures its backlog every 5s (InfoInterval, compiled
	// in), so the case keeps a stall window of 10s instead of the scaled
	// 2s: behind means a backlog that did not fall across a whole window,
	// which two measurements must show (in production 5s against 30s).
	// The consumers read 50 entries at a time (-batch-size): with the
	// default 500, a read of the slowed group could take more entries
	// than arrived since the last measurement, so its backlog fell (not
	// behind), and the batch could outlast the window (stalled) — both
	// seen in CI runs, either of which kept HeadwayLoopBehind from firing.
	// The reconciliation job finds promotion's projection behind
	// rolling's beyond its grace and fails (ADR-004), as in the crash
	// loop. Tolerated: under load the slowed group can go a whole window
	// without acknowledging; and once its batch of 500 is delivered its
	// lag grows, so HeadwayConsumerLagTooOld follows, as the runbook says
	// it does when a loop stays behind.
	{name: "slow consumer (-fault-slow promotion=300ms)",
		expect: []string{loopBehind, jobFailing}, tolerate: []string{loopStalled, lagTooOld}, needFlag: "-fault-slow",
		page: 15 * time.Minute, fixed: 25 * time.Second,
		flags: []string{"-fault-slow", "promotion=300ms", "-stall-window", "10s", "-batch-size", "50"}, end: redeploy},
	// The dead-letter key holds a string: each malformed entry fails to be
	// dead-lettered (WRONGTYPE) and stays pending. Ended as the runbook
	// says (the key deleted), then a redeploy, whose consumer reads its
	// own pending entries at once and dead-letters them, instead of
	// waiting out ReclaimIdle; HeadwayConsumerDeadLetters then fires
	// after the fault, while the case resolves.
	{name: "dead letters unwritable (WRONGTYPE on events:{wallet}:dlq)",
		expect: []string{deadLetterFails},
		page:   5 * time.Minute, fixed: 10 * time.Second,
		inject: breakDeadLetters, end: func(e *env) {
			e.redisDo(func(ctx context.Context, c *redis.Client) error {
				return c.Del(ctx, event.DeadLetterKey(platform.StreamWallet)).Err()
			})
			e.start()
		}},
	// Redis at maxmemory with noeviction refuses every XADD (OOM) and
	// serves everything else: the relay claims rows and fails each append,
	// so it is failing (2m) and, held, its rows fail in every window
	// (HeadwayOutboxPublishFailures, for: 20m: the case is held until that
	// warning fires). Tolerated: the relay stalled before its failures
	// reach the bound, its backoff (a relay that fails its cycles returns
	// and is restarted, as in the outage), the backlog too old, as the
	// rows wait; and the consumers stalled: their Redis dedup store cannot
	// take leases (SET is refused too), so entries read before the fault
	// stay pending; and with them the reconciliation job, when one group
	// applied a bet the stalled one holds pending past the grace (whether
	// it does depends on where the fault cut the last batch).
	{name: "Redis full (maxmemory reached, noeviction)",
		expect: []string{relayFailing, publishFailures}, tolerate: []string{loopStalled, backlogTooOld, workerBackoff, jobFailing},
		page: 20 * time.Minute, fixed: 30 * time.Second,
		inject: func(e *env) { setMaxMemory(e, "1") }, end: func(e *env) { setMaxMemory(e, "0") }},
	// The demo is paused (SIGSTOP) while its promotion consumer runs a
	// batch (slowed to 300ms an entry), for longer than ReclaimIdle;
	// another consumer of the group reclaims the entries, as a second pod
	// would; then the demo resumes. Before it acknowledges the batch it
	// refreshes it once more (it went unrefreshed for over
	// ReclaimIdle/2), finds the entries taken and counts them.
	// ReclaimIdle is takenReclaimIdle, not the demo's 30s: it must exceed
	// the handlers' 5s timeout, so it cannot be scaled ÷60, and a pause
	// longer than the rule's scaled 15s window would leave the counter's
	// last value before the pause out of the window, so increase() could
	// not see the jump. Tolerated: the slowed group's own alerts, as in
	// the slow consumer case; the reconciliation job overdue (the process
	// was stopped past its interval); and what a gap in the scrape leaves
	// behind once the demo is back (the backlog measured late).
	{name: "entries taken in flight (SIGSTOP past ReclaimIdle, another consumer reclaims; -fault-slow promotion=300ms)",
		expect: []string{entriesTaken}, tolerate: []string{loopBehind, loopStalled, lagTooOld, jobFailing, jobOverdue, backlogBlind, backlogTooOld},
		needFlag: "-reclaim-idle", page: time.Minute, fixed: 25 * time.Second,
		flags: []string{"-fault-slow", "promotion=300ms", "-reclaim-idle", takenReclaimIdle.String()}, inject: pauseWhileTaken, end: redeploy},
	// A row the relay can never append (over the entry size limit),
	// written by hand in SQL: the writer refuses such events. Ended as
	// the runbook says: the operator drops it.
	{name: "row parked (a too-large row written to the outbox in SQL)",
		expect: []string{rowsParked},
		page:   time.Minute, fixed: 5 * time.Second,
		inject: insertTooLargeRow, end: dropTooLargeRow},
}

// slack covers scrape and evaluation (1s each), the demo's start and the
// rule's pending-to-firing step.
const slack = 10 * time.Second

// resolveWindow is the longest rule window in production: the "any
// increase" alerts resolve that long after the last event.
const resolveWindow = 15 * time.Minute

// env is what a case's fault acts on.
type env struct {
	t      *testing.T
	bin    string
	vars   []string // the case's environment variables
	data   string   // the demo's -data-dir (its SQLite outbox is wallet.db there)
	redis  *redistest.Server
	base   []string // demo flags of every start: address, Redis, data, scaled windows
	demo   *demo
	listen string
	t0     time.Time // when the fault began
}

// start (re)starts the demo with the case's base flags plus flags, on the
// same address, Redis and data directory; a running demo is stopped first
// (SIGTERM).
func (e *env) start(flags ...string) {
	e.t.Helper()
	if e.demo != nil {
		e.demo.stop()
	}
	e.demo = startDemo(e.t, e.bin, e.vars, append(slices.Clone(e.base), flags...)...)
}

func (e *env) redisDo(f func(context.Context, *redis.Client) error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f(ctx, e.redis.Client()); err != nil {
		e.t.Fatal(err)
	}
}

// redeploy ends a fault the process was started with: the fixed build
// replaces it (stopped as a rollout stops it, started without the fault
// flags).
func redeploy(e *env) { e.start() }

// trimPending trims the stream while the promotion group has entries
// pending (its handler hangs), then replaces the demo (killed) with one
// whose handler works: it reads its own pending entries first and finds
// them trimmed.
func trimPending(e *env) {
	stream := event.StreamKey(platform.StreamWallet)
	var pending int64
	if !poll(20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		p, err := e.redis.Client().XPending(ctx, stream, platform.ServicePromotion).Result()
		if err == nil {
			pending = p.Count
		}
		return pending > 0
	}) {
		e.t.Fatal("no entry pending for the promotion group within 20s")
	}
	e.redisDo(func(ctx context.Context, c *redis.Client) error { return c.XTrimMaxLen(ctx, stream, 0).Err() })
	e.t.Logf("trimmed %s with %d entries pending for %s", stream, pending, platform.ServicePromotion)
	// Killed, not stopped: a clean stop waits out the hung handler's
	// drain (8s, unscaled), longer than the scaled 2s in which
	// HeadwayOutboxBacklogUnmeasured notices that nothing measures.
	e.demo.kill()
	e.start()
}

// setMaxMemory sets Redis's maxmemory (bytes; "0" lifts it) with the
// noeviction policy: at "1" every write that may grow memory is refused.
func setMaxMemory(e *env, bytes string) {
	e.redisDo(func(ctx context.Context, c *redis.Client) error {
		if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
			return err
		}
		return c.ConfigSet(ctx, "maxmemory", bytes).Err()
	})
}

// takenReclaimIdle is the demo's ReclaimIdle in the entries-taken case.
const takenReclaimIdle = 6 * time.Second

// pauseWhileTaken stops the demo (SIGSTOP) while entries are pending for
// its promotion consumer, waits until they have been idle for ReclaimIdle
// (takenReclaimIdle), reclaims them as another consumer of the group would
// (XAUTOCLAIM with that idle time), and resumes the demo (SIGCONT).
func pauseWhileTaken(e *env) {
	stream := event.StreamKey(platform.StreamWallet)
	pendingHere := func(minIdle time.Duration) int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		p, err := e.redis.Client().XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: platform.ServicePromotion,
			Start: "-", End: "+", Count: 1000, Idle: minIdle}).Result()
		if err != nil {
			return 0
		}
		n := 0
		for _, x := range p {
			if x.Consumer != thief {
				n++
			}
		}
		return n
	}
	if !poll(20*time.Second, func() bool { return pendingHere(0) > 0 }) {
		e.t.Fatal("no entry pending for the promotion group within 20s")
	}
	if err := e.demo.signal(syscall.SIGSTOP); err != nil {
		e.t.Fatal(err)
	}
	defer func() {
		if err := e.demo.signal(syscall.SIGCONT); err != nil {
			e.t.Error(err)
		}
	}()
	reclaimIdle := takenReclaimIdle
	if !poll(reclaimIdle+15*time.Second, func() bool { return pendingHere(reclaimIdle) > 0 }) {
		e.t.Fatal("the paused demo's entries never went idle for ReclaimIdle")
	}
	var taken []string
	e.redisDo(func(ctx context.Context, c *redis.Client) error {
		var err error
		taken, _, err = c.XAutoClaimJustID(ctx, &redis.XAutoClaimArgs{Stream: stream, Group: platform.ServicePromotion,
			Consumer: thief, MinIdle: reclaimIdle, Start: "0-0", Count: 1000}).Result()
		return err
	})
	e.t.Logf("%s reclaimed %d entries from the paused demo", thief, len(taken))
}

// thief is the consumer name under which pauseWhileTaken reclaims entries.
const thief = "drill-other-pod"

// breakDeadLetters replaces the dead-letter stream with a string, once the
// consumers run (a consumer refuses to start on such a key), and appends
// malformed entries for them to dead-letter.
func breakDeadLetters(e *env) {
	e.redisDo(func(ctx context.Context, c *redis.Client) error {
		key := event.DeadLetterKey(platform.StreamWallet)
		if err := c.Del(ctx, key).Err(); err != nil {
			return err
		}
		if err := c.Set(ctx, key, "not a stream", 0).Err(); err != nil {
			return err
		}
		for i := range 3 {
			if err := c.XAdd(ctx, &redis.XAddArgs{Stream: event.StreamKey(platform.StreamWallet),
				Values: map[string]any{event.FieldEventID: fmt.Sprintf("drill-malformed-%d", i), event.FieldPayload: `{"bet_id": "truncated`}}).Err(); err != nil {
				return err
			}
		}
		return nil
	})
}

// tooLargeID is the event ID of the row insertTooLargeRow writes.
const tooLargeID = "drill-too-large"

// insertTooLargeRow writes one outbox row whose entry is over the stream
// entry size limit into the demo's SQLite outbox, as a hand-written SQL
// insert would: the relay parks it at its first claim.
func insertTooLargeRow(e *env) {
	payload := `"` + strings.Repeat("x", event.DefaultMaxEntryBytes) + `"`
	now := time.Now().UnixNano()
	e.sql(`INSERT INTO `+outbox.DefaultTable+` (event_id, stream, event_type, schema_version, brand_id, owner_brand_id,
		aggregate_id, occurred_at, payload, created_at) VALUES (?, ?, ?, ?, 1, 1, 'bet-drill', ?, ?, ?)`,
		tooLargeID, event.StreamKey(platform.StreamWallet), string(platform.BetSettledConfirmed), event.CurrentSchemaVersion,
		now, payload, now)
}

// dropTooLargeRow deletes the parked row, as `headway outbox drop` does.
func dropTooLargeRow(e *env) {
	e.sql(`DELETE FROM `+outbox.DefaultTable+` WHERE event_id = ? AND parked_at IS NOT NULL`, tooLargeID)
}

// sql runs one statement on the demo's SQLite outbox, beside the demo.
func (e *env) sql(q string, args ...any) {
	e.t.Helper()
	db, err := sqliteoutbox.Open(filepath.Join(e.data, "wallet.db"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := db.ExecContext(ctx, q, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		e.t.Fatalf("%d rows affected by %.40s…, want 1", n, q)
	}
}

// result is one row of the report.
type result struct {
	name, expected, fired, toFire, toResolve, verdict string
}

func TestDrill(t *testing.T) {
	if !*drillFlag && os.Getenv("HEADWAY_DRILL") == "" {
		t.Skip("the alert drill runs with -drill or HEADWAY_DRILL=1 (a few minutes; see README.md)")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("the drill needs prometheus in PATH (apt-get install prometheus)")
	}
	s := Scaling{Factor: *scaleFlag, Floor: 2 * time.Second}
	raw, err := os.ReadFile(filepath.Join("..", "prometheus", "headway-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	scaled, changes, err := ScaleRules(string(raw), s)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var summary []string
	for _, c := range changes {
		if k := c.From + "→" + c.To; !seen[k] {
			seen[k] = true
			summary = append(summary, k)
		}
	}
	t.Logf("rules scaled by %d (floor %v): %s", s.Factor, s.Floor, strings.Join(summary, ", "))
	dir := t.TempDir()
	rules := filepath.Join(dir, "headway-alerts.scaled.yml")
	if err := os.WriteFile(rules, []byte(scaled), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, help := buildDemo(t, dir)
	p := startPrometheus(t, promBin, rules)

	var results []result
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := result{name: c.name, expected: strings.Join(c.expect, ", "),
				fired: "none", toFire: "—", toResolve: "—", verdict: "ok"}
			defer func() {
				if t.Failed() && r.verdict == "ok" {
					r.verdict = "FAILED: see the test log"
				}
				results = append(results, r)
			}()
			runCase(t, p, bin, help, s, fmt.Sprintf("drill-%d", i), c, &r)
		})
	}

	var lines []string
	for _, r := range results {
		line := fmt.Sprintf("%s → %s → %s → %s", r.name, r.fired, r.toFire, r.toResolve)
		lines = append(lines, line)
		t.Log(line + "  [" + r.verdict + "]")
	}
	fmt.Println("\nalert drill (scale ÷" + fmt.Sprint(s.Factor) + "): fault → alerts fired → time to fire → time to resolve")
	fmt.Println(strings.Join(lines, "\n"))
	if *reportFlag != "" {
		writeReport(t, *reportFlag, s, results)
	}
}

func runCase(t *testing.T, p *prom, bin, help string, s Scaling, job string, c drillCase, r *result) {
	if c.needFlag != "" && !strings.Contains(help, c.needFlag+" ") {
		r.fired, r.verdict = "—", "skipped: the demo has no "+c.needFlag
		t.Skip(r.verdict)
	}
	e := &env{t: t, bin: bin, vars: c.env, data: t.TempDir(), redis: redistest.StartServer(t, c.redis), listen: freeAddr(t)}
	e.base = []string{"-listen", e.listen, "-redis-url", "redis://" + e.redis.Addr + "/0",
		"-data-dir", e.data, "-consumer", "drill",
		"-stall-window", s.Apply(30 * time.Second).String(),
		"-reconcile-interval", s.Apply(10 * time.Second).String(),
		"-reconcile-grace", s.Apply(30 * time.Second).String(),
		"-alert-window", s.Apply(5 * time.Minute).String()}
	p.setTarget(t, job, e.listen)
	t.Cleanup(func() { p.setTarget(t, "", "") })

	var problems []string
	defer func() {
		if len(problems) > 0 {
			r.verdict = "MISMATCH: " + strings.Join(problems, "; ")
			t.Errorf("%s: %s", c.name, strings.Join(problems, "; "))
		}
	}()

	flags := slices.Clone(c.flags)
	if c.faultFor > 0 {
		flags = append(flags, "-fault-for", c.faultFor.String())
	}
	e.t0 = time.Now()
	e.start(flags...)
	if !poll(20*time.Second, func() bool { return p.scraped(job) }) {
		t.Fatalf("prometheus did not scrape the demo at %s within 20s", e.listen)
	}
	if c.inject != nil {
		if len(c.flags) == 0 {
			ok := poll(30*time.Second, func() bool {
				code, _ := httpGet("http://" + e.listen + "/ready")
				f, err := p.firing(job)
				return code == 200 && err == nil && len(f) == 0
			})
			if !ok {
				f, _ := p.firing(job)
				problems = append(problems, fmt.Sprintf("not ready and quiet before the fault (firing: %v)", names(f)))
			}
		}
		e.t0 = time.Now()
		c.inject(e)
	}

	// Fire: until the expected alerts fire together, with no other beside
	// them than tolerated ones. The time to fire is when every expected
	// alert first fires at once.
	budget := s.Apply(c.page) + c.fixed + slack
	first := map[string]time.Duration{} // alert name → first firing
	about := map[string][]string{}      // alert name → what it fired about
	var order, current []string
	var allFiring time.Duration
	want := sortedCopy(c.expect)
	exact := poll(time.Until(e.t0.Add(budget)), func() bool {
		f, err := p.firing(job)
		if err != nil {
			t.Log(err)
			return false
		}
		current = names(f)
		for _, a := range f {
			if _, ok := first[a.name]; !ok {
				first[a.name] = time.Since(e.t0)
				order = append(order, a.name)
			}
			if a.about != "" && !slices.Contains(about[a.name], a.about) {
				about[a.name] = append(about[a.name], a.about)
			}
		}
		if allFiring == 0 && containsAll(current, want) {
			allFiring = time.Since(e.t0)
		}
		return containsAll(current, want) && containsAll(append(slices.Clone(c.expect), c.tolerate...), current)
	})
	var firedList []string
	for _, a := range order {
		detail := seconds(first[a])
		if len(about[a]) > 0 {
			detail += "; " + strings.Join(about[a], ", ")
		}
		firedList = append(firedList, fmt.Sprintf("%s (%s)", a, detail))
	}
	if len(firedList) > 0 {
		r.fired = strings.Join(firedList, ", ")
	}
	if allFiring > 0 {
		r.toFire = seconds(allFiring)
	} else {
		r.toFire = "not within " + seconds(budget)
		problems = append(problems, fmt.Sprintf("expected %v firing together within %v; firing at the end %v", c.expect, budget, current))
	}
	var extra []string
	for _, a := range order {
		if !slices.Contains(c.expect, a) && !slices.Contains(c.tolerate, a) {
			extra = append(extra, a)
		}
	}
	if len(extra) > 0 {
		problems = append(problems, fmt.Sprintf("also fired %v", extra))
	} else if allFiring > 0 && !exact {
		problems = append(problems, fmt.Sprintf("never %v without others within %v (firing at the end %v)", c.expect, budget, current))
	}

	// Resolve: from the fault's end until no alert of the case fires.
	switch {
	case c.end != nil:
		if wait := time.Until(e.t0.Add(*holdFlag)); wait > 0 {
			<-time.After(wait) // the outage's length: -drill.hold
		}
		c.end(e)
	case c.faultFor > 0: // the demo's clock starts a little after t0
		if wait := time.Until(e.t0.Add(c.faultFor)); wait > 0 {
			<-time.After(wait)
		}
	}
	ended := time.Now()
	resolveBudget := s.Apply(resolveWindow) + c.fixed + slack
	resolved := poll(resolveBudget, func() bool {
		f, err := p.firing(job)
		current = names(f)
		return err == nil && len(f) == 0
	})
	if resolved {
		r.toResolve = seconds(time.Since(ended))
	} else {
		r.toResolve = "not within " + seconds(resolveBudget)
		problems = append(problems, fmt.Sprintf("still firing %v %v after the fault ended", current, resolveBudget))
	}
}

// containsAll reports whether every element of want is in have.
func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// writeReport writes the results as a markdown table.
func writeReport(t *testing.T, path string, s Scaling, results []result) {
	t.Helper()
	if !filepath.IsAbs(path) {
		path = filepath.Join("..", "..", path)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Alert drill: the rules of deploy/prometheus/headway-alerts.yml with every `for:`, range and offset divided by %d (floor %v), scraped and evaluated every 1s; the demo's stall window, reconciliation interval and grace and alert window divided likewise. Times are measured from the fault (or the demo's start, for faults given as flags) and from the fault's end. An alert's time in brackets is when it first fired.\n\n", s.Factor, s.Floor)
	b.WriteString("| fault | expected | alerts fired | time to fire | time to resolve | result |\n|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.name, r.expected, r.fired, r.toFire, r.toResolve, r.verdict)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Errorf("write report: %v", err)
		return
	}
	t.Logf("report written to %s", path)
}
