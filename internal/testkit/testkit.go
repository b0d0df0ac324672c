// Package testkit holds small helpers shared by headway's tests: polling a
// condition with a deadline, a manual clock, and a buffer for logs written
// from many goroutines.
package testkit

import (
	"sync"
	"testing"
	"time"
)

// Eventually polls cond every 10ms until it holds, and fails the test when
// within passes first, naming what it waited for.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// EventuallyState is Eventually for a condition that describes what it
// saw: when within passes first, the failure shows cond's last
// description.
func EventuallyState(t testing.TB, within time.Duration, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", within, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FakeClock is a manual clock, safe for concurrent use. It starts at
// 2026-05-15 12:00 UTC.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a FakeClock at its start time.
func NewClock() *FakeClock {
	return &FakeClock{t: time.Date(2026, 5, 15, 12, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
