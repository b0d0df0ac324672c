package readiness

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Failed work items end only with progress: a loop whose reads succeed but
// whose every item fails turns failing at the bound, and a success of an
// iteration does not hide it.
func TestFailWorkNeedsProgress(t *testing.T) {
	t.Parallel()
	w, clk := newTestWatermark(t, "wallet") // failure bound 3
	w.Progress("1-0")
	w.SetBacklog(0)
	handler := errors.New("handler: insert: deadlock detected")
	for i := range 3 {
		if st := w.Status(); st.State == StateFailing {
			t.Fatalf("failing after %d failed items: %q", i, st.Reason)
		}
		w.FailWork(handler)
		w.Succeed() // the next read worked: not a reset of failed work
		clk.Advance(time.Second)
	}
	st := w.Status()
	want := "failing: 3 work items failed with no progress since (bound 3), last error: handler: insert: deadlock detected"
	if st.State != StateFailing || st.Reason != want {
		t.Fatalf("after 3 failed items: %v %q, want %q", st.State, st.Reason, want)
	}
	if n := w.Snapshot().ConsecutiveWorkFailures; n != 3 {
		t.Errorf("ConsecutiveWorkFailures = %d", n)
	}
	if n := w.Snapshot().ConsecutiveFailures; n != 0 {
		t.Errorf("ConsecutiveFailures = %d, want 0 (failed items are not failed iterations)", n)
	}
	w.Progress("2-0")
	if st := w.Status(); st.State != StateProgressing {
		t.Fatalf("after progress: %v %q", st.State, st.Reason)
	}
	// Failed iterations and failed items do not add up: each has the bound.
	w.Fail(nil)
	w.Fail(nil)
	w.FailWork(nil)
	w.FailWork(nil)
	if st := w.Status(); st.State == StateFailing {
		t.Errorf("2 failed iterations and 2 failed items: %q", st.Reason)
	}
}

// Items waiting for a retry are shown, not judged: a loop reporting only
// them is idle or progressing, and says how many.
func TestRetryingIsShown(t *testing.T) {
	t.Parallel()
	w, clk := newTestWatermark(t, "wallet")
	w.Progress("5-0")
	w.SetBacklog(0)
	w.SetRetrying(1)
	if st := w.Status(); st.State != StateProgressing || st.Reason != "progressing: last progress 0s ago at 5-0, backlog 0, retrying 1" {
		t.Errorf("progressing: %v %q", st.State, st.Reason)
	}
	clk.Advance(44 * time.Second)
	if st := w.Status(); st.State != StateIdle || st.Reason != "idle: no backlog, retrying 1, last progress 44s ago" {
		t.Errorf("idle: %v %q", st.State, st.Reason)
	}
	w.SetBacklog(4)
	if st := w.Status(); st.State != StateStalled || !strings.HasPrefix(st.Reason, "stalled: backlog 4, retrying 1, no progress") {
		t.Errorf("stalled: %v %q", st.State, st.Reason)
	}
	w.SetRetrying(-3)
	if n := w.Snapshot().Retrying; n != 0 {
		t.Errorf("Retrying after a negative count = %d", n)
	}
}

// A notice changes no state: the loop stays ready, the reason shows it
// with its time left, and /ready?full=1 lists it beside an OK check.
func TestNoticeKeepsReady(t *testing.T) {
	t.Parallel()
	p, err := NewProbes(ProbesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w, clk := newTestWatermark(t, "wallet")
	if err := p.AddLoop(w); err != nil {
		t.Fatal(err)
	}
	w.Progress("1-0")
	w.SetBacklog(0)
	w.Notice("legacy_schema: schema_version 1", clk.Now().Add(5*time.Minute))
	w.Notice("legacy_schema: schema_version 1 again", clk.Now().Add(time.Minute)) // does not shorten
	st := w.Status()
	want := "progressing: last progress 0s ago at 1-0, backlog 0; notice: legacy_schema: schema_version 1 again (for 5m0s more)"
	if st.State != StateProgressing || st.Reason != want {
		t.Fatalf("with a notice: %v %q, want %q", st.State, st.Reason, want)
	}
	code, body := get(t, p, http.MethodGet, "/ready?full=1")
	if code != http.StatusOK || body["loop/wallet"] != "OK" || body["notice/loop/wallet"] != "legacy_schema: schema_version 1 again" {
		t.Errorf("GET /ready?full=1 with a notice = %d %v", code, body)
	}
	if code, _ := get(t, p, http.MethodGet, "/ready"); code != http.StatusOK {
		t.Errorf("GET /ready with a notice = %d", code)
	}
	// A notice beside a worse state: the state wins, the notice is shown.
	clk.Advance(time.Minute)
	w.SetBacklog(10)
	code, body = get(t, p, http.MethodGet, "/ready?full=1")
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body["loop/wallet"], "stalled: backlog 10") ||
		!strings.HasSuffix(body["loop/wallet"], "; notice: legacy_schema: schema_version 1 again (for 4m0s more)") {
		t.Errorf("stalled with a notice = %d %v", code, body)
	}
	clk.Advance(4 * time.Minute)
	if snap := w.Snapshot(); snap.Notice {
		t.Error("notice still shown after its time")
	}
	code, body = get(t, p, http.MethodGet, "/ready?full=1")
	if _, ok := body["notice/loop/wallet"]; ok || code != http.StatusServiceUnavailable {
		t.Errorf("after the notice ended = %d %v", code, body)
	}
	w.Notice("again", clk.Now().Add(time.Hour))
	w.ClearNotice()
	if snap := w.Snapshot(); snap.Notice {
		t.Error("notice shown after ClearNotice")
	}
}

