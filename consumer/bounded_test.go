package consumer_test

import (
	"context"
	"io"
	"log/slog"
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

// TestHungRedisNeverWedgesTheLoop: Redis stops answering (SIGSTOP) while
// the client has no timeouts of its own (ReadTimeout and WriteTimeout -1),
// so only the consumer's context deadlines bound its calls. The consumer
// must turn not ready (stalled or failing) and stay live throughout, with
// a liveness window a little above its longest bound (opTimeout 5s plus
// Block); after SIGCONT it applies new events again.
func TestHungRedisNeverWedgesTheLoop(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, ReadTimeout: -1, WriteTimeout: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	stream := event.StreamKey(platform.StreamWallet)
	const liveness = 7 * time.Second
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "hung", StallWindow: 500 * time.Millisecond,
		LivenessWindow: liveness, FailureBound: 2})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := fastConfig(rdb, stream, handlersFor(rec.handle))
	cfg.Watermark = wm
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = 300*time.Millisecond, 100*time.Millisecond // reclaim passes run all along
	cfg.ConsumerIdleTimeout = time.Second
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("before", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "applied and ready", func() bool { return rec.times("before") == 1 && wm.Status().Ready() })

	srv.Pause()
	paused := true
	defer func() {
		if paused {
			srv.Resume() // so that Serve can stop
		}
	}()
	testkit.Eventually(t, 20*time.Second, "not ready while Redis hangs", func() bool {
		st := wm.Status()
		if !st.Live() {
			t.Fatalf("wedged while Redis hangs: %v", st.Reason)
		}
		return st.State == readiness.StateStalled || st.State == readiness.StateFailing
	})
	// Longer than the liveness window plus the longest bound: the loop
	// beats all along, and stays not ready.
	deadline := time.Now().Add(liveness + 6*time.Second)
	for time.Now().Before(deadline) {
		st := wm.Status()
		if !st.Live() {
			t.Fatalf("wedged while Redis hangs: %v", st.Reason)
		}
		if st.Ready() {
			t.Fatalf("ready while Redis hangs: %v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	srv.Resume()
	paused = false
	publish(t, rdb, stream, envelope("after", platform.BetSettledConfirmed, "bet-2", 3, nil))
	testkit.Eventually(t, 20*time.Second, "applies again and ready", func() bool {
		return rec.times("after") == 1 && h.pending() == 0 && wm.Status().Ready()
	})
}

// TestStartAgainstHungRedisFails: Serve started while Redis hangs (and the
// client has no timeouts of its own) returns an error once creating the
// group times out, so its supervisor restarts it with backoff; it does not
// hang.
func TestStartAgainstHungRedisFails(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, ReadTimeout: -1, WriteTimeout: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil { // connected before the hang
		t.Fatal(err)
	}
	srv.Pause()
	t.Cleanup(srv.Resume) // runs before the server is stopped
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "start"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(rdb, event.StreamKey(platform.StreamWallet), handlersFor(newRecorder().handle))
	cfg.Watermark = wm
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := consumer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	select {
	case err := <-done:
		if err == nil || wm.Snapshot().ConsecutiveFailures == 0 {
			t.Fatalf("Serve returned %v with %d failures recorded; want the group creation's error, recorded", err, wm.Snapshot().ConsecutiveFailures)
		}
	case <-time.After(15 * time.Second):
		cancel()
		srv.Resume()
		<-done
		t.Fatal("Serve hung for 15s against a Redis that does not answer")
	}
}
