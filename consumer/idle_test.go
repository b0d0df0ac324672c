package consumer_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// TestIdleConsumerStaysReady: a consumer with nothing to do for ten
// minutes (on a fast clock) is idle, which is ready — no backlog, so no
// progress is owed — and /ready answers 200 throughout. It then applies a
// new event and is progressing.
func TestIdleConsumerStaysReady(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	clock := testkit.NewClock()
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "idle", StallWindow: 30 * time.Second, Now: clock.Now})
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
	srv := httptest.NewServer(probes)
	t.Cleanup(srv.Close)
	rec := newRecorder()
	cfg := fastConfig(rdb, stream, handlersFor(rec.handle))
	cfg.Watermark = wm
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("first", platform.BetSettledConfirmed, "bet-1", 3, nil))
	testkit.Eventually(t, 5*time.Second, "the first event applied", func() bool { return rec.n() == 1 && h.pending() == 0 })

	for step := range 60 { // 60 × 10s = 10 minutes
		clock.Advance(10 * time.Second)
		testkit.Eventually(t, 5*time.Second, "a heartbeat at the new time", func() bool {
			snap := wm.Snapshot()
			hb, ok := snap.LastHeartbeat, !snap.LastHeartbeat.IsZero()
			return ok && !hb.Before(clock.Now())
		})
		st := wm.Status()
		if !st.Ready() || (st.State != readiness.StateIdle && st.State != readiness.StateProgressing) {
			t.Fatalf("after %ds idle: %v, want ready (idle, or progressing just after the event)", (step+1)*10, st)
		}
	}
	if st := wm.Status(); st.State != readiness.StateIdle {
		t.Fatalf("after 10 idle minutes: %v, want idle", st)
	}
	resp, err := http.Get(srv.URL + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/ready after 10 idle minutes = %d", resp.StatusCode)
	}
	publish(t, rdb, stream, envelope("after", platform.BetSettledConfirmed, "bet-2", 3, nil))
	testkit.Eventually(t, 5*time.Second, "progressing again", func() bool {
		return rec.n() == 2 && wm.Status().State == readiness.StateProgressing
	})
}
