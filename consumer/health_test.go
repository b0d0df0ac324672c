package consumer_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// One entry waiting for its redelivery after a transient handler failure
// is not a stall: while the others flow and after they stop, the consumer
// is ready and says "retrying 1". Its redelivery failing again does not
// count as a new failure. (The harness's stall window is 500ms; the entry
// is redelivered after ReclaimIdle, 3s.)
func TestOneEntryRetryingKeepsReady(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	rec := newRecorder()
	var stuckCalls atomic.Int64
	handler := func(ctx context.Context, m *consumer.Message) error {
		if m.Envelope.EventID == "stuck" {
			stuckCalls.Add(1)
			return errors.New("wallet service: 503")
		}
		return rec.handle(ctx, m)
	}
	h := start(t, fastConfig(rdb, stream, handlersFor(handler)))
	publish(t, rdb, stream, envelope("stuck", platform.BetSettledConfirmed, "bet-stuck", 3, nil))
	testkit.Eventually(t, 5*time.Second, "stuck entry failed once", func() bool { return stuckCalls.Load() >= 3 })
	var envs []event.Envelope
	for i := range 20 {
		envs = append(envs, envelope("ok-"+strconv.Itoa(i), platform.BetSettledConfirmed, "bet-"+strconv.Itoa(i), 3, nil))
	}
	publish(t, rdb, stream, envs...)
	testkit.Eventually(t, 5*time.Second, "the others applied", func() bool { return rec.n() == 20 })
	testkit.Eventually(t, 2500*time.Millisecond, "idle and ready, retrying 1", func() bool {
		st := h.wm.Status()
		return st.State == readiness.StateIdle && strings.Contains(st.Reason, "retrying 1")
	})
	if snap := h.wm.Snapshot(); snap.Backlog != 0 {
		t.Errorf("backlog = %d with one entry waiting for a retry, want 0", snap.Backlog)
	}
	// The status page's rate counts entries settled: the 20, not the one
	// that failed.
	if snap := h.wm.Snapshot(); snap.WorkDone != 20 {
		t.Errorf("work done %d, want the 20 entries settled", snap.WorkDone)
	}
	// Its redelivery fails again: still one entry, not a second failure.
	testkit.Eventually(t, 10*time.Second, "stuck entry delivered again", func() bool { return stuckCalls.Load() >= 6 })
	testkit.Eventually(t, 2*time.Second, "the retry reported", func() bool { return h.pending() == 1 })
	if n := h.wm.Snapshot().ConsecutiveWorkFailures; n != 0 {
		t.Errorf("failed work items after a redelivery failed again = %d, want 0 (it was counted once, and progress came after)", n)
	}
	if st := h.wm.Status(); !st.Ready() {
		t.Errorf("one entry retrying: %v %q, want ready", st.State, st.Reason)
	}
}

// A consumer whose handler dead-letters every entry is failing, not
// progressing: a dead letter from the handler is no progress (ADR-003).
// Every entry failing transiently is failing too. Entries rejected as bad
// input are the consumer doing its job: ready.
func TestHandlerFailuresMakeTheLoopFailing(t *testing.T) {
	cases := []struct {
		name    string
		handler consumer.Handler
		raw     bool // publish malformed entries instead
		failing bool
	}{
		{name: "dead-lettered by the handler", failing: true, handler: func(context.Context, *consumer.Message) error {
			return consumer.Permanent(errors.New("bet not found"))
		}},
		{name: "failing transiently", failing: true, handler: func(context.Context, *consumer.Message) error {
			return errors.New("wallet service: 503")
		}},
		{name: "only bad input", raw: true, handler: newRecorder().handle},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := redistest.Client(t)
			stream := walletStream(prefix)
			h := start(t, fastConfig(rdb, stream, handlersFor(tc.handler))) // failure bound 5
			for i := range 6 {
				id := "e-" + strconv.Itoa(i)
				if tc.raw {
					publishRaw(t, rdb, stream, map[string]any{"event_id": id, "event_type": "BET_SETTLED_CONFIRMED", "schema_version": "2"})
					continue
				}
				publish(t, rdb, stream, envelope(id, platform.BetSettledConfirmed, "bet-"+strconv.Itoa(i), 3, nil))
			}
			if tc.failing {
				testkit.Eventually(t, 5*time.Second, "failing", func() bool {
					st := h.wm.Status()
					return st.State == readiness.StateFailing && strings.Contains(st.Reason, "work items failed with no progress since")
				})
				return
			}
			testkit.Eventually(t, 5*time.Second, "all dead-lettered as bad input", func() bool { return len(h.deadLetters()) == 6 })
			if st := h.wm.Status(); !st.Ready() {
				t.Errorf("only bad input: %v %q, want ready", st.State, st.Reason)
			}
		})
	}
}

