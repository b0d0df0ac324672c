package consumer_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
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
	storeCfg := dedup.RedisConfig{Prefix: prefix + "dedup:"}
	store, _ := dedup.NewRedis(rdb, storeCfg)
	dead, _ := dedup.NewRedis(rdb, storeCfg) // the killed process's store, its lease still live
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
	publish(t, rdb, stream, envelope("a1", event.BetSettledConfirmed, "bet-A", 3, nil),
		envelope("a2", event.BetSettledConfirmed, "bet-A", 3, nil),
		envelope("b1", event.BetSettledConfirmed, "bet-B", 3, nil))
	eventually(t, 5*time.Second, "b1 applied while a1 is busy", func() bool { return len(applied()) >= 1 })
	publish(t, rdb, stream, envelope("a3", event.BetSettledConfirmed, "bet-A", 3, nil))
	// Let several reclaim passes meet the busy lease (each defers a1 again).
	eventually(t, 5*time.Second, "a1 deferred by a reclaim pass", func() bool {
		return h.outcome(event.BetSettledConfirmed, consumer.OutcomeDeferred) >= 4
	})
	if got := applied(); strings.Join(got, ",") != "b1" {
		t.Fatalf("applied %v while a1's lease is held: want only b1", got)
	}
	// The dead process's lease ends (it expires in production).
	if err := dead.Settle(ctx, nil, []dedup.Key{a1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "everything applied", func() bool { return len(applied()) == 4 && h.pending() == 0 })
	if got := strings.Join(applied(), ","); got != "b1,a1,a2,a3" {
		t.Fatalf("applied %s, want b1,a1,a2,a3", got)
	}
}