// A loop its supervisor ran again after a backoff gets one stall window to
// show progress, as at start: the readings from before the backoff (an
// old progress, a backlog) do not make it stalled the moment it runs. A
// failure bound reached before the backoff still shows.
func TestRestartedLoopGetsAStallWindow(t *testing.T) {
	t.Parallel()
	w, clk := newTestWatermark(t, "wallet") // stall window 30s
	w.Progress("1-0")
	w.SetBacklog(40)
	w.Park("service in backoff")
	clk.Advance(2 * time.Minute)
	w.Unpark()
	clk.Advance(10 * time.Second)
	st := w.Status()
	want := "starting: restarted 10s ago after being parked, no progress since (window 30s), backlog 40"
	if st.State != StateStarting || st.Reason != want || !st.Ready() {
		t.Fatalf("restarted: %v %q, want %q", st.State, st.Reason, want)
	}
	clk.Advance(21 * time.Second)
	if st := w.Status(); st.State != StateStalled {
		t.Fatalf("a stall window after the restart without progress: %v %q", st.State, st.Reason)
	}
	w.Progress("2-0")
	if st := w.Status(); st.State != StateProgressing {
		t.Fatalf("after progress: %v %q", st.State, st.Reason)
	}
	// Failures reached before the backoff still make it failing.
	for range 3 {
		w.Fail(nil)
	}
	w.Park("service in backoff")
	clk.Advance(time.Minute)
	w.Unpark()
	if st := w.Status(); st.State != StateFailing {
		t.Fatalf("restarted after 3 failures (bound 3): %v %q", st.State, st.Reason)
	}
}

// A loop parked by its supervisor after its failures reached the bound is
// failing, not parked: through a dependency outage the supervisor restarts
// and backs it off, and the state (and the alert on it) must not flip to
// parked and back. It stays live.
func TestParkedAfterFailingStaysFailing(t *testing.T) {
	t.Parallel()
	w, clk := newTestWatermark(t, "wallet") // failure bound 3
	for range 3 {
		w.Fail(errors.New("dial tcp 10.0.0.7:6379: connect: connection refused"))
	}
	w.Park("service in backoff")
	clk.Advance(10 * time.Minute) // far past the liveness window
	st := w.Status()
	want := "failing: 3 consecutive failures (bound 3), last error: dial tcp 10.0.0.7:6379: connect: connection refused; parked: service in backoff"
	if st.State != StateFailing || st.Reason != want || !st.Live() {
		t.Fatalf("parked after failing: %v %q live %v, want %q", st.State, st.Reason, st.Live(), want)
	}
	w.Unpark()
	w.Succeed() // Redis answers again
	if st := w.Status(); st.State == StateFailing {
		t.Fatalf("after a success: %v %q", st.State, st.Reason)
	}
	// Below the bound, parked is parked.
	w.Fail(nil)
	w.Park("service in backoff")
	if st := w.Status(); st.State != StateParked {
		t.Fatalf("parked with 1 failure: %v %q", st.State, st.Reason)
	}
}

// Failed work items keep a loop failing while items still wait for a
// retry, or while the last one failed within the stall window; once they
// are gone and none failed for a window, a loop with nothing to do is not
// failing for ever.
func TestFailedWorkEndsWhenNothingIsLeft(t *testing.T) {
	t.Parallel()
	w, clk := newTestWatermark(t, "wallet") // failure bound 3, stall window 30s
	w.Progress("1-0")
	for range 3 {
		w.FailWork(errors.New("bet not found"))
	}
	w.SetBacklog(0)
	w.SetRetrying(2)
	clk.Advance(10 * time.Minute)
	w.Heartbeat() // the loop runs on, waiting for the redeliveries
	if st := w.Status(); st.State != StateFailing {
		t.Fatalf("items still retrying, 10m later: %v %q", st.State, st.Reason)
	}
	w.SetRetrying(0) // dead-lettered: nothing waits
	if st := w.Status(); st.State != StateIdle {
		t.Fatalf("nothing left to retry, last failure 10m ago: %v %q", st.State, st.Reason)
	}
	w.FailWork(errors.New("bet not found")) // a new failure: failing again
	if st := w.Status(); st.State != StateFailing {
		t.Fatalf("a fresh failure after the run: %v %q", st.State, st.Reason)
	}
	clk.Advance(31 * time.Second)
	w.Heartbeat()
	if st := w.Status(); st.State != StateIdle {
		t.Fatalf("a stall window after the last failure, nothing retrying: %v %q", st.State, st.Reason)
	}
}
