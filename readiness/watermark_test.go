package readiness

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWatermarkConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  WatermarkConfig
		ok   bool
	}{
		{"zero but name", WatermarkConfig{Name: "x"}, true},
		{"no name", WatermarkConfig{}, false},
		{"negative stall window", WatermarkConfig{Name: "x", StallWindow: -time.Second}, false},
		{"negative liveness window", WatermarkConfig{Name: "x", LivenessWindow: -time.Second}, false},
		{"negative failure bound disables", WatermarkConfig{Name: "x", FailureBound: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate() = %v, does not wrap ErrInvalidConfig", err)
			}
			w, err := NewWatermark(tt.cfg)
			if (err == nil) != tt.ok || (w != nil) != tt.ok {
				t.Errorf("NewWatermark() = %v, %v; want ok %v", w, err, tt.ok)
			}
		})
	}
}

func TestWatermarkReadings(t *testing.T) {
	t.Parallel()
	w, clk := newTestWatermark(t, "relay")
	start := clk.Now()
	if w.Name() != "relay" || w.String() != "loop/relay" {
		t.Errorf("Name, String = %q, %q", w.Name(), w.String())
	}
	if snap := w.Snapshot(); !snap.LastProgress.IsZero() {
		t.Error("LastProgress ok before any progress")
	}
	if snap := w.Snapshot(); !snap.LastHeartbeat.IsZero() {
		t.Error("LastHeartbeat ok before any heartbeat")
	}
	if snap := w.Snapshot(); snap.BacklogKnown {
		t.Error("backlog known on a new watermark")
	}
	if w.Snapshot().Position != "" || w.Snapshot().LastError != nil {
		t.Errorf("Position, LastError = %q, %v on a new watermark", w.Snapshot().Position, w.Snapshot().LastError)
	}

	clk.Advance(time.Second)
	w.Progress("42")
	w.SetBacklog(9)
	clk.Advance(time.Second)
	w.Heartbeat()
	boom := errors.New("boom")
	w.Fail(boom)
	w.Fail(nil)

	if snap := w.Snapshot(); snap.LastProgress.IsZero() || !snap.LastProgress.Equal(start.Add(time.Second)) {
		t.Errorf("LastProgress = %v (set %v)", snap.LastProgress, !snap.LastProgress.IsZero())
	}
	if snap := w.Snapshot(); snap.LastHeartbeat.IsZero() || !snap.LastHeartbeat.Equal(start.Add(2*time.Second)) {
		t.Errorf("LastHeartbeat = %v (set %v)", snap.LastHeartbeat, !snap.LastHeartbeat.IsZero())
	}
	if snap := w.Snapshot(); snap.Backlog != 9 || !snap.BacklogKnown {
		t.Errorf("Backlog = %d, %v", snap.Backlog, snap.BacklogKnown)
	}
	if w.Snapshot().Position != "42" || w.Snapshot().ProgressTotal != 1 {
		t.Errorf("Position, ProgressTotal = %q, %d", w.Snapshot().Position, w.Snapshot().ProgressTotal)
	}
	if w.Snapshot().ConsecutiveFailures != 2 || w.Snapshot().FailuresTotal != 2 || !errors.Is(w.Snapshot().LastError, boom) {
		t.Errorf("failures = %d, %d, %v", w.Snapshot().ConsecutiveFailures, w.Snapshot().FailuresTotal, w.Snapshot().LastError)
	}
	w.Progress("")
	if w.Snapshot().Position != "42" || w.Snapshot().ConsecutiveFailures != 0 || w.Snapshot().FailuresTotal != 2 {
		t.Errorf("after Progress(\"\"): %q, %d, %d", w.Snapshot().Position, w.Snapshot().ConsecutiveFailures, w.Snapshot().FailuresTotal)
	}
	w.BacklogUnknown()
	if snap := w.Snapshot(); snap.BacklogKnown {
		t.Error("backlog known after BacklogUnknown")
	}
}

