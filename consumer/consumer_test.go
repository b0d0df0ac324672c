package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

func walletStream(prefix string) string { return prefix + event.StreamKey(platform.StreamWallet) }

func handlersFor(h consumer.Handler) map[event.Type]consumer.Handler {
	return map[event.Type]consumer.Handler{platform.BetSettledConfirmed: h, platform.BetRolledBackConfirmed: h}
}

func TestHappyPath(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	rec := newRecorder()
	h := start(t, fastConfig(rdb, stream, handlersFor(rec.handle)))

	var envs []event.Envelope
	for i, id := range ids("e", 50) {
		envs = append(envs, envelope(id, platform.BetSettledConfirmed, fmt.Sprintf("bet-%d", i%7), 3, map[string]int{"n": i}))
	}
	entryIDs := publish(t, rdb, stream, envs...)
	testkit.Eventually(t, 5*time.Second, "50 events applied", func() bool { return rec.n() == 50 })
	testkit.Eventually(t, 5*time.Second, "pending list empty", func() bool { return h.pending() == 0 })
	testkit.Eventually(t, 5*time.Second, "watermark at the last entry", func() bool { return h.wm.Snapshot().Position == entryIDs[49] })
	for _, id := range ids("e", 50) {
		if rec.times(id) != 1 {
			t.Errorf("%s applied %d times", id, rec.times(id))
		}
	}
	if got := h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied); got != 50 {
		t.Errorf("applied counter = %v, want 50", got)
	}
	testkit.Eventually(t, 5*time.Second, "idle consumer ready with zero backlog", func() bool {
		snap := h.wm.Snapshot()
		n, known := snap.Backlog, snap.BacklogKnown
		return known && n == 0 && h.wm.Status().Ready()
	})
}

func TestRetryThenSuccess(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var calls atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		if calls.Add(1) < 3 {
			return errors.New("database busy")
		}
		return nil
	}
	h := start(t, fastConfig(rdb, stream, handlersFor(handler)))
	publish(t, rdb, stream, envelope("r1", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "applied after retries", func() bool {
		return h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 1
	})
	if c := calls.Load(); c != 3 {
		t.Errorf("handler called %d times, want 3", c)
	}
	if r := h.counter("headway_consumer_handler_retries_total", nil); r != 2 {
		t.Errorf("retries = %v, want 2", r)
	}
	testkit.Eventually(t, 5*time.Second, "acknowledged", func() bool { return h.pending() == 0 })
}

func TestAlwaysFailingIsDeadLetteredAfterMaxDeliveries(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var calls atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		calls.Add(1)
		return fmt.Errorf("wallet row locked (delivery %d)", m.Deliveries)
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.MaxDeliveries = 3
	cfg.Retry = consumer.RetryPolicy{Attempts: 2, Backoff: backoff.Exponential{Initial: time.Millisecond, Max: time.Millisecond}}
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle = 200 * time.Millisecond
	cfg.ReclaimInterval = 50 * time.Millisecond
	h := start(t, cfg)
	id := publish(t, rdb, stream, envelope("f1", platform.BetSettledConfirmed, "bet-1", 3, nil))[0]

	testkit.Eventually(t, 10*time.Second, "dead-lettered", func() bool { return len(h.deadLetters()) == 1 })
	dl := h.deadLetters()[0].Values
	want := map[string]string{
		"dlq_reason": consumer.ReasonMaxDeliveries, "dlq_id": id, "dlq_deliveries": "3",
		"dlq_group": "rolling_service", "dlq_consumer": "pod-a", "dlq_stream": stream,
		"event_id": "f1", "event_type": "BET_SETTLED_CONFIRMED", "brand_id": "3",
	}
	for k, v := range want {
		if dl[k] != v {
			t.Errorf("dead letter %s = %v, want %v", k, dl[k], v)
		}
	}
	if !strings.Contains(dl["dlq_error"].(string), "wallet row locked (delivery 3)") {
		t.Errorf("dead letter error = %v, want the last handler error", dl["dlq_error"])
	}
	if c := calls.Load(); c != 6 {
		t.Errorf("handler ran %d times, want 3 deliveries × 2 attempts", c)
	}
	testkit.Eventually(t, 5*time.Second, "acknowledged", func() bool { return h.pending() == 0 })
	if n := h.counter("headway_consumer_dead_lettered_total", map[string]string{"reason": consumer.ReasonMaxDeliveries}); n != 1 {
		t.Errorf("dead_lettered{max_deliveries} = %v", n)
	}
}

