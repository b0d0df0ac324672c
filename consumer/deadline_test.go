package consumer

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLaneClockCancelsOnlyTheOverrunningAttempt(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	l := newLaneClock(parent, 50*time.Millisecond)
	defer l.close()

	var a attemptCtx
	start := time.Now()
	l.begin(&a, start)
	if d, ok := a.Deadline(); !ok || !d.Equal(start.Add(50*time.Millisecond)) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	select {
	case <-a.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("an overrunning attempt was not cancelled")
	}
	if !errors.Is(a.Err(), context.DeadlineExceeded) || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("err %v after %v; want DeadlineExceeded after the timeout", a.Err(), time.Since(start))
	}
	// A child context sees the cancellation and the deadline.
	l.end()

	var b attemptCtx
	l.begin(&b, time.Now())
	if b.Err() != nil {
		t.Fatalf("the next attempt starts cancelled: %v", b.Err())
	}
	child, cancel := context.WithTimeout(&b, time.Hour)
	defer cancel()
	if d, _ := child.Deadline(); d.After(time.Now().Add(time.Second)) {
		t.Fatalf("a child's deadline ignores the attempt's: %v", d)
	}
	l.end() // finished in time
	time.Sleep(80 * time.Millisecond)
	if b.Err() != nil {
		t.Fatalf("an attempt that ended in time was cancelled later: %v", b.Err())
	}

	var c attemptCtx
	l.begin(&c, time.Now())
	cancelParent()
	select {
	case <-c.Done():
	case <-time.After(time.Second):
		t.Fatal("cancelling the parent did not reach the attempt")
	}
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("err %v, want Canceled", c.Err())
	}
	l.end()
}

func TestAttemptTimeoutInConsumerHandler(t *testing.T) {
	// The handler-level behaviour is covered by TestGracefulDrain and the
	// integration tests; here only the clock's arithmetic for retries.
	p := RetryPolicy{Attempts: 5, Initial: 10 * time.Millisecond, Max: 35 * time.Millisecond}
	for i, want := range []time.Duration{10, 20, 35, 35} {
		if got := p.delay(i + 1); got != want*time.Millisecond {
			t.Errorf("delay(%d) = %v, want %v", i+1, got, want*time.Millisecond)
		}
	}
}
