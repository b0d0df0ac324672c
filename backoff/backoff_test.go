package backoff

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	e := Exponential{Initial: 10 * time.Millisecond, Max: 35 * time.Millisecond}
	for failures, want := range map[int]time.Duration{-1: 0, 0: 0, 1: 10, 2: 20, 3: 35, 4: 35, 100: 35, math.MaxInt: 35} {
		if want > 0 {
			want *= time.Millisecond
		}
		if got := e.Delay(failures); got != want {
			t.Errorf("Delay(%d) = %v, want %v", failures, got, want)
		}
	}
	// Doubling a large Initial must not overflow past Max.
	big := Exponential{Initial: time.Duration(math.MaxInt64 / 3), Max: time.Duration(math.MaxInt64)}
	for failures := 1; failures < 70; failures++ {
		if got := big.Delay(failures); got < big.Initial {
			t.Fatalf("Delay(%d) = %v: overflowed", failures, got)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, e := range []Exponential{{}, {Initial: time.Second, Max: time.Second}, {Max: time.Minute}} {
		if err := e.Validate(); err != nil {
			t.Errorf("%+v: %v", e, err)
		}
	}
	for _, e := range []Exponential{{Initial: -1}, {Initial: time.Minute, Max: time.Second}} {
		if err := e.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", e, err)
		}
	}
}