func TestPermanentErrorIsDeadLetteredAtOnce(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var calls atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		calls.Add(1)
		return consumer.Permanent(errors.New("bet does not exist"))
	}
	h := start(t, fastConfig(rdb, stream, handlersFor(handler)))
	publish(t, rdb, stream, envelope("p1", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "dead-lettered", func() bool { return len(h.deadLetters()) == 1 })
	if r := h.deadLetters()[0].Values["dlq_reason"]; r != consumer.ReasonHandlerPermanent || calls.Load() != 1 {
		t.Errorf("reason %v after %d calls; want handler_permanent after 1", r, calls.Load())
	}
}

// TestBadInputIsDeadLetteredByReason pushes each class of bad entry raw and
// checks its dead letter, its counter, and that the stream keeps flowing.
func TestBadInputIsDeadLetteredByReason(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	rec := newRecorder()
	h := start(t, fastConfig(rdb, stream, handlersFor(rec.handle)))

	good := func() map[string]any {
		return map[string]any{"event_id": "x", "event_type": "BET_SETTLED_CONFIRMED", "schema_version": "2",
			"brand_id": "3", "occurred_at": "2026-05-15T10:20:30Z", "aggregate_id": "bet-1", "payload": "{}"}
	}
	mut := func(kv ...string) map[string]any {
		f := good()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<absent>" {
				delete(f, kv[i])
			} else {
				f[kv[i]] = kv[i+1]
			}
		}
		return f
	}
	cases := []struct {
		fields map[string]any
		reason brandguard.Reason
	}{
		{mut("event_id", "b1", "schema_version", "1"), brandguard.ReasonLegacySchema},
		{mut("event_id", "b2", "brand_id", "<absent>"), brandguard.ReasonMissingBrand},
		{mut("event_id", "b3", "brand_id", "brand-three"), brandguard.ReasonUnparseableBrand},
		{mut("event_id", "b4", "payload", "{not json"), brandguard.ReasonMalformed},
		{mut("event_id", "b5", "schema_version", "0"), brandguard.ReasonUnsupportedSchema},
		{mut("event_id", "b6", "payload", `"`+strings.Repeat("x", event.DefaultMaxEntryBytes)+`"`), brandguard.ReasonTooLarge},
		{mut("event_id", "<absent>"), brandguard.ReasonMalformed},
	}
	for _, c := range cases {
		publishRaw(t, rdb, stream, c.fields)
	}
	publish(t, rdb, stream, envelope("good-after", platform.BetSettledConfirmed, "bet-9", 3, nil))

	testkit.Eventually(t, 5*time.Second, "every bad entry dead-lettered", func() bool { return len(h.deadLetters()) == len(cases) })
	testkit.Eventually(t, 5*time.Second, "the good entry after them applied", func() bool { return rec.times("good-after") == 1 })
	byReason := map[string]int{}
	for _, m := range h.deadLetters() {
		byReason[m.Values["dlq_reason"].(string)]++
		if m.Values["dlq_error"] == "" {
			t.Errorf("dead letter %v without error text", m.Values["event_id"])
		}
	}
	for _, c := range cases {
		want := 0
		for _, c2 := range cases {
			if c2.reason == c.reason {
				want++
			}
		}
		if byReason[string(c.reason)] != want {
			t.Errorf("dead letters with reason %s = %d, want %d", c.reason, byReason[string(c.reason)], want)
		}
		if n := h.counter("headway_consumer_dead_lettered_total", map[string]string{"reason": string(c.reason)}); int(n) != want {
			t.Errorf("dead_lettered_total{%s} = %v, want %d", c.reason, n, want)
		}
	}
	if rec.n() != 1 {
		t.Errorf("handler ran %d times; only the good entry may reach it", rec.n())
	}
	testkit.Eventually(t, 5*time.Second, "nothing pending", func() bool { return h.pending() == 0 })
}

