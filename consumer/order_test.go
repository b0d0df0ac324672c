package consumer_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// TestBusyLeaseHoldsItsAggregate: a pod killed while running A1 restarts;
// A1's dedup lease is still held by the dead process, so A1 is deferred as
// busy. A2, whose lease is free, must wait behind it (ADR-010), in the same
// batch and in later ones; B1 of another aggregate goes on. Once the lease
// is free, A1 runs, then A2, then A3.
func TestBusyLeaseHoldsItsAggregate(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	ctx := context.Background()
	storeCfg := dedup.RedisConfig{Client: rdb, Prefix: prefix + "dedup:"}
	store, _ := dedup.NewRedis(storeCfg)
	dead, _ := dedup.NewRedis(storeCfg) // the killed process's store, its lease still live
	a1 := dedup.Key{Scope: "rolling_service", EventID: "a1"}
	out := make([]dedup.Outcome, 1)
	if err := dead.Claim(ctx, []dedup.Key{a1}, out); err != nil || out[0] != dedup.Processed {
		t.Fatalf("lease a1 for the dead process: %v %v", out, err)
	}
	var mu sync.Mutex
	var order []string
	handler := func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, m.Envelope.EventID)
		return nil
	}
	applied := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), order...)
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	cfg.ReclaimIdle, cfg.ReclaimInterval = 300*time.Millisecond, 50*time.Millisecond
	cfg.HandlerTimeout = 100 * time.Millisecond
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("a1", platform.BetSettledConfirmed, "bet-A", 3, nil),
		envelope("a2", platform.BetSettledConfirmed, "bet-A", 3, nil),
		envelope("b1", platform.BetSettledConfirmed, "bet-B", 3, nil))
	testkit.Eventually(t, 5*time.Second, "b1 applied while a1 is busy", func() bool { return len(applied()) >= 1 })
	publish(t, rdb, stream, envelope("a3", platform.BetSettledConfirmed, "bet-A", 3, nil))
	// Let several reclaim passes meet the busy lease (each defers a1 again).
	testkit.Eventually(t, 5*time.Second, "a1 deferred by a reclaim pass", func() bool {
		return h.outcome(platform.BetSettledConfirmed, consumer.OutcomeDeferred) >= 4
	})
	if got := applied(); strings.Join(got, ",") != "b1" {
		t.Fatalf("applied %v while a1's lease is held: want only b1", got)
	}
	// The dead process's lease ends (it expires in production).
	if err := dead.Settle(ctx, nil, []dedup.Key{a1}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "everything applied", func() bool { return len(applied()) == 4 && h.pending() == 0 })
	if got := strings.Join(applied(), ","); got != "b1,a1,a2,a3" {
		t.Fatalf("applied %s, want b1,a1,a2,a3", got)
	}
}

// TestBusyLeaseHoldsItsAggregateAcrossReclaimPages: a pod died holding a1
// (its dedup lease still live) and a2 pending; a peer's reclaim pass takes
// them on two XAUTOCLAIM pages (BatchSize 1). a1 is deferred as busy on the
// first page, and a2 must wait on the second: a reclaimed batch runs for
// aggregates held by earlier batches, not for those an earlier page of the
// same pass left pending.
func TestBusyLeaseHoldsItsAggregateAcrossReclaimPages(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	ctx := context.Background()
	storeCfg := dedup.RedisConfig{Client: rdb, Prefix: prefix + "dedup:"}
	store, _ := dedup.NewRedis(storeCfg)
	dead, _ := dedup.NewRedis(storeCfg)
	a1 := dedup.Key{Scope: "rolling_service", EventID: "a1"}
	out := make([]dedup.Outcome, 1)
	if err := dead.Claim(ctx, []dedup.Key{a1}, out); err != nil || out[0] != dedup.Processed {
		t.Fatalf("lease a1 for the dead process: %v %v", out, err)
	}
	if err := rdb.XGroupCreateMkStream(ctx, stream, "rolling_service", "0").Err(); err != nil {
		t.Fatal(err)
	}
	publish(t, rdb, stream, envelope("a1", platform.BetSettledConfirmed, "bet-A", 3, nil),
		envelope("a2", platform.BetSettledConfirmed, "bet-A", 3, nil))
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "rolling_service", Consumer: "pod-dead",
		Streams: []string{stream, ">"}, Count: 10}).Err(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	handler := func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, m.Envelope.EventID)
		return nil
	}
	applied := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(order, ",")
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	cfg.BatchSize = 1
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = 300*time.Millisecond, 50*time.Millisecond
	h := start(t, cfg)
	testkit.Eventually(t, 10*time.Second, "several reclaim passes meet the busy lease", func() bool {
		return h.outcome(platform.BetSettledConfirmed, consumer.OutcomeDeferred) >= 6
	})
	if got := applied(); got != "" {
		t.Fatalf("applied %q while a1's lease is held: a2 ran ahead of a1", got)
	}
	if err := dead.Settle(ctx, nil, []dedup.Key{a1}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "both applied", func() bool { return h.pending() == 0 && applied() != "" && strings.Count(applied(), ",") == 1 })
	if got := applied(); got != "a1,a2" {
		t.Fatalf("applied %s, want a1,a2", got)
	}
}

// TestHoldReleasedWhenBlockerLeavesAnotherWay: a1 keeps failing and holds
// its aggregate; a2 waits behind it. When a1 leaves the pending list
// another way (here an operator acknowledges it), a2 must not wait for
// ever: the hold is dropped and a2 runs.
func TestHoldReleasedWhenBlockerLeavesAnotherWay(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	ctx := context.Background()
	rec := newRecorder()
	handler := func(ctx context.Context, m *consumer.Message) error {
		if m.Envelope.EventID == "a1" {
			return errors.New("always failing, transiently")
		}
		return rec.handle(ctx, m)
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Retry.Attempts = 1
	cfg.MaxDeliveries = 1000
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = 300*time.Millisecond, 50*time.Millisecond
	h := start(t, cfg)
	ids := publish(t, rdb, stream, envelope("a1", platform.BetSettledConfirmed, "bet-A", 3, nil),
		envelope("a2", platform.BetSettledConfirmed, "bet-A", 3, nil))
	testkit.Eventually(t, 10*time.Second, "a2 deferred behind a1 by a reclaim pass", func() bool {
		return h.outcome(platform.BetSettledConfirmed, consumer.OutcomeDeferred) >= 3
	})
	if rec.times("a2") != 0 {
		t.Fatal("a2 ran while a1 was pending")
	}
	if err := rdb.XAck(ctx, stream, "rolling_service", ids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "a2 applied once a1 left", func() bool { return rec.times("a2") == 1 && h.pending() == 0 })
}
