package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// TestBatchRunsWithoutWaitingForTheNextRead: a batch that was read runs at
// once, while the loop is blocked reading the next one; at low traffic an
// entry does not wait for Block.
func TestBatchRunsWithoutWaitingForTheNextRead(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	rec := newRecorder()
	cfg := fastConfig(rdb, stream, handlersFor(rec.handle))
	cfg.Block = 5 * time.Second
	cfg.ReclaimIdle = time.Minute
	h := start(t, cfg)
	testkit.Eventually(t, 5*time.Second, "the consumer reads new entries", func() bool {
		cs, err := rdb.XInfoConsumers(context.Background(), stream, "rolling_service").Result()
		return err == nil && len(cs) == 1
	})
	for i := range 3 {
		id := fmt.Sprintf("lat-%d", i)
		began := time.Now()
		publish(t, rdb, stream, envelope(id, platform.BetSettledConfirmed, "bet-1", 3, nil))
		testkit.Eventually(t, 10*time.Second, id+" applied", func() bool { return rec.times(id) == 1 })
		if d := time.Since(began); d > 2*time.Second {
			t.Fatalf("%s applied after %v: it waited for a blocked read (Block %v)", id, d, cfg.Block)
		}
	}
	_ = h
}

// TestCancelLeavesBatchesBehindTheRunningOnePending: when Serve is
// cancelled, the batch running drains; the batches read and prepared behind
// it run no handler, stay pending and give their dedup leases back.
func TestCancelLeavesBatchesBehindTheRunningOnePending(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	dcfg := dedup.RedisConfig{Client: rdb, Prefix: prefix + "dedup:"}
	store, err := dedup.NewRedis(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := dedup.NewRedis(dcfg)
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	rec := newRecorder()
	handler := func(ctx context.Context, m *consumer.Message) error {
		if m.Envelope.AggregateID == "bet-0" || m.Envelope.AggregateID == "bet-1" {
			started <- struct{}{}
			<-release
		}
		return rec.handle(ctx, m)
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	cfg.BatchSize = 2
	var envs []event.Envelope
	for i := range 6 {
		envs = append(envs, envelope(fmt.Sprintf("p-%d", i), platform.BetSettledConfirmed, fmt.Sprintf("bet-%d", i), 3, nil))
	}
	publish(t, rdb, stream, envs...)
	h := start(t, cfg)
	<-started
	// The two batches behind the running one are read and claimed.
	behind := []dedup.Key{{Scope: "rolling_service", EventID: "p-2"}, {Scope: "rolling_service", EventID: "p-3"},
		{Scope: "rolling_service", EventID: "p-4"}, {Scope: "rolling_service", EventID: "p-5"}}
	testkit.Eventually(t, 5*time.Second, "the batches behind the running one are claimed", func() bool {
		for _, k := range behind {
			// RedisConfig.Prefix documents the key; a claimed key points
			// to its batch: "B:<batch id>".
			v, err := rdb.Get(context.Background(), dcfg.Prefix+"{"+k.Scope+"}:"+k.EventID).Result()
			if err != nil || v[0] != 'B' {
				return false
			}
		}
		return true
	})
	h.cancel()
	time.AfterFunc(50*time.Millisecond, func() { close(release) })
	select {
	case err := <-h.done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	h.cancel = nil
	for i := range 6 {
		want := 0
		if i < 2 {
			want = 1
		}
		if got := rec.times(fmt.Sprintf("p-%d", i)); got != want {
			t.Errorf("p-%d ran %d times, want %d", i, got, want)
		}
	}
	p, _ := rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: stream, Group: "rolling_service", Start: "-", End: "+", Count: 10}).Result()
	if len(p) != 4 {
		t.Fatalf("pending after the drain = %d, want the 4 entries behind the running batch", len(p))
	}
	out := make([]dedup.Outcome, len(behind))
	if err := other.Claim(context.Background(), behind, out); err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if o != dedup.Processed {
			t.Errorf("%s: %v after the drain; its lease should have been released", behind[i].EventID, o)
		}
	}
}

// slowFirstAck delays the first XACK it sees, so that the batch after it
// could acknowledge first.
type slowFirstAck struct {
	delay time.Duration
	seen  chan struct{} // closed at the first XACK
}

func (h *slowFirstAck) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *slowFirstAck) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *slowFirstAck) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "xack" {
			select {
			case <-h.seen:
			default:
				close(h.seen)
				time.Sleep(h.delay) // the slow round trip under test, not synchronisation
			}
		}
		return next(ctx, cmd)
	}
}

// TestAcknowledgementsInStreamOrder: the batch after a slow acknowledgement
// runs its handlers at once but acknowledges after it, so the watermark
// ends at the newest entry, never moved back to an older one.
func TestAcknowledgementsInStreamOrder(t *testing.T) {
	base, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	rdb := redis.NewClient(base.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	hook := &slowFirstAck{delay: 300 * time.Millisecond, seen: make(chan struct{})}
	rdb.AddHook(hook)
	ids := publish(t, base, stream,
		envelope("ack-1", platform.BetSettledConfirmed, "bet-1", 3, nil),
		envelope("ack-2", platform.BetSettledConfirmed, "bet-2", 3, nil))
	rec := newRecorder()
	cfg := fastConfig(rdb, stream, handlersFor(rec.handle))
	cfg.BatchSize = 1
	cfg.StartID = "0"
	h := start(t, cfg)
	testkit.Eventually(t, 5*time.Second, "both entries applied and acknowledged", func() bool {
		return h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 2
	})
	if rec.times("ack-2") != 1 {
		t.Fatalf("ack-2 ran %d times", rec.times("ack-2"))
	}
	if got := h.wm.Snapshot().Position; got != ids[1] {
		t.Fatalf("watermark at %s after both acknowledgements, want the newest entry %s", got, ids[1])
	}
}
