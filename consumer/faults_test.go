package consumer_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
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

// readyStatus GETs /ready?full=1 and returns the status code and body.
func readyStatus(t *testing.T, srv *httptest.Server) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + "/ready?full=1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// TestRedisPausedStallsThenRecovers: with Redis frozen (SIGSTOP) the
// consumer cannot move; /ready turns 503 while /live stays 200; after
// SIGCONT everything published is applied once.
func TestRedisPausedStallsThenRecovers(t *testing.T) {
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	stream := event.StreamKey(platform.StreamWallet)

	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "rolling", StallWindow: 500 * time.Millisecond,
		LivenessWindow: time.Minute, FailureBound: 3})
	if err != nil {
		t.Fatal(err)
	}
	probes, err := readiness.NewProbes(readiness.ProbesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := probes.AddLoop(wm); err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(probes)
	t.Cleanup(web.Close)

	rec := newRecorder()
	cfg := fastConfig(rdb, stream, handlersFor(rec.handle))
	cfg.Watermark = wm
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("before", platform.BetSettledConfirmed, "bet-1", 3, nil))
	// Acknowledged before the freeze: without a dedup store delivery is at
	// least once, and an acknowledgement lost to the freeze would rightly
	// redeliver "before".
	testkit.Eventually(t, 5*time.Second, "first event applied, acknowledged and ready", func() bool {
		code, _ := readyStatus(t, web)
		return rec.times("before") == 1 && h.pending() == 0 && code == http.StatusOK
	})

	srv.Pause()
	testkit.Eventually(t, 10*time.Second, "/ready 503 while Redis is frozen", func() bool {
		code, body := readyStatus(t, web)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "loop/rolling")
	})
	resp, err := http.Get(web.URL + "/live")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/live = %d while Redis is frozen; a dependency outage must not fail liveness", resp.StatusCode)
	}

	srv.Resume()
	publish(t, rdb, stream, envelope("after", platform.BetSettledConfirmed, "bet-2", 3, nil))
	testkit.Eventually(t, 10*time.Second, "recovered: both applied once, ready again", func() bool {
		code, _ := readyStatus(t, web)
		return rec.times("after") == 1 && code == http.StatusOK && h.pending() == 0
	})
	if rec.times("before") != 1 {
		t.Fatalf("event applied %d times", rec.times("before"))
	}
}

// TestRedisRestartedEmptyRecreatesGroup: Redis comes back without data;
// the consumer sees NOGROUP, recreates the group, counts and reports it,
// and goes on with new events.
func TestRedisRestartedEmptyRecreatesGroup(t *testing.T) {
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	stream := event.StreamKey(platform.StreamWallet)
	rec := newRecorder()
	h := start(t, fastConfig(rdb, stream, handlersFor(rec.handle)))
	publish(t, rdb, stream, envelope("one", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "first applied", func() bool { return rec.times("one") == 1 })

	srv.Restart()
	testkit.Eventually(t, 10*time.Second, "group recreated and counted", func() bool {
		return h.counter("headway_consumer_group_recreated_total", nil) >= 1
	})
	// The default policy (notice): ready, with the reason shown.
	st := h.wm.Status()
	if snap := h.wm.Snapshot(); !st.Ready() || !snap.Notice || !strings.Contains(snap.NoticeReason, "recreated") {
		t.Errorf("status after NOGROUP = %v %q; want ready with the notice", st.State, st.Reason)
	}
	if !strings.Contains(h.logs.String(), "NOGROUP") {
		t.Error("NOGROUP not logged")
	}
	publish(t, rdb, stream, envelope("two", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "new events flow again", func() bool { return rec.times("two") == 1 })
	groups, err := rdb.XInfoGroups(context.Background(), stream).Result()
	if err != nil || len(groups) != 1 || groups[0].Name != "rolling_service" {
		t.Fatalf("groups after restart: %v %v", groups, err)
	}
}

// TestHungHandlerStallsButStaysLive: a handler that ignores its context
// holds the batch; with a backlog and no progress the consumer is stalled
// (not ready) within the window, but its loop still beats (live).
func TestHungHandlerStallsButStaysLive(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	release := make(chan struct{})
	handler := func(ctx context.Context, m *consumer.Message) error {
		<-release // ignores ctx on purpose
		return nil
	}
	wm, _ := readiness.NewWatermark(readiness.WatermarkConfig{Name: "hung", StallWindow: 500 * time.Millisecond,
		LivenessWindow: 1500 * time.Millisecond})
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Watermark = wm
	h := start(t, cfg)
	t.Cleanup(func() { close(release) }) // runs before the harness stops Serve
	publish(t, rdb, stream, envelope("hang", platform.BetSettledConfirmed, "bet-1", 3, nil),
		envelope("behind", platform.BetSettledConfirmed, "bet-2", 3, nil))
	testkit.Eventually(t, 5*time.Second, "stalled with a backlog", func() bool {
		st := wm.Status()
		return st.State == readiness.StateStalled && strings.Contains(st.Reason, "backlog")
	})
	// Well past the liveness window, the loop is still live.
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if st := wm.Status(); !st.Live() {
			t.Fatalf("a loop waiting on a hung handler was judged not live: %v", st.Reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = h
}