// TestProgressByCountsWork: ProgressBy is progress that counts n units of
// work (Progress counts one); a batch whose items all failed counts none
// but still progresses.
func TestProgressByCountsWork(t *testing.T) {
	t.Parallel()
	w, _ := newTestWatermark(t, "w")
	w.Fail(errors.New("x"))
	w.ProgressBy("1-500", 500)
	w.Progress("1-501")
	w.ProgressBy("1-502", 0)
	w.ProgressBy("", -3)
	snap := w.Snapshot()
	if snap.WorkDone != 501 || snap.ProgressTotal != 4 || snap.Position != "1-502" || snap.ConsecutiveFailures != 0 {
		t.Errorf("WorkDone %d, ProgressTotal %d, Position %q, failures %d; want 501, 4, 1-502, 0",
			snap.WorkDone, snap.ProgressTotal, snap.Position, snap.ConsecutiveFailures)
	}
}

func TestPositionTruncates(t *testing.T) {
	t.Parallel()
	var p position
	long := strings.Repeat("0123456789", 10)
	p.store(long)
	if got := p.load(); got != long[:MaxPositionLen] {
		t.Errorf("load() = %q, want the first %d bytes", got, MaxPositionLen)
	}
	for _, s := range []string{"", "a", "1700000000000-1", "12345678", "123456789", "18446744073709551615-18446744073709551615"} {
		p.store(s)
		if got := p.load(); got != s {
			t.Errorf("load() = %q, want %q", got, s)
		}
	}
}

