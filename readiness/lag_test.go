package readiness

import (
	"testing"
	"time"
)

func TestWatermarkLag(t *testing.T) {
	t.Parallel()
	w, clk := newTestWatermark(t, "wallet")
	if snap := w.Snapshot(); snap.LagKnown || snap.Lag != 0 {
		t.Fatalf("Lag = %v, %v on a new watermark; want unknown", snap.Lag, snap.LagKnown)
	}
	steps := []struct {
		set       time.Duration
		want      time.Duration
		wantKnown bool
	}{
		{12500 * time.Millisecond, 12500 * time.Millisecond, true},
		{0, 0, true},
		{-1, 0, false},
		{3 * time.Second, 3 * time.Second, true},
		{-time.Hour, 0, false},
	}
	for _, s := range steps {
		w.SetLag(s.set)
		if snap := w.Snapshot(); snap.Lag != s.want || snap.LagKnown != s.wantKnown {
			t.Errorf("after SetLag(%v): Lag = %v, %v; want %v, %v", s.set, snap.Lag, snap.LagKnown, s.want, s.wantKnown)
		}
	}

	// The lag is for people: it is no heartbeat and leaves the rules alone.
	clk.Advance(2 * time.Minute)
	w.SetLag(time.Second)
	if snap := w.Snapshot(); !snap.LastHeartbeat.IsZero() {
		t.Error("SetLag counted as a heartbeat")
	}
	if st := w.Status(); st.State != StateWedged {
		t.Errorf("state = %v after SetLag without heartbeat, want wedged", st.State)
	}
}

func TestWatermarkLagDoesNotAllocate(t *testing.T) {
	w, _ := newTestWatermark(t, "wallet")
	var d time.Duration
	if n := testing.AllocsPerRun(100, func() {
		d += time.Millisecond
		w.SetLag(d)
		_ = w.Snapshot()
	}); n != 0 {
		t.Errorf("SetLag and Lag allocate %v times per run, want 0", n)
	}
}

// TestWatermarkLagConcurrent runs SetLag against readers under -race.
func TestWatermarkLagConcurrent(t *testing.T) {
	t.Parallel()
	w, _ := newTestWatermark(t, "wallet")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			w.SetLag(time.Duration(i) * time.Millisecond)
		}
	}()
	for range 1000 {
		if snap := w.Snapshot(); snap.LagKnown && (snap.Lag < 0 || snap.Lag >= time.Second) {
			t.Fatalf("Lag = %v: a value never set", snap.Lag)
		}
	}
	<-done
	if snap := w.Snapshot(); !snap.LagKnown || snap.Lag != 999*time.Millisecond {
		t.Errorf("Lag = %v, %v after the writer ended; want 999ms, true", snap.Lag, snap.LagKnown)
	}
}
