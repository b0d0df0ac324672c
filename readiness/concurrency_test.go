package readiness

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A reader interleaving with an Unpark after a park longer than the
// liveness window never judges the loop wedged: Unpark publishes the new
// window before it unparks, and evaluate reads in that order.
func TestUnparkNeverReadsAsWedged(t *testing.T) {
	t.Parallel()
	w, clk := newTestWatermark(t, "wallet") // liveness window 1m
	w.Heartbeat()
	var wedged atomic.Int64
	var first atomic.Pointer[string]
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if st := w.StatusAt(clk.Now()); st.State == StateWedged {
				wedged.Add(1)
				first.CompareAndSwap(nil, &st.Reason)
			}
		}
	})
	// The window is a few instructions wide: keep trying for a while
	// (before the fix, under -race, this found it several times a second).
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && wedged.Load() == 0; {
		w.Park("service in backoff")
		clk.Advance(2 * time.Minute) // a long backoff: the heartbeat is old
		w.Unpark()
	}
	close(stop)
	wg.Wait()
	if n := wedged.Load(); n > 0 {
		t.Fatalf("%d evaluations judged a just-unparked loop wedged, first: %s", n, *first.Load())
	}
}

// A Park made while Unpark runs stands: Unpark does not undo it, even
// when its reason is the one Unpark ends (the backoff hook parks with the
// same text every time). The clock is read inside Unpark (its new liveness
// window), which is where the Park is made here.
func TestUnparkKeepsConcurrentPark(t *testing.T) {
	t.Parallel()
	for _, again := range []string{"service stopped for good", "service in backoff"} {
		var w *Watermark
		var during atomic.Bool
		now := time.Unix(1_700_000_000, 0)
		w, err := NewWatermark(WatermarkConfig{Name: "wallet", Now: func() time.Time {
			if during.CompareAndSwap(true, false) {
				w.Park(again)
			}
			return now
		}})
		if err != nil {
			t.Fatal(err)
		}
		w.Park("service in backoff")
		during.Store(true)
		w.Unpark()
		if snap := w.Snapshot(); !snap.Parked || snap.ParkedReason != again {
			t.Errorf("after Park(%q) during Unpark: Parked = %v, %q; want the later park to stand", again, snap.Parked, snap.ParkedReason)
		}
	}
}

// A failure recorded from another goroutine while Progress runs is never
// lost: when the last thing that happened (by the clock) was a failure,
// the loop counts at least one. The clock ticks once per reading, so the
// order of the two is the order of their readings.
func TestFailDuringProgressIsKept(t *testing.T) {
	t.Parallel()
	var ticks atomic.Int64
	start := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return start.Add(time.Duration(ticks.Add(1))) }
	boom := errors.New("boom")
	lost := 0
	for range 20000 {
		w, err := NewWatermark(WatermarkConfig{Name: "wallet", Now: clock, FailureBound: 1000})
		if err != nil {
			t.Fatal(err)
		}
		w.Fail(boom) // something for Progress to reset
		var ready sync.WaitGroup
		ready.Add(2)
		var wg sync.WaitGroup
		wg.Go(func() { ready.Done(); ready.Wait(); w.Progress("1-0") })
		wg.Go(func() { ready.Done(); ready.Wait(); w.Fail(boom) })
		wg.Wait()
		snap := w.Snapshot()
		progress := snap.LastProgress
		beat := w.at(w.heartbeat.Load())
		if beat.After(progress) && w.Snapshot().ConsecutiveFailures == 0 {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d failures recorded after a progress were reset by it", lost)
	}
}

// Resets from two goroutines at once never undo each other's count, and
// the count never goes below zero.
func TestConcurrentResetsKeepCount(t *testing.T) {
	t.Parallel()
	w, _ := newTestWatermark(t, "wallet")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5000 {
				w.Fail(nil)
				w.Progress("")
				w.Succeed()
				w.FailWork(nil)
			}
		})
	}
	wg.Wait()
	if n := w.Snapshot().ConsecutiveFailures; n < 0 || n > 4 {
		t.Errorf("consecutive failures after the storm = %d, want 0..4", n)
	}
	if n := w.Snapshot().ConsecutiveWorkFailures; n < 0 || n > 4 {
		t.Errorf("consecutive work failures after the storm = %d, want 0..4", n)
	}
	if got := w.Snapshot().FailuresTotal; got != 4*5000*2 {
		t.Errorf("FailuresTotal = %d, want %d", got, 4*5000*2)
	}
}
