package consumer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// TestIdleConsumerCleanupKeepsAConsumerThatCameBack: the cleanup of idle
// consumers reads XINFO CONSUMERS, then deletes. A consumer that restarts
// under the same name in between (it reads an entry, which is now pending
// for it) must be kept with its pending entry; a consumer idle with nothing
// pending is removed.
func TestIdleConsumerCleanupKeepsAConsumerThatCameBack(t *testing.T) {
	shared, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	ctx := context.Background()
	for _, cmd := range [][]any{
		{"XGROUP", "CREATE", stream, "rolling_service", "0", "MKSTREAM"},
		{"XGROUP", "CREATECONSUMER", stream, "rolling_service", "pod-old"},
		{"XGROUP", "CREATECONSUMER", stream, "rolling_service", "pod-gone"},
	} {
		if err := shared.Do(ctx, cmd...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	const idleTimeout = 200 * time.Millisecond
	fields, err := event.Encode(envelope("back", platform.BetSettledConfirmed, "bet-1", 3, nil))
	if err != nil {
		t.Fatal(err)
	}
	// The consumer's client: once XINFO CONSUMERS has named pod-old as
	// idle and empty, pod-old comes back and reads an entry (XADD and
	// XREADGROUP in one transaction, so that no blocked reader takes it).
	var fired, infosAfter atomic.Int32
	rdb := redis.NewClient(&redis.Options{Addr: shared.Options().Addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(onCommand(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		err := next(ctx, cmd)
		ci, ok := cmd.(*redis.XInfoConsumersCmd)
		if !ok {
			return err
		}
		if fired.Load() > 0 {
			infosAfter.Add(1)
			return err
		}
		for _, co := range ci.Val() {
			if co.Name == "pod-old" && co.Pending == 0 && co.Idle >= idleTimeout && fired.CompareAndSwap(0, 1) {
				if _, err := shared.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields})
					p.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "rolling_service", Consumer: "pod-old",
						Streams: []string{stream, ">"}, Count: 10, Block: -1})
					return nil
				}); err != nil {
					t.Errorf("pod-old's read: %v", err)
				}
			}
		}
		return err
	}))
	cfg := fastConfig(rdb, stream, handlersFor(newRecorder().handle))
	cfg.ConsumerIdleTimeout = idleTimeout
	cfg.HandlerTimeout, cfg.ReclaimIdle = 2*time.Second, time.Minute // pod-a does not reclaim pod-old's entry here
	start(t, cfg)

	consumers := func() map[string]int64 {
		cs, err := shared.XInfoConsumers(ctx, stream, "rolling_service").Result()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, c := range cs {
			out[c.Name] = c.Pending
		}
		return out
	}
	// Two more readings after pod-old came back: the cleanup that saw it
	// idle has finished, and a later one has run.
	testkit.Eventually(t, 10*time.Second, "pod-old came back and two cleanups ran after", func() bool { return infosAfter.Load() >= 2 })
	cs := consumers()
	if n, ok := cs["pod-old"]; !ok || n != 1 {
		t.Fatalf("consumers %v: pod-old, back with one entry pending, was removed (its pending entry dropped)", cs)
	}
	if p, err := shared.XPending(ctx, stream, "rolling_service").Result(); err != nil || p.Consumers["pod-old"] != 1 {
		t.Fatalf("pending %+v %v: pod-old's entry left the pending list", p, err)
	}
	testkit.Eventually(t, 5*time.Second, "pod-gone, idle with nothing pending, removed", func() bool {
		_, ok := consumers()["pod-gone"]
		return !ok
	})
}
