package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/readiness"
)

// failure ends a measured run early: it is set once, by a handler whose
// work failed permanently or by a Serve that returned before it was
// stopped.
type failure struct {
	once sync.Once
	err  error
	ch   chan struct{}
}

func newFailure() *failure { return &failure{ch: make(chan struct{})} }

func (f *failure) set(err error) {
	f.once.Do(func() { f.err = err; close(f.ch) })
}

// service is a Serve running on its own goroutine.
type service struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// goServe runs serve until stop; if it returns before, f is set.
func goServe(ctx context.Context, f *failure, serve func(context.Context) error) *service {
	ctx, cancel := context.WithCancel(ctx)
	s := &service{cancel: cancel, done: make(chan struct{})}
	go func() {
		s.err = serve(ctx)
		if ctx.Err() == nil {
			f.set(fmt.Errorf("stopped by itself: %v", s.err))
		}
		close(s.done)
	}()
	return s
}

// stop cancels Serve and waits for it; it returns Serve's error unless
// that is the cancellation.
func (s *service) stop() error {
	s.cancel()
	<-s.done
	if errors.Is(s.err, context.Canceled) {
		return nil
	}
	return s.err
}

// counter counts handled events and says when there are want of them.
type counter struct {
	*failure
	want     int64
	n        atomic.Int64
	once     sync.Once
	finished chan struct{}
}

func newCounter(want int64) *counter {
	return &counter{failure: newFailure(), want: want, finished: make(chan struct{})}
}

func (c *counter) add(d int64) {
	if c.n.Add(d) >= c.want {
		c.once.Do(func() { close(c.finished) })
	}
}

// handler runs work (nil: nothing) and counts the event; a permanent
// error of work fails the run.
func (c *counter) handler(work consumer.Handler) consumer.Handler {
	return func(ctx context.Context, m *consumer.Message) error {
		if work != nil {
			if err := work(ctx, m); err != nil {
				if errors.Is(err, consumer.ErrPermanent) {
					c.set(err)
				}
				return err
			}
		}
		c.add(1)
		return nil
	}
}

// batchHandler runs work and counts the messages it applied; a permanent
// error fails the run.
func (c *counter) batchHandler(work consumer.BatchHandler) consumer.BatchHandler {
	return func(ctx context.Context, ms []*consumer.Message, errs []error) error {
		if err := work(ctx, ms, errs); err != nil {
			if errors.Is(err, consumer.ErrPermanent) {
				c.set(err)
			}
			return err
		}
		n := int64(0)
		for _, err := range errs {
			if err == nil {
				n++
			}
		}
		c.add(n)
		return nil
	}
}

// awaitDrained returns when cnt has counted all its events and every
// watermark's position (the newest acknowledged entry, in memory) is its
// stream's last entry: all handled and acknowledged. Nothing polls Redis.
func awaitDrained(ctx context.Context, cnt *counter, wms []*readiness.Watermark, lasts []string) error {
	limit := drainTimeout(int(cnt.want))
	timeout := time.NewTimer(limit)
	defer timeout.Stop()
	select {
	case <-cnt.finished:
	case <-cnt.ch:
		return fmt.Errorf("after %d of %d events: %w", cnt.n.Load(), cnt.want, cnt.err)
	case <-timeout.C:
		return fmt.Errorf("%d of %d events in %s", cnt.n.Load(), cnt.want, limit)
	case <-ctx.Done():
		return ctx.Err()
	}
	for i, wm := range wms {
		if err := awaitPosition(ctx, timeout.C, limit, cnt.failure, wm, lasts[i]); err != nil {
			return err
		}
	}
	return nil
}

// awaitPosition returns when wm's position is want.
func awaitPosition(ctx context.Context, timeout <-chan time.Time, limit time.Duration, f *failure, wm *readiness.Watermark, want string) error {
	for wm.Snapshot().Position != want {
		select {
		case <-f.ch:
			return fmt.Errorf("%s at %q before %q: %w", wm.Name(), wm.Snapshot().Position, want, f.err)
		case <-timeout:
			return fmt.Errorf("%s: at %q, not %q, after %s", wm.Name(), wm.Snapshot().Position, want, limit)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Microsecond):
		}
	}
	return nil
}