// A legacy event is counted and surfaced under either policy: the hold
// makes the consumer not ready, the notice (the default) shows it while
// the consumer stays ready.
func TestLegacyEventSurfacedByPolicy(t *testing.T) {
	for _, policy := range []consumer.AlertPolicy{consumer.AlertHold, "" /* default: notice */} {
		t.Run(string(policy), func(t *testing.T) {
			rdb, prefix := redistest.Client(t)
			stream := walletStream(prefix)
			cfg := fastConfig(rdb, stream, handlersFor(newRecorder().handle))
			cfg.AlertPolicy = policy
			h := start(t, cfg)
			publishRaw(t, rdb, stream, map[string]any{"event_id": "old-1", "event_type": "BET_SETTLED_CONFIRMED",
				"schema_version": "1", "occurred_at": "2026-05-15T10:20:30Z", "aggregate_id": "bet-1", "payload": "{}"})
			testkit.Eventually(t, 5*time.Second, "legacy counted", func() bool {
				return h.counter("event_legacy_schema_total", map[string]string{"stream": stream, "consumer": "rolling_service"}) == 1
			})
			if policy == consumer.AlertHold {
				testkit.Eventually(t, 5*time.Second, "not ready with the legacy reason", func() bool {
					st := h.wm.Status()
					return !st.Ready() && strings.HasPrefix(st.Reason, "alert: legacy_schema")
				})
				return
			}
			testkit.Eventually(t, 5*time.Second, "ready, with the legacy notice", func() bool {
				st := h.wm.Status()
				snap := h.wm.Snapshot()
				notice, ok := snap.NoticeReason, snap.Notice
				return st.Ready() && ok && strings.HasPrefix(notice, "legacy_schema") && strings.Contains(st.Reason, "; notice: legacy_schema")
			})
		})
	}
}

func TestAlertPolicyValidated(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	cfg := fastConfig(rdb, walletStream(prefix), handlersFor(newRecorder().handle))
	cfg.AlertPolicy = "page-everyone"
	if _, err := consumer.New(cfg); !errors.Is(err, consumer.ErrInvalidConfig) {
		t.Fatalf("New with an unknown AlertPolicy: %v, want ErrInvalidConfig", err)
	}
}

func TestUnhandledIgnoredAndTargetMismatch(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	rec := newRecorder()
	handler := func(ctx context.Context, m *consumer.Message) error {
		// The player of this bet belongs to brand 3.
		if _, err := m.CheckTarget(ctx, 3); err != nil {
			return err
		}
		return rec.handle(ctx, m)
	}
	h := start(t, fastConfig(rdb, stream, handlersFor(handler)))
	publish(t, rdb, stream,
		envelope("dep-1", platform.DepositApproved, "dep-1", 3, nil),
		envelope("sentinel", platform.BrandAwarePublishingBegins, "wallet", 3, nil),
		envelope("cross-brand", platform.BetSettledConfirmed, "bet-2", 4, nil),
		envelope("same-brand", platform.BetSettledConfirmed, "bet-3", 3, nil),
	)
	testkit.Eventually(t, 5*time.Second, "all four resolved", func() bool {
		return h.pending() == 0 && rec.times("same-brand") == 1 && len(h.deadLetters()) == 1
	})
	if got := h.outcome(platform.DepositApproved, consumer.OutcomeUnhandled); got != 1 {
		t.Errorf("DEPOSIT_APPROVED unhandled = %v, want 1", got)
	}
	if got := h.outcome(platform.BrandAwarePublishingBegins, consumer.OutcomeIgnored); got != 1 {
		t.Errorf("sentinel ignored = %v, want 1", got)
	}
	if dl := h.deadLetters()[0].Values; dl["event_id"] != "cross-brand" || dl["dlq_reason"] != string(brandguard.ReasonBrandMismatch) {
		t.Errorf("dead letter = %v, want cross-brand with brand_mismatch", dl)
	}
	if rec.times("cross-brand") != 0 {
		t.Error("enforce mode applied an event of another brand")
	}
}

