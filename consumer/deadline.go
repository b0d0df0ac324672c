package consumer

import (
	"context"
	"sync"
	"time"
)

// laneClock gives the handler attempts of one lane their HandlerTimeout
// without a new context and timer per attempt (those allocations were a
// large share of the consumer's garbage): the lane shares one cancellable
// context and one timer, re-armed for each attempt, and each attempt sees it
// through an attemptCtx that reports its own deadline. When an attempt
// overruns, the shared context is cancelled with cause
// context.DeadlineExceeded and the next attempt gets a fresh one.
type laneClock struct {
	parent  context.Context
	timeout time.Duration

	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelCauseFunc
	started time.Time // start of the running attempt; zero between attempts
	timer   *time.Timer
}

func newLaneClock(parent context.Context, timeout time.Duration) *laneClock {
	l := &laneClock{parent: parent, timeout: timeout}
	l.ctx, l.cancel = context.WithCancelCause(parent)
	l.timer = time.AfterFunc(time.Hour, l.fire)
	l.timer.Stop()
	return l
}

// begin arms the clock for an attempt starting now and fills a with its
// context.
func (l *laneClock) begin(a *attemptCtx, now time.Time) {
	l.mu.Lock()
	if l.ctx.Err() != nil && l.parent.Err() == nil {
		l.ctx, l.cancel = context.WithCancelCause(l.parent)
	}
	l.started = now
	l.timer.Reset(l.timeout)
	*a = attemptCtx{Context: l.ctx, deadline: now.Add(l.timeout)}
	l.mu.Unlock()
}

// end disarms the clock after an attempt.
func (l *laneClock) end() {
	l.mu.Lock()
	l.started = time.Time{}
	l.timer.Stop()
	l.mu.Unlock()
}

// fire cancels the running attempt if it has overrun; a late fire meant
// for an earlier attempt finds a newer start and does nothing.
func (l *laneClock) fire() {
	l.mu.Lock()
	if !l.started.IsZero() && time.Since(l.started) >= l.timeout {
		l.cancel(context.DeadlineExceeded)
	}
	l.mu.Unlock()
}

// close releases the timer and the context.
func (l *laneClock) close() {
	l.timer.Stop()
	l.mu.Lock()
	l.cancel(context.Canceled)
	l.mu.Unlock()
}

// attemptCtx is the context of one handler attempt: the lane's context
// with the attempt's own deadline. Err reports DeadlineExceeded when the
// attempt overran, like a context.WithTimeout would.
type attemptCtx struct {
	context.Context
	deadline time.Time
}

func (a *attemptCtx) Deadline() (time.Time, bool) { return a.deadline, true }

func (a *attemptCtx) Err() error {
	err := a.Context.Err()
	if err != nil && context.Cause(a.Context) == context.DeadlineExceeded {
		return context.DeadlineExceeded
	}
	return err
}
