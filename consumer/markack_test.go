package consumer_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// commandLog records, in order, when commands start and end on a client,
// and can slow down or fail some of them.
type commandLog struct {
	mu       sync.Mutex
	events   []string
	armed    atomic.Bool   // set once the handler ran: from then on the hooks act
	slowEval time.Duration // delay of each EVALSHA once armed
	failAck  atomic.Bool   // XACK fails once armed, as if the process died before it
}

func (l *commandLog) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *commandLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// process is the hook (onCommand(l.process)).
func (l *commandLog) process(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
	name := cmd.Name()
	if !l.armed.Load() || (name != "evalsha" && name != "eval" && name != "xack") {
		return next(ctx, cmd)
	}
	l.add("start " + name)
	if name == "xack" && l.failAck.Load() {
		return injected(cmd, "the process died before its XACK")
	}
	if name != "xack" && l.slowEval > 0 {
		time.Sleep(l.slowEval) // a slow settle round trip, the fault under test
	}
	err := next(ctx, cmd)
	l.add("end " + name)
	return err
}

// TestDoneMarkWrittenBeforeAcknowledgement: with a batch dedup store, the
// batch's done marks are in Redis before its XACK is sent (ADR-010): the
// settle script has ended before the XACK starts, even when the settle is
// slow.
func TestDoneMarkWrittenBeforeAcknowledgement(t *testing.T) {
	base, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	rdb := redis.NewClient(base.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	log := &commandLog{slowEval: 200 * time.Millisecond}
	rdb.AddHook(onCommand(log.process))
	store, _ := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: prefix + "dedup:"})
	handler := func(context.Context, *consumer.Message) error { log.armed.Store(true); return nil }
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	h := start(t, cfg)
	publish(t, base, stream, envelope("m1", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "applied and acknowledged", func() bool {
		return h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 1 && h.pending() == 0
	})
	var settleEnd, ackStart = -1, -1
	for i, e := range log.all() {
		switch {
		case (e == "end evalsha" || e == "end eval") && settleEnd < 0:
			settleEnd = i
		case e == "start xack" && ackStart < 0:
			ackStart = i
		}
	}
	if settleEnd < 0 || ackStart < 0 || ackStart < settleEnd {
		t.Fatalf("commands after the handler: %v; want the settle script to end before the XACK starts", log.all())
	}
}

// TestCrashBetweenMarkAndAck: a process that wrote the done mark and died
// before its XACK leaves the entry pending; the restarted consumer finds
// the mark and acknowledges the entry as a duplicate without running the
// handler again.
func TestCrashBetweenMarkAndAck(t *testing.T) {
	base, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	rdb := redis.NewClient(base.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	log := &commandLog{}
	log.failAck.Store(true)
	rdb.AddHook(onCommand(log.process))
	dcfg := dedup.RedisConfig{Client: rdb, Prefix: prefix + "dedup:"}
	store, _ := dedup.NewRedis(dcfg)
	var runs atomic.Int32
	handler := func(context.Context, *consumer.Message) error { runs.Add(1); log.armed.Store(true); return nil }
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	first := start(t, cfg)
	publish(t, base, stream, envelope("m1", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "the XACK attempted (and failed)", func() bool {
		for _, e := range log.all() {
			if e == "start xack" {
				return true
			}
		}
		return false
	})
	first.stop() // the process is gone; its entry is still pending
	if first.pending() != 1 {
		t.Fatalf("pending = %d after the failed XACK, want 1", first.pending())
	}
	store2, _ := dedup.NewRedis(dedup.RedisConfig{Client: base, Prefix: dcfg.Prefix}) // the restarted process
	cfg2 := fastConfig(base, stream, handlersFor(handler))
	cfg2.Dedup = store2
	h := start(t, cfg2)
	testkit.Eventually(t, 5*time.Second, "acknowledged as a duplicate", func() bool {
		return h.pending() == 0 && h.outcome(platform.BetSettledConfirmed, consumer.OutcomeDuplicate) == 1
	})
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}

// TestLostToTrimCountedOnceWhenAckFails: an entry found trimmed is counted
// as lost when it leaves the pending list, not before: when the
// acknowledgement fails it stays pending, and the reclaim that finds it
// later counts it — once in all.
func TestLostToTrimCountedOnceWhenAckFails(t *testing.T) {
	base, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	trimWhilePending(t, base, stream)
	rdb := redis.NewClient(base.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	// The first XAUTOCLAIM and the first XACK fail.
	var claimFailed, ackFailed atomic.Bool
	rdb.AddHook(onCommand(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if cmd.Name() == "xautoclaim" && claimFailed.CompareAndSwap(false, true) {
			return injected(cmd, "XAUTOCLAIM failed")
		}
		if cmd.Name() == "xack" && ackFailed.CompareAndSwap(false, true) {
			return injected(cmd, "XACK failed")
		}
		return next(ctx, cmd)
	}))
	rec := newRecorder()
	cfg := fastConfig(rdb, stream, handlersFor(rec.handle))
	// The first reclaim fails, so the pending read finds t1 first (nil
	// values), and its XACK fails; a later reclaim finds it again.
	cfg.ReclaimIdle, cfg.ReclaimInterval = time.Second, 50*time.Millisecond
	cfg.HandlerTimeout = 100 * time.Millisecond
	h := start(t, cfg) // pod-a restarts
	testkit.Eventually(t, 10*time.Second, "the lost entry off the pending list and t2 applied", func() bool {
		return h.pending() == 0 && rec.times("t2") == 1 && strings.Contains(h.logs.String(), "acknowledgement failed")
	})
	if n := h.counter("headway_consumer_lost_to_trim_total", nil); n != 1 {
		t.Fatalf("lost_to_trim_total = %v, want 1: one entry lost, counted once", n)
	}
	if n := h.counter("headway_consumer_entries_total", map[string]string{"outcome": consumer.OutcomeLostToTrim}); n != 1 {
		t.Fatalf("entries_total{outcome=lost_to_trim} = %v, want 1", n)
	}
}
