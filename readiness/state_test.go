package readiness

import (
	"testing"
	"time"
)

// TestHuman checks the allocation-free duration format against
// time.Duration.String on rounded values.
func TestHuman(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{
		-time.Second, 0, 400 * time.Microsecond, 600 * time.Microsecond, 250 * time.Millisecond,
		999*time.Millisecond + 600*time.Microsecond, time.Second, 45 * time.Second,
		time.Minute, 61 * time.Second, time.Hour, time.Hour + 20*time.Second, 100*time.Hour + 59*time.Minute + 59*time.Second,
		1499 * time.Millisecond, 1500 * time.Millisecond,
	} {
		want := d
		switch {
		case d < 0:
			want = 0
		case d.Round(time.Millisecond) < time.Second:
			want = d.Round(time.Millisecond)
		default:
			want = d.Round(time.Second)
		}
		if got := human(d); got != want.String() {
			t.Errorf("human(%v) = %q, want %q", d, got, want.String())
		}
	}
}
