package supervisor

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/readiness"
)

// wmLoop is a loop that reports into its watermark, like consumer.Consumer:
// each start heartbeats, then returns the error of fail (if any), else
// progresses and heartbeats until cancelled.
type wmLoop struct {
	wm   *readiness.Watermark
	fail atomic.Pointer[error]
}

var _ WatermarkReporter = (*wmLoop)(nil)

func (l *wmLoop) Watermark() *readiness.Watermark { return l.wm }

func (l *wmLoop) Serve(ctx context.Context) error {
	l.wm.Heartbeat()
	if err := l.fail.Load(); err != nil {
		l.wm.Fail(*err)
		return *err
	}
	l.wm.SetBacklog(0)
	l.wm.Progress("1-0")
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			l.wm.Heartbeat()
		}
	}
}

const testLiveness = 50 * time.Millisecond

// newWMLoop returns a loop whose watermark, added to h's probes, is wedged
// after testLiveness without a heartbeat.
func newWMLoop(t *testing.T, h *harness, name string, fail error) *wmLoop {
	t.Helper()
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: name, LivenessWindow: testLiveness, StallWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.probes.AddLoop(wm); err != nil {
		t.Fatal(err)
	}
	l := &wmLoop{wm: wm}
	if fail != nil {
		l.fail.Store(&fail)
	}
	return l
}

// staysLive polls until the loop's last heartbeat is several liveness
// windows old, failing the test whenever /live is not 200 or held does not
// hold (the worker must still be held by its supervisor for the check to
// mean anything).
func staysLive(t *testing.T, h *harness, l *wmLoop, held func() (bool, string)) {
	t.Helper()
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		if ok, desc := held(); !ok {
			t.Fatalf("the worker was released before its watermark aged: %s", desc)
		}
		if code, body := h.live(t); code != http.StatusOK {
			t.Fatalf("GET /live = %d %v: a loop held by its supervisor failed liveness", code, body)
		}
		snap := l.wm.Snapshot()
		hb := snap.LastHeartbeat
		age := time.Since(hb)
		return age > 3*testLiveness, fmt.Sprintf("last heartbeat %v ago", age)
	})
}

// A loop that crash-loops into backoff longer than its liveness window
// keeps /live up — a Redis outage must not restart the pod — while /ready
// says why it is not ready; it is unparked when it runs again.
func TestBackoffKeepsLiveness(t *testing.T) {
	cfg, h := fastConfig(t)
	cfg.FailureBackoff = 2 * time.Second // ≫ testLiveness
	start(t, cfg, h)
	l := newWMLoop(t, h, "consumer", fmt.Errorf("read stream: %w", errRedis))
	if err := h.tree.Add("consumer", l); err != nil {
		t.Fatal(err)
	}
	inBackoff := func() (bool, string) {
		st, _ := h.tree.Status("consumer")
		return st.State == ServiceBackoff, fmt.Sprint(st)
	}
	testkit.EventuallyState(t, 5*time.Second, inBackoff)
	staysLive(t, h, l, inBackoff)

	code, body := h.ready(t)
	if code != http.StatusServiceUnavailable || body["loop/consumer"] != "parked: service in backoff" ||
		!strings.HasPrefix(body["service/consumer"], "backoff: ") || body["loops/live"] != "OK" {
		t.Errorf("GET /ready in backoff = %d %v", code, body)
	}
	if st := l.wm.Status(); st.State != readiness.StateParked || !st.Live() {
		t.Errorf("watermark in backoff: %v %q", st.State, st.Reason)
	}

	// Redis is back: after the backoff the loop runs, unparked, and ready.
	l.fail.Store(nil)
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusOK, fmt.Sprint(code, body)
	})
	if snap := l.wm.Snapshot(); snap.Parked {
		t.Errorf("still parked after the restart: %q", snap.ParkedReason)
	}
	lint(t, h.reg)
}

// A loop stopped by a permanent error stays visible and not ready with the
// error, but never fails /live: a permanent stop must not become a crash
// loop of the pod.
func TestPermanentStopKeepsLiveness(t *testing.T) {
	cfg, h := fastConfig(t)
	start(t, cfg, h)
	l := newWMLoop(t, h, "rolling", fmt.Errorf("consumer group %q: invalid stream name: %w", "rolling", suture.ErrDoNotRestart))
	if err := h.tree.Add("rolling", l); err != nil {
		t.Fatal(err)
	}
	stopped := func() (bool, string) {
		st, _ := h.tree.Status("rolling")
		return st.State == ServiceStopped, fmt.Sprint(st)
	}
	testkit.EventuallyState(t, 5*time.Second, stopped)
	staysLive(t, h, l, stopped)

	errText := `consumer group "rolling": invalid stream name: ` + suture.ErrDoNotRestart.Error()
	code, body := h.ready(t)
	if code != http.StatusServiceUnavailable || body["loop/rolling"] != "parked: service stopped: "+errText ||
		body["service/rolling"] != "stopped: returned a permanent error, not restarted: "+errText {
		t.Errorf("GET /ready after a permanent stop = %d %v", code, body)
	}
}

// A watermark is parked from Add until its service first runs, so a tree
// served later than the liveness window does not fail /live meanwhile.
func TestWatermarkParkedUntilFirstStart(t *testing.T) {
	cfg, h := fastConfig(t)
	tree, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.tree = tree
	l := newWMLoop(t, h, "relay", nil)
	if err := tree.Add("relay", l); err != nil {
		t.Fatal(err)
	}
	if snap := l.wm.Snapshot(); !snap.Parked || snap.ParkedReason != "service not started yet" {
		t.Fatalf("parked before Serve = %v, %q", snap.Parked, snap.ParkedReason)
	}
	begin := time.Now()
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		if code, body := h.live(t); code != http.StatusOK {
			t.Fatalf("GET /live before Serve = %d %v", code, body)
		}
		return time.Since(begin) > 3*testLiveness, "waiting for the liveness window to pass"
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tree.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusOK, fmt.Sprint(code, body)
	})
	if snap := l.wm.Snapshot(); snap.Parked {
		t.Error("still parked while running")
	}
}