func TestDuplicatesRunOnce(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	store, err := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: prefix + "dedup:"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		store dedup.Store
	}{{"batch-store", store}, {"per-event-store", perEvent{store}}} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			cfg := fastConfig(rdb, stream+tc.name, handlersFor(rec.handle))
			cfg.Dedup = tc.store
			cfg.Group = "rolling_service"
			// Copies read in the batch of the first are busy (its lease)
			// and come back with the reclaim, as duplicates.
			cfg.HandlerTimeout, cfg.ReclaimIdle, cfg.ReclaimInterval = 200*time.Millisecond, 500*time.Millisecond, 100*time.Millisecond
			h := start(t, cfg)
			e := envelope("dup-"+tc.name, platform.BetSettledConfirmed, "bet-1", 3, nil)
			publish(t, rdb, h.stream, e, e, e)
			testkit.Eventually(t, 10*time.Second, "all three resolved", func() bool {
				return h.pending() == 0 &&
					h.outcome(platform.BetSettledConfirmed, consumer.OutcomeDuplicate) == 2
			})
			if rec.times(e.EventID) != 1 {
				t.Fatalf("handler ran %d times for one event_id", rec.times(e.EventID))
			}
		})
	}
}

// perEvent hides the Batcher methods of a store, to test the per-event path.
type perEvent struct{ s dedup.Store }

func (p perEvent) Process(ctx context.Context, k dedup.Key, fn dedup.Func) (dedup.Outcome, error) {
	return p.s.Process(ctx, k, fn)
}

func TestFailedEventWithDedupRunsAgain(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	store, _ := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: prefix + "dedup:"})
	var calls atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		if calls.Add(1) == 1 {
			return errors.New("first delivery fails")
		}
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	cfg.Retry.Attempts = 1
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = 200*time.Millisecond, 50*time.Millisecond
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("again", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 10*time.Second, "applied on redelivery", func() bool {
		return h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 1 && h.pending() == 0
	})
	if h.outcome(platform.BetSettledConfirmed, consumer.OutcomeDuplicate) != 0 {
		t.Fatal("a failed event came back as a duplicate: it would have been lost")
	}
}

// TestDeadConsumerEntriesAreReclaimed: a consumer reads a batch and dies
// without acknowledging; a live one claims the entries after ReclaimIdle.
func TestDeadConsumerEntriesAreReclaimed(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	ctx := context.Background()
	if err := rdb.XGroupCreateMkStream(ctx, stream, "rolling_service", "0").Err(); err != nil {
		t.Fatal(err)
	}
	publish(t, rdb, stream, envelope("d1", platform.BetSettledConfirmed, "bet-1", 3, nil),
		envelope("d2", platform.BetSettledConfirmed, "bet-2", 3, nil))
	// pod-dead reads both and dies.
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "rolling_service", Consumer: "pod-dead",
		Streams: []string{stream, ">"}, Count: 10}).Err(); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := fastConfig(rdb, stream, handlersFor(rec.handle))
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = 300*time.Millisecond, 50*time.Millisecond
	h := start(t, cfg)
	testkit.Eventually(t, 5*time.Second, "reclaimed and applied", func() bool { return rec.n() == 2 && h.pending() == 0 })
	if rec.times("d1") != 1 || rec.times("d2") != 1 {
		t.Errorf("applied %v", rec.count)
	}
	if n := h.counter("headway_consumer_reclaimed_total", nil); n != 2 {
		t.Errorf("reclaimed = %v, want 2", n)
	}
}

