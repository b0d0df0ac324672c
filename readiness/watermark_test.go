package readiness

import (
	"errors"
	"fmt"
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
	if _, ok := w.LastProgress(); ok {
		t.Error("LastProgress ok before any progress")
	}
	if _, ok := w.LastHeartbeat(); ok {
		t.Error("LastHeartbeat ok before any heartbeat")
	}
	if _, known := w.Backlog(); known {
		t.Error("backlog known on a new watermark")
	}
	if w.Position() != "" || w.LastError() != nil {
		t.Errorf("Position, LastError = %q, %v on a new watermark", w.Position(), w.LastError())
	}

	clk.Advance(time.Second)
	w.Progress("42")
	w.SetBacklog(9)
	clk.Advance(time.Second)
	w.Heartbeat()
	boom := errors.New("boom")
	w.Fail(boom)
	w.Fail(nil)

	if p, ok := w.LastProgress(); !ok || !p.Equal(start.Add(time.Second)) {
		t.Errorf("LastProgress = %v, %v", p, ok)
	}
	if h, ok := w.LastHeartbeat(); !ok || !h.Equal(start.Add(2*time.Second)) {
		t.Errorf("LastHeartbeat = %v, %v", h, ok)
	}
	if n, known := w.Backlog(); n != 9 || !known {
		t.Errorf("Backlog = %d, %v", n, known)
	}
	if w.Position() != "42" || w.ProgressTotal() != 1 {
		t.Errorf("Position, ProgressTotal = %q, %d", w.Position(), w.ProgressTotal())
	}
	if w.ConsecutiveFailures() != 2 || w.FailuresTotal() != 2 || !errors.Is(w.LastError(), boom) {
		t.Errorf("failures = %d, %d, %v", w.ConsecutiveFailures(), w.FailuresTotal(), w.LastError())
	}
	w.Progress("")
	if w.Position() != "42" || w.ConsecutiveFailures() != 0 || w.FailuresTotal() != 2 {
		t.Errorf("after Progress(\"\"): %q, %d, %d", w.Position(), w.ConsecutiveFailures(), w.FailuresTotal())
	}
	w.BacklogUnknown()
	if _, known := w.Backlog(); known {
		t.Error("backlog known after BacklogUnknown")
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
// -race.
func TestWatermarkConcurrent(t *testing.T) {
	t.Parallel()
	w, err := NewWatermark(WatermarkConfig{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	const n = 1000
	for g := range 4 {
		wg.Go(func() {
			for i := range n {
				switch (g + i) % 6 {
				case 0:
					w.Progress(fmt.Sprint(i))
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
					_ = w.Position()
				}
			}
		})
	}
	wg.Wait()
	if got := w.ProgressTotal(); got == 0 {
		t.Errorf("ProgressTotal = %d", got)
	}
}
