package consumer_test

import (
	"context"
	"errors"
	"fmt"
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

// firstRuns records the delivery count each event's handler saw on its
// first run, and how often each ran.
type firstRuns struct {
	mu    sync.Mutex
	first map[string]int64
	runs  map[string]int
}

func (f *firstRuns) see(m *consumer.Message) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.first == nil {
		f.first, f.runs = map[string]int64{}, map[string]int{}
	}
	id := m.Envelope.EventID
	if _, ok := f.first[id]; !ok {
		f.first[id] = m.Deliveries
	}
	f.runs[id]++
	return f.runs[id]
}

func (f *firstRuns) get(id string) (int64, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first[id], f.runs[id]
}

// TestFailingHeadDoesNotSpendFollowersDeliveries: a1 fails on every
// delivery and is dead-lettered after MaxDeliveries; a2, of the same
// aggregate, is deferred behind it on each of those deliveries. Those
// deliveries reached no verdict of a2's handler, so they are given back:
// a2 first runs as delivery 1, and its one failure is retried, not
// dead-lettered. Redis alone would count a2's deliveries past
// MaxDeliveries while it waits, and dead-letter it on its first failure.
func TestFailingHeadDoesNotSpendFollowersDeliveries(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var runs firstRuns
	handler := func(_ context.Context, m *consumer.Message) error {
		n := runs.see(m)
		switch {
		case m.Envelope.EventID == "a1":
			return fmt.Errorf("a1 always fails (delivery %d)", m.Deliveries)
		case m.Envelope.EventID == "a2" && n == 1:
			return errors.New("a2 fails once")
		}
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.MaxDeliveries = 3
	cfg.Retry = consumer.RetryPolicy{Attempts: 1}
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = 200*time.Millisecond, 50*time.Millisecond
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("a1", platform.BetSettledConfirmed, "bet-A", 3, nil),
		envelope("a2", platform.BetSettledConfirmed, "bet-A", 3, nil))

	testkit.Eventually(t, 10*time.Second, "a1 dead-lettered, a2 applied, nothing pending", func() bool {
		_, a2runs := runs.get("a2")
		return len(h.deadLetters()) == 1 && a2runs == 2 && h.pending() == 0
	})
	if id := h.deadLetters()[0].Values["event_id"]; id != "a1" {
		t.Fatalf("dead-lettered %v, want only a1", id)
	}
	if first, _ := runs.get("a2"); first != 1 {
		t.Errorf("a2's handler first saw delivery %d, want 1: the deliveries it waited behind a1 were spent", first)
	}
	if _, n := runs.get("a1"); n != 3 {
		t.Errorf("a1 ran %d times, want MaxDeliveries (3): a failed delivery must not be given back", n)
	}
	// a2 was deferred on a1's deliveries 1 and 2 (on the third, a1 is
	// dead-lettered and a2 runs in the same batch).
	if n := h.counter("headway_consumer_deliveries_given_back_total", nil); n < 2 {
		t.Errorf("deliveries_given_back_total = %v, want at least 2", n)
	}
}

// failingStore fails the first failures Process calls with ErrStore, as a
// dedup store whose database is down does, then passes them to next.
type failingStore struct {
	next     dedup.Store
	failures atomic.Int32
}

func (s *failingStore) Process(ctx context.Context, key dedup.Key, fn dedup.Func) (dedup.Outcome, error) {
	if s.failures.Add(-1) >= 0 {
		return dedup.Failed, fmt.Errorf("%w: begin: connection refused (injected)", dedup.ErrStore)
	}
	return s.next.Process(ctx, key, fn)
}

// TestStoreOutageDoesNotSpendDeliveries: the dedup store fails around the
// handler on four deliveries in a row (an outage); those deliveries are
// given back, so once the store is back the handler runs as delivery 1 and
// a single failure of its own is retried, not dead-lettered with
// MaxDeliveries 3.
func TestStoreOutageDoesNotSpendDeliveries(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	inner, err := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: prefix + "dedup:"})
	if err != nil {
		t.Fatal(err)
	}
	store := &failingStore{next: inner}
	store.failures.Store(4)
	var runs firstRuns
	handler := func(_ context.Context, m *consumer.Message) error {
		if runs.see(m) == 1 {
			return errors.New("fails once")
		}
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	cfg.MaxDeliveries = 3
	cfg.Retry = consumer.RetryPolicy{Attempts: 1}
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = 200*time.Millisecond, 50*time.Millisecond
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("s1", platform.BetSettledConfirmed, "bet-S", 3, nil))

	testkit.Eventually(t, 10*time.Second, "s1 applied and acknowledged", func() bool {
		_, n := runs.get("s1")
		return n == 2 && h.pending() == 0
	})
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead-lettered %v: the store's outage spent the entry's deliveries", dl[0].Values["dlq_reason"])
	}
	if first, _ := runs.get("s1"); first != 1 {
		t.Errorf("the handler first saw delivery %d, want 1", first)
	}
	if n := h.counter("headway_consumer_deliveries_given_back_total", nil); n < 4 {
		t.Errorf("deliveries_given_back_total = %v, want at least 4 (one per failed store call)", n)
	}
}

// TestGiveBackLeavesOthersEntriesAlone: the give-back script changes only
// an entry pending for the caller with the count it saw, keeps its idle
// time, and skips entries trimmed from the stream (XCLAIM would drop them
// from the pending list).
func TestGiveBackLeavesOthersEntriesAlone(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	ctx := context.Background()
	if err := rdb.XGroupCreateMkStream(ctx, stream, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	ids := publish(t, rdb, stream,
		envelope("mine", platform.BetSettledConfirmed, "bet-1", 3, nil),
		envelope("other", platform.BetSettledConfirmed, "bet-2", 3, nil),
		envelope("trimmed", platform.BetSettledConfirmed, "bet-3", 3, nil))
	read := func(consumerName string, n int64) {
		if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: consumerName,
			Streams: []string{stream, ">"}, Count: n}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	read("me", 1)
	read("peer", 1)
	read("me", 1)
	if err := rdb.XDel(ctx, stream, ids[2]).Err(); err != nil {
		t.Fatal(err)
	}
	// Two more deliveries of "mine": count 3, idle about 150ms.
	for range 2 {
		if err := rdb.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: "g", Consumer: "me", Messages: []string{ids[0]}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(150 * time.Millisecond) // idle time to keep, not synchronisation
	n, err := consumer.GiveBackForTest(ctx, rdb, stream, "g", "me", map[string]int64{ids[0]: 3, ids[1]: 1, ids[2]: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("gave back %d entries, want 1 (only mine)", n)
	}
	pend, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: "-", End: "+", Count: 10}).Result()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]redis.XPendingExt{}
	for _, p := range pend {
		got[p.ID] = p
	}
	if p := got[ids[0]]; p.RetryCount != 2 || p.Consumer != "me" || p.Idle < 100*time.Millisecond {
		t.Errorf("mine after the give-back: %+v, want count 2, owner me, idle kept", p)
	}
	if p := got[ids[1]]; p.RetryCount != 1 || p.Consumer != "peer" {
		t.Errorf("the peer's entry: %+v, want untouched", p)
	}
	if _, ok := got[ids[2]]; !ok {
		t.Error("the trimmed entry left the pending list: the give-back dropped it")
	}
	// A count that moved on since it was seen is another delivery's.
	if n, err := consumer.GiveBackForTest(ctx, rdb, stream, "g", "me", map[string]int64{ids[0]: 3}); err != nil || n != 0 {
		t.Errorf("give-back with a stale count changed %d entries (err %v), want 0", n, err)
	}
}