// Entries held back behind a failing entry of their aggregate are not
// retrying: they have not failed and cannot run. A consumer whose every
// aggregate is stuck behind a failing entry has a backlog and no
// progress: stalled, not idle.
func TestStuckAggregatesAreBacklog(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	h := start(t, fastConfig(rdb, stream, handlersFor(func(context.Context, *consumer.Message) error {
		return errors.New("wallet service: 503")
	})))
	var envs []event.Envelope
	for i := range 20 {
		envs = append(envs, envelope("e-"+strconv.Itoa(i), platform.BetSettledConfirmed, "bet-"+strconv.Itoa(i%2), 3, nil))
	}
	publish(t, rdb, stream, envs...)
	testkit.Eventually(t, 5*time.Second, "stalled with the held entries as backlog, the two failed ones retrying", func() bool {
		st := h.wm.Status()
		return st.State == readiness.StateStalled && strings.HasPrefix(st.Reason, "stalled: backlog 18, retrying 2")
	})
}

// A burst of entries the handler rejects makes the consumer failing; once
// they are dead-lettered and nothing else arrives for a stall window, it
// is idle again rather than failing until the next good entry.
func TestFailingEndsAfterTheBurst(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	h := start(t, fastConfig(rdb, stream, handlersFor(func(context.Context, *consumer.Message) error {
		return consumer.Permanent(errors.New("bet not found"))
	}))) // stall window 500ms, failure bound 5
	var envs []event.Envelope
	for i := range 5 {
		envs = append(envs, envelope("e-"+strconv.Itoa(i), platform.BetSettledConfirmed, "bet-"+strconv.Itoa(i), 3, nil))
	}
	publish(t, rdb, stream, envs...)
	testkit.Eventually(t, 5*time.Second, "failing", func() bool { return h.wm.Status().State == readiness.StateFailing })
	testkit.Eventually(t, 5*time.Second, "idle once the burst is over", func() bool {
		st := h.wm.Status()
		return st.State == readiness.StateIdle && len(h.deadLetters()) == 5
	})
}

// Another consumer's entry waiting for its redelivery is that consumer's
// retry, not this one's backlog: with two consumers in the group, the one
// that holds no failing entry stays ready (idle), the other says
// "retrying 1".
func TestPeersRetryIsNotBacklog(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	failing := func(context.Context, *consumer.Message) error { return errors.New("wallet service: 503") }
	a := start(t, fastConfig(rdb, stream, handlersFor(failing)))
	publish(t, rdb, stream, envelope("stuck", platform.BetSettledConfirmed, "bet-stuck", 3, nil))
	testkit.Eventually(t, 5*time.Second, "pod-a retrying 1", func() bool {
		return strings.Contains(a.wm.Status().Reason, "retrying 1")
	})
	cfgB := fastConfig(rdb, stream, handlersFor(newRecorder().handle))
	cfgB.Consumer = "pod-b"
	b := start(t, cfgB)
	testkit.Eventually(t, 2*time.Second, "pod-b idle with no backlog", func() bool {
		snap := b.wm.Snapshot()
		n, known := snap.Backlog, snap.BacklogKnown
		return known && n == 0 && b.wm.Status().State == readiness.StateIdle
	})
	// Until pod-a's entry is reclaimed (ReclaimIdle 3s), pod-b never
	// counts it.
	for range 20 {
		if st := b.wm.Status(); !st.Ready() {
			t.Fatalf("pod-b while pod-a retries: %v %q", st.State, st.Reason)
		}
		time.Sleep(50 * time.Millisecond) // sampling the state over a second, not synchronising
	}
}

// The first reading of the group's backlog comes after the group exists:
// a consumer started on a new stream knows its backlog (zero) at once and
// is idle, not stalled for a whole InfoInterval with its backlog unknown.
func TestNewConsumerKnowsItsBacklogAtOnce(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	// The group's creation is slow (a busy Redis): anything that reads the
	// group before it exists fails.
	rdb.AddHook(onCommand(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if cmd.Name() == "xgroup" {
			time.Sleep(300 * time.Millisecond)
		}
		return next(ctx, cmd)
	}))
	cfg := fastConfig(rdb, walletStream(prefix), handlersFor(newRecorder().handle))
	cfg.InfoInterval = time.Minute
	h := start(t, cfg) // stall window 500ms
	testkit.Eventually(t, 2*time.Second, "backlog known to be zero", func() bool {
		snap := h.wm.Snapshot()
		n, known := snap.Backlog, snap.BacklogKnown
		return known && n == 0
	})
	time.Sleep(600 * time.Millisecond) // past the stall window: the state it settles in, not a synchronisation
	if st := h.wm.Status(); st.State != readiness.StateIdle {
		t.Fatalf("a new consumer after its stall window: %v %q, want idle", st.State, st.Reason)
	}
}

// Validate says what New would refuse, without building anything.
func TestConfigValidate(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	good := fastConfig(rdb, walletStream(prefix), handlersFor(newRecorder().handle))
	if err := good.Validate(); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	bad := good
	bad.ReclaimIdle = time.Second // not above HandlerTimeout (2s)
	if err := bad.Validate(); !errors.Is(err, consumer.ErrInvalidConfig) {
		t.Errorf("ReclaimIdle below HandlerTimeout: %v", err)
	}
	wrongType := good
	wrongType.Handlers = map[event.Type]consumer.Handler{platform.DepositApproved: newRecorder().handle,
		event.Type("NO_SUCH_TYPE"): newRecorder().handle}
	if err := wrongType.Validate(); !errors.Is(err, event.ErrNotDispatchable) {
		t.Errorf("a handler for a type the stream lacks: %v", err)
	}
}
