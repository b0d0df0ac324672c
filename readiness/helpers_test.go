package readiness

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/headwaylabs/headway/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is the shared manual clock.
type fakeClock = testkit.FakeClock

func newClock() *fakeClock { return testkit.NewClock() }

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
