package readiness

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is a manual clock for the rules.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 5, 15, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestWatermark returns a watermark on a fake clock with a 30s stall
// window, a 1m liveness window and a failure bound of 3.
func newTestWatermark(t testing.TB, name string) (*Watermark, *fakeClock) {
	t.Helper()
	clk := newClock()
	w, err := NewWatermark(WatermarkConfig{
		Name:           name,
		StallWindow:    30 * time.Second,
		LivenessWindow: time.Minute,
		FailureBound:   3,
		Now:            clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return w, clk
}