// TestSlowHandlerIsNotReclaimedWhileRunning: a handler slower than
// ReclaimIdle must not run a second time concurrently, here or in another
// consumer of the group.
func TestSlowHandlerIsNotReclaimedWhileRunning(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var running, maxRunning, runs atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		runs.Add(1)
		n := running.Add(1)
		defer running.Add(-1)
		for {
			old := maxRunning.Load()
			if n <= old || maxRunning.CompareAndSwap(old, n) {
				break
			}
		}
		select {
		case <-time.After(1200 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil
	}
	mk := func(name string) consumer.Config {
		cfg := fastConfig(rdb, stream, handlersFor(handler))
		cfg.Consumer = name
		cfg.HandlerTimeout = 2 * time.Second
		cfg.ReclaimIdle, cfg.ReclaimInterval = 2100*time.Millisecond, 50*time.Millisecond
		return cfg
	}
	// A ReclaimIdle below the handler's duration is refused by New, so
	// the refresh is what protects the entry from the other consumer here:
	// its idle threshold is below the handler's run time.
	a := start(t, mk("pod-a"))
	publish(t, rdb, stream, envelope("slow", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "handler started", func() bool { return runs.Load() == 1 })
	other := mk("pod-b")
	other.HandlerTimeout = 200 * time.Millisecond
	other.ReclaimIdle = time.Second // above pod-a's refresh period (700ms), below its handler's 1.2s
	b := start(t, other)
	testkit.Eventually(t, 5*time.Second, "applied", func() bool { return a.pending() == 0 })
	_ = b
	if runs.Load() != 1 || maxRunning.Load() != 1 {
		t.Fatalf("handler ran %d times, up to %d at once; want once", runs.Load(), maxRunning.Load())
	}
}

func TestPerAggregateOrderWithConcurrency(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	const aggregates, perAggregate = 20, 25
	var mu sync.Mutex
	last := map[string]int{}
	var violations, applied atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		var p struct{ Seq int }
		_ = jsonUnmarshal(m.Envelope.Payload, &p)
		mu.Lock()
		if prev, ok := last[m.Envelope.AggregateID]; ok && p.Seq != prev+1 {
			violations.Add(1)
		}
		last[m.Envelope.AggregateID] = p.Seq
		mu.Unlock()
		if p.Seq%5 == 0 {
			time.Sleep(time.Millisecond) // uneven work, so lanes interleave
		}
		applied.Add(1)
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Concurrency = 8
	cfg.BatchSize = 64
	var envs []event.Envelope
	for s := range perAggregate {
		for a := range aggregates {
			envs = append(envs, envelope(fmt.Sprintf("o-%d-%d", a, s), platform.BetSettledConfirmed,
				fmt.Sprintf("bet-%d", a), 3, map[string]int{"seq": s}))
		}
	}
	publish(t, rdb, stream, envs...)
	start(t, cfg)
	testkit.Eventually(t, 10*time.Second, "all applied", func() bool { return applied.Load() == aggregates*perAggregate })
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d entries ran out of their aggregate's order", v)
	}
}

// TestFailedEntryHoldsItsAggregate: while an entry is left pending after a
// failure, later entries of the same aggregate wait; other aggregates go on.
func TestFailedEntryHoldsItsAggregate(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var mu sync.Mutex
	var order []string
	var failOnce atomic.Bool
	failOnce.Store(true)
	handler := func(ctx context.Context, m *consumer.Message) error {
		if m.Envelope.EventID == "a1" && failOnce.CompareAndSwap(true, false) {
			return errors.New("transient")
		}
		mu.Lock()
		order = append(order, m.Envelope.EventID)
		mu.Unlock()
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Retry.Attempts = 1
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = 300*time.Millisecond, 50*time.Millisecond
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("a1", platform.BetSettledConfirmed, "bet-A", 3, nil),
		envelope("a2", platform.BetSettledConfirmed, "bet-A", 3, nil),
		envelope("b1", platform.BetSettledConfirmed, "bet-B", 3, nil))
	testkit.Eventually(t, 5*time.Second, "b1 applied while a1 waits", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) >= 1
	})
	publish(t, rdb, stream, envelope("a3", platform.BetSettledConfirmed, "bet-A", 3, nil))
	testkit.Eventually(t, 10*time.Second, "everything applied", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 4 && h.pending() == 0
	})
	mu.Lock()
	defer mu.Unlock()
	var aOrder []string
	for _, id := range order {
		if strings.HasPrefix(id, "a") {
			aOrder = append(aOrder, id)
		}
	}
	if strings.Join(aOrder, ",") != "a1,a2,a3" || order[0] != "b1" {
		t.Fatalf("order %v: want b1 first and a1,a2,a3 in order", order)
	}
}

