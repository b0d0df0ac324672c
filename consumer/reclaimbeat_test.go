package consumer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// hangAfterReclaim makes the calls that follow a reclaim — delivery counts
// (XPENDING), the dead-letter script, the acknowledgement — hang until
// their deadline once armed, as a Redis that stops answering right after an
// XAUTOCLAIM returned would.
type hangAfterReclaim struct{ on atomic.Bool }

func (h *hangAfterReclaim) hang(ctx context.Context, name string) error {
	switch name {
	case "xpending", "evalsha", "eval", "xack":
		if h.on.Load() {
			<-ctx.Done()
			return ctx.Err()
		}
	}
	return nil
}

func (h *hangAfterReclaim) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *hangAfterReclaim) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := h.hang(ctx, cmd.Name()); err != nil {
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}
func (h *hangAfterReclaim) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if err := h.hang(ctx, c.Name()); err != nil {
				return err
			}
		}
		return next(ctx, cmds)
	}
}

// TestReclaimKeepsTheHeartbeat: a reclaimed batch makes several bounded
// calls one after another (delivery counts, dead letters, handlers, the
// acknowledgement); when each of them hangs to its deadline the loop must
// still beat, so it is never judged wedged (ADR-014: liveness never waits
// on Redis).
func TestReclaimKeepsTheHeartbeat(t *testing.T) {
	t.Parallel()
	base, prefix := redistest.Client(t)
	rdb := redis.NewClient(base.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	hook := &hangAfterReclaim{}
	rdb.AddHook(hook)
	stream := walletStream(prefix)
	ctx := context.Background()
	if err := base.XGroupCreateMkStream(ctx, stream, "rolling_service", "0").Err(); err != nil {
		t.Fatal(err)
	}
	publishRaw(t, base, stream, map[string]any{"garbage": "x"}) // to dead-letter
	publish(t, base, stream, envelope("a1", platform.BetSettledConfirmed, "bet-A", 3, nil))
	if err := base.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "rolling_service", Consumer: "pod-dead",
		Streams: []string{stream, ">"}, Count: 10}).Err(); err != nil {
		t.Fatal(err)
	}
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "beat", StallWindow: 500 * time.Millisecond,
		LivenessWindow: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := fastConfig(rdb, stream, handlersFor(rec.handle))
	cfg.Watermark = wm
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = time.Second, 100*time.Millisecond
	h := start(t, cfg)
	hook.on.Store(true)
	// The dead consumer's entries are reclaimed after ReclaimIdle; their
	// batch's calls then hang one after another (about 15 s in all).
	deadline := time.Now().Add(30 * time.Second)
	for rec.times("a1") == 0 || h.counter("headway_consumer_dead_letter_failures_total", nil) == 0 ||
		h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 0 {
		if !wm.Status().Live() {
			t.Fatalf("the loop was judged not live while the reclaimed batch's calls hung: %v", wm.Status())
		}
		if time.Now().After(deadline) {
			t.Fatal("the reclaimed batch never finished")
		}
		time.Sleep(10 * time.Millisecond)
	}
	hook.on.Store(false)
}
