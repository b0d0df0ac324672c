package consumer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

type ctxKey string

// The attempt context must be indistinguishable from
// context.WithDeadline(parent, deadline) cancelled when the attempt returns.
func TestAttemptContextQuiet(t *testing.T) {
	t.Parallel()
	parent := context.WithValue(context.Background(), ctxKey("k"), "v")
	deadline := time.Now().Add(time.Hour)
	a := newAttemptContext(parent, deadline)
	if d, ok := a.Deadline(); !ok || !d.Equal(deadline) {
		t.Fatalf("Deadline() = %v, %v; want %v, true", d, ok, deadline)
	}
	if a.Value(ctxKey("k")) != "v" || a.Err() != nil || context.Cause(a) != nil {
		t.Fatalf("running attempt: value %v, err %v, cause %v", a.Value(ctxKey("k")), a.Err(), context.Cause(a))
	}
	a.end(time.Now())
	if !errors.Is(a.Err(), context.Canceled) || !errors.Is(context.Cause(a), context.Canceled) {
		t.Fatalf("after the attempt: err %v, cause %v; want Canceled", a.Err(), context.Cause(a))
	}
	select {
	case <-a.Done():
	default:
		t.Fatal("Done not closed after the attempt")
	}
}

func TestAttemptContextDeadline(t *testing.T) {
	t.Parallel()
	a := newAttemptContext(context.Background(), time.Now().Add(30*time.Millisecond))
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed at the deadline")
	}
	if !errors.Is(a.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(a), context.DeadlineExceeded) {
		t.Fatalf("err %v, cause %v; want DeadlineExceeded", a.Err(), context.Cause(a))
	}
	a.end(time.Now())
	if !errors.Is(a.Err(), context.DeadlineExceeded) {
		t.Fatalf("end changed the error to %v", a.Err())
	}
}

// A handler that overran without looking at its context still finds
// DeadlineExceeded in it afterwards (and so does Err during the overrun).
func TestAttemptContextOverrun(t *testing.T) {
	t.Parallel()
	deadline := time.Now().Add(10 * time.Millisecond)
	a := newAttemptContext(context.Background(), deadline)
	time.Sleep(time.Until(deadline) + time.Millisecond)
	b := newAttemptContext(context.Background(), deadline)
	if !errors.Is(b.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err after the deadline: %v", b.Err())
	}
	a.end(time.Now())
	if !errors.Is(a.Err(), context.DeadlineExceeded) {
		t.Fatalf("after an overrun: %v, want DeadlineExceeded", a.Err())
	}
}

func TestAttemptContextParent(t *testing.T) {
	t.Parallel()
	parent, cancel := context.WithCancel(context.Background())
	a := newAttemptContext(parent, time.Now().Add(time.Hour))
	if a.Err() != nil {
		t.Fatal(a.Err())
	}
	cancel()
	if !errors.Is(a.Err(), context.Canceled) {
		t.Fatalf("parent cancelled: %v", a.Err())
	}
	<-a.Done()

	// An earlier parent deadline wins.
	early := time.Now().Add(time.Minute)
	p2, cancel2 := context.WithDeadline(context.Background(), early)
	defer cancel2()
	if d, _ := newAttemptContext(p2, time.Now().Add(time.Hour)).Deadline(); !d.Equal(early) {
		t.Fatalf("Deadline() = %v, want the parent's %v", d, early)
	}
}

// Contexts derived from the attempt's, and context.AfterFunc on it, end
// with the attempt, whether they were made before or after it ended.
func TestAttemptContextDerived(t *testing.T) {
	t.Parallel()
	a := newAttemptContext(context.Background(), time.Now().Add(time.Hour))
	child, cancelChild := context.WithCancel(a)
	defer cancelChild()
	timed, cancelTimed := context.WithTimeout(context.WithValue(a, ctxKey("x"), 1), time.Hour)
	defer cancelTimed()
	ran := make(chan struct{})
	context.AfterFunc(a, func() { close(ran) })
	if child.Err() != nil || timed.Err() != nil {
		t.Fatal("derived contexts done before the attempt ended")
	}
	a.end(time.Now())
	for _, c := range []context.Context{child, timed} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a derived context did not end with the attempt")
		}
		if !errors.Is(c.Err(), context.Canceled) {
			t.Fatalf("derived context ended with %v", c.Err())
		}
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc did not run when the attempt ended")
	}
	late, cancelLate := context.WithCancel(a)
	defer cancelLate()
	if !errors.Is(late.Err(), context.Canceled) {
		t.Fatalf("context derived after the attempt: %v", late.Err())
	}
}

// A context kept by goroutines the handler started is safe to use from
// them while the attempt ends (run with -race).
func TestAttemptContextConcurrent(t *testing.T) {
	t.Parallel()
	for range 50 {
		a := newAttemptContext(context.Background(), time.Now().Add(time.Hour))
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				switch i {
				case 0:
					<-a.Done()
				case 1:
					for a.Err() == nil {
						time.Sleep(time.Microsecond)
					}
				case 2:
					c, cancel := context.WithCancel(a)
					<-c.Done()
					cancel()
				default:
					_ = a.Value(ctxKey("k"))
					_, _ = a.Deadline()
				}
			})
		}
		a.end(time.Now())
		wg.Wait()
		if !errors.Is(a.Err(), context.Canceled) {
			t.Fatal(a.Err())
		}
	}
}

// An attempt whose handler does not wait on its context costs one
// allocation.
func TestAttemptContextAllocations(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	allocs := testing.AllocsPerRun(1000, func() {
		now := time.Now()
		a := newAttemptContext(parent, now.Add(time.Minute))
		_ = a.Err()
		_, _ = a.Deadline()
		a.end(now)
	})
	if allocs > 1 {
		t.Fatalf("%v allocations per quiet attempt, want 1", allocs)
	}
}