func TestTrimmedWhilePendingIsCountedAsLost(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	trimWhilePending(t, rdb, stream)
	rec := newRecorder()
	h := start(t, fastConfig(rdb, stream, handlersFor(rec.handle))) // pod-a restarts
	testkit.Eventually(t, 5*time.Second, "lost entry counted and acknowledged", func() bool {
		return h.counter("headway_consumer_lost_to_trim_total", nil) == 1 && h.pending() == 0 && rec.times("t2") == 1
	})
	if !strings.Contains(h.logs.String(), "trimmed") {
		t.Error("the loss was not logged")
	}
}

func TestGracefulDrain(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	var finished atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		if m.Envelope.AggregateID == "bet-hung" {
			<-ctx.Done() // ignores nothing: ends only when the drain deadline cancels it
			return ctx.Err()
		}
		started <- struct{}{}
		<-release
		finished.Add(1)
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.DrainTimeout = 500 * time.Millisecond
	// Published before the start, so both come in one batch. Whether they
	// share a lane or not, slow-ok runs first and the hung one runs (or
	// waits) until the drain deadline.
	publish(t, rdb, stream, envelope("slow-ok", platform.BetSettledConfirmed, "bet-1", 3, nil),
		envelope("hung", platform.BetSettledConfirmed, "bet-hung", 3, nil))
	h := start(t, cfg)
	<-started
	h.cancel()
	time.AfterFunc(100*time.Millisecond, func() { close(release) })
	began := time.Now()
	select {
	case err := <-h.done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the drain deadline")
	}
	h.cancel = nil
	if d := time.Since(began); d < 400*time.Millisecond {
		t.Errorf("Serve returned after %v, before the drain deadline of its hung handler", d)
	}
	if finished.Load() != 1 {
		t.Fatal("the handler in flight was not allowed to finish")
	}
	p, _ := rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: stream, Group: "rolling_service", Start: "-", End: "+", Count: 10}).Result()
	if len(p) != 1 {
		t.Fatalf("pending after drain = %d, want only the hung entry", len(p))
	}
	if len(h.deadLetters()) != 0 {
		t.Fatal("a drained entry must stay pending, not be dead-lettered")
	}
}

func TestNewRefusesReservedHandler(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	_, err := consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: walletStream(prefix), CatalogStream: "wallet",
		Group: "g", Consumer: "c", Handlers: map[event.Type]consumer.Handler{
			platform.BetAuthorized: func(context.Context, *consumer.Message) error { return nil }}})
	if !errors.Is(err, event.ErrNotDispatchable) || !strings.Contains(err.Error(), "BET_AUTHORIZED is reserved") {
		t.Fatalf("err = %v", err)
	}
	_, err = consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: "custom", Group: "g",
		Handlers: handlersFor(newRecorder().handle)})
	if !errors.Is(err, consumer.ErrInvalidConfig) {
		t.Fatalf("unknown stream key: %v", err)
	}
	_, err = consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: walletStream(prefix), CatalogStream: "wallet", Group: "g",
		Handlers: handlersFor(newRecorder().handle), HandlerTimeout: time.Minute, ReclaimIdle: 30 * time.Second})
	if !errors.Is(err, consumer.ErrInvalidConfig) {
		t.Fatalf("ReclaimIdle below HandlerTimeout: %v", err)
	}
}

