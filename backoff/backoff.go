// Package backoff is headway's one retry schedule: an exponential delay
// from Initial, doubling after each failure, at most Max. The consumer's
// in-process retries (consumer.RetryPolicy), its backoff after failed
// reads and the outbox relay's retries of a row whose append failed
// (outbox.RelayConfig.Retry) all use it.
package backoff

import (
	"errors"
	"fmt"
	"time"
)

// Exponential waits Initial after the first failure, twice as long after
// each further one, and never longer than Max. The zero value waits 0.
type Exponential struct {
	Initial, Max time.Duration
}

// Delay returns the wait after failures failures in a row (1 for the
// first): Initial × 2^(failures−1), at most Max; 0 for failures < 1. The
// doubling stops at Max, so it never overflows.
func (e Exponential) Delay(failures int) time.Duration {
	if failures < 1 {
		return 0
	}
	d := e.Initial
	for i := 1; i < failures && d < e.Max; i++ {
		if d > e.Max/2 {
			return e.Max
		}
		d *= 2
	}
	return min(d, e.Max)
}

// ErrInvalid: a schedule with a negative duration, or Max below Initial.
var ErrInvalid = errors.New("backoff: invalid schedule")

// Validate reports a negative Initial or Max, or a Max below Initial.
func (e Exponential) Validate() error {
	if e.Initial < 0 || e.Max < e.Initial {
		return fmt.Errorf("%w: Initial %v, Max %v (want 0 ≤ Initial ≤ Max)", ErrInvalid, e.Initial, e.Max)
	}
	return nil
}
