package consumer

import (
	"testing"
	"time"
)

func TestRetryDelay(t *testing.T) {
	p := RetryPolicy{Attempts: 5, Initial: 10 * time.Millisecond, Max: 35 * time.Millisecond}
	for i, want := range []time.Duration{10, 20, 35, 35} {
		if got := p.delay(i + 1); got != want*time.Millisecond {
			t.Errorf("delay(%d) = %v, want %v", i+1, got, want*time.Millisecond)
		}
	}
}