func TestHandlerTimeoutCancelsAttempt(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	errs := make(chan error, 10)
	var calls atomic.Int32
	handler := func(ctx context.Context, m *consumer.Message) error {
		if calls.Add(1) == 1 {
			<-ctx.Done()
			errs <- ctx.Err()
			return ctx.Err()
		}
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle = time.Second
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("slow", platform.BetSettledConfirmed, "bet-1", 3, nil))
	select {
	case err := <-errs:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("handler context ended with %v, want DeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("HandlerTimeout did not cancel the attempt")
	}
	testkit.Eventually(t, 5*time.Second, "the retry applied it", func() bool {
		return h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 1
	})
}

// TestReclaimRunsUnderSteadyLoad: while new entries keep arriving, a failed
// entry still comes back and is applied (reclaim is not starved by the
// read-ahead).
func TestReclaimRunsUnderSteadyLoad(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var failOnce atomic.Bool
	failOnce.Store(true)
	rec := newRecorder()
	handler := func(ctx context.Context, m *consumer.Message) error {
		if m.Envelope.EventID == "first" && failOnce.CompareAndSwap(true, false) {
			return errors.New("transient")
		}
		return rec.handle(ctx, m)
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Retry.Attempts = 1
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = 300*time.Millisecond, 100*time.Millisecond
	cfg.BatchSize = 5
	start(t, cfg)
	publish(t, rdb, stream, envelope("first", platform.BetSettledConfirmed, "bet-first", 3, nil))
	stop := make(chan struct{})
	var producer sync.WaitGroup
	producer.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			publish(t, rdb, stream, envelope(fmt.Sprintf("load-%d", i), platform.BetSettledConfirmed, fmt.Sprintf("bet-%d", i%50), 3, nil))
			time.Sleep(time.Millisecond) // a steady trickle, so every read finds entries
		}
	})
	defer func() { close(stop); producer.Wait() }()
	testkit.Eventually(t, 10*time.Second, "the failed entry applied while the load goes on", func() bool { return rec.times("first") == 1 })
}

// TestDedupLeaseRenewedWhileRunning: a handler that runs longer than the
// dedup LeaseTTL keeps its lease, so another process cannot run the same
// event at the same time.
func TestDedupLeaseRenewedWhileRunning(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	storeCfg := dedup.RedisConfig{Client: rdb, Prefix: prefix + "dedup:", LeaseTTL: 300 * time.Millisecond}
	store, _ := dedup.NewRedis(storeCfg)
	other, _ := dedup.NewRedis(storeCfg) // another process's store
	running := make(chan struct{})
	release := make(chan struct{})
	handler := func(ctx context.Context, m *consumer.Message) error {
		close(running)
		<-release
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	// The refresher runs every ReclaimIdle/3 = 200ms, under the 300ms lease.
	cfg.ReclaimIdle = 600 * time.Millisecond
	cfg.HandlerTimeout = 500 * time.Millisecond
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("long", platform.BetSettledConfirmed, "bet-1", 3, nil))
	<-running
	// Let more than LeaseTTL pass while the handler runs (the state to
	// check is "later than the lease", not an event to wait for).
	time.Sleep(450 * time.Millisecond)
	out := make([]dedup.Outcome, 1)
	err := other.Claim(context.Background(), []dedup.Key{{Scope: "rolling_service", EventID: "long"}}, out)
	close(release)
	if err != nil || out[0] != dedup.Busy {
		t.Fatalf("another store could claim a running event after LeaseTTL: %v %v", out, err)
	}
	testkit.Eventually(t, 5*time.Second, "applied", func() bool { return h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 1 })
}