// TestPositionConcurrent runs writers and readers together (meant for
// -race): a reader must only ever see a text some writer stored, whole.
func TestPositionConcurrent(t *testing.T) {
	t.Parallel()
	var p position
	valid := map[string]bool{"": true}
	var texts [][]string
	for wr := range 3 {
		var ts []string
		for i := range 200 {
			s := fmt.Sprintf("%d-%d-%s", wr, i, strings.Repeat("x", (wr*7+i)%50))
			ts = append(ts, s)
			valid[s] = true
		}
		texts = append(texts, ts)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 1)
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if got := p.load(); !valid[got] {
					select {
					case errs <- got:
					default:
					}
					return
				}
			}
		})
	}
	var writers sync.WaitGroup
	for _, ts := range texts {
		writers.Go(func() {
			for range 20 {
				for _, s := range ts {
					p.store(s)
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	select {
	case got := <-errs:
		t.Fatalf("reader saw a torn position %q", got)
	default:
	}
	if !valid[p.load()] {
		t.Fatalf("final position %q was never stored", p.load())
	}
}

// TestWatermarkConcurrent exercises every update and read at once under
// -race, then checks the totals exactly: counters never lose an update,
// and the position is one some Progress wrote.
func TestWatermarkConcurrent(t *testing.T) {
	t.Parallel()
	w, err := NewWatermark(WatermarkConfig{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	const (
		goroutines = 4
		n          = 1000
		kinds      = 8
	)
	var wantProgress, wantFailures uint64
	written := map[string]bool{}
	for g := range goroutines {
		for i := range n {
			switch (g + i) % kinds {
			case 0:
				wantProgress++
				written[fmt.Sprint(g, "-", i)] = true
			case 2:
				wantFailures++
			}
		}
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range n {
				switch (g + i) % kinds {
				case 0:
					w.Progress(fmt.Sprint(g, "-", i))
				case 1:
					w.SetBacklog(int64(i))
				case 2:
					w.Fail(errors.New("x"))
				case 3:
					w.Succeed()
				case 4:
					w.Alert("a", time.Now().Add(time.Millisecond))
				case 5:
					_ = w.Status()
					_ = w.Snapshot().Position
				case 6:
					w.Park(fmt.Sprint("backoff ", g))
					_ = w.Snapshot()
				case 7:
					w.Unpark()
				}
			}
		})
	}
	wg.Wait()
	if got := w.Snapshot().ProgressTotal; got != wantProgress {
		t.Errorf("ProgressTotal = %d, want %d (one per Progress call)", got, wantProgress)
	}
	if got := w.Snapshot().FailuresTotal; got != wantFailures {
		t.Errorf("FailuresTotal = %d, want %d (one per Fail call)", got, wantFailures)
	}
	if got := w.Snapshot().Position; !written[got] {
		t.Errorf("Position = %q, not a text any Progress wrote", got)
	}
	if snap := w.Snapshot(); snap.Parked && !strings.HasPrefix(snap.ParkedReason, "backoff ") {
		t.Errorf("Parked  reason %q, not a reason any Park gave", snap.ParkedReason)
	}
}

// A parked loop is held by its supervisor: not ready with the reason, and
// live however long it goes without a heartbeat. Unpark restarts the
// liveness window.
func TestWatermarkPark(t *testing.T) {
	t.Parallel()
	p, err := NewProbes(ProbesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w, clk := newTestWatermark(t, "wallet") // liveness window 1m
	if err := p.AddLoop(w); err != nil {
		t.Fatal(err)
	}
	w.Progress("1-0")
	if snap := w.Snapshot(); snap.Parked {
		t.Fatal("a new watermark is parked")
	}
	w.Park("service in backoff")
	w.Fail(errors.New("boom"))    // updates do not unpark
	clk.Advance(10 * time.Minute) // far past the liveness window
	st := w.Status()
	if st.State != StateParked || st.Reason != "parked: service in backoff" || st.Ready() || !st.Live() {
		t.Fatalf("parked: %v %q ready %v live %v", st.State, st.Reason, st.Ready(), st.Live())
	}
	if snap := w.Snapshot(); !snap.Parked || snap.ParkedReason != "service in backoff" {
		t.Errorf("parked = %v, %q", snap.Parked, snap.ParkedReason)
	}
	if code, body := get(t, p, http.MethodGet, "/live?full=1"); code != http.StatusOK || body["loops/live"] != "OK" {
		t.Errorf("GET /live while parked = %d %v", code, body)
	}
	if code, body := get(t, p, http.MethodGet, "/ready?full=1"); code != http.StatusServiceUnavailable ||
		body["loop/wallet"] != "parked: service in backoff" {
		t.Errorf("GET /ready while parked = %d %v", code, body)
	}
	// Park again replaces the reason; an alert does not unpark.
	w.Park("service stopped: invalid stream name")
	w.Alert("legacy entries", clk.Now().Add(time.Hour))
	if st := w.Status(); st.Reason != "parked: service stopped: invalid stream name" {
		t.Errorf("re-parked: %q", st.Reason)
	}
	w.ClearAlert()

	// Unpark: the loop gets a whole liveness window from now, although its
	// last heartbeat is 10m old.
	w.Unpark()
	if snap := w.Snapshot(); snap.Parked {
		t.Error("still parked after Unpark")
	}
	if st := w.Status(); st.State == StateParked || !st.Live() {
		t.Errorf("just unparked: %v %q", st.State, st.Reason)
	}
	clk.Advance(time.Minute)
	if st := w.Status(); !st.Live() {
		t.Errorf("a liveness window after Unpark: %q", st.Reason)
	}
	clk.Advance(time.Second)
	if st := w.Status(); st.State != StateWedged || st.Reason != "wedged: no heartbeat since unparked 1m1s ago (liveness window 1m0s)" {
		t.Errorf("past the window after Unpark: %v %q", st.State, st.Reason)
	}
	w.Heartbeat()
	if st := w.Status(); !st.Live() {
		t.Errorf("after a heartbeat: %q", st.Reason)
	}

	// Unpark on a loop that is not parked changes nothing.
	fresh, fclk := newTestWatermark(t, "fresh")
	fclk.Advance(time.Minute)
	fresh.Unpark()
	fclk.Advance(time.Second)
	if st := fresh.Status(); st.State != StateWedged || st.Reason != "wedged: no heartbeat since start 1m1s ago (liveness window 1m0s)" {
		t.Errorf("Unpark of a loop never parked: %v %q", st.State, st.Reason)
	}
}
