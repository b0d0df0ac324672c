package consumer

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// attemptContext is the context of one handler attempt. It behaves as
// context.WithDeadline(parent, deadline), cancelled when the attempt
// returns, but it builds that context — a timer, a registration with the
// parent and four allocations — only when something needs it: Done (so
// also a context derived from it, or context.AfterFunc), an Err that has
// an error to report, context.Cause, or a value of the context package's
// own. A handler that only reads its deadline and values, or ignores its
// context, costs one allocation per attempt — and first attempts take
// theirs from one slab per batch (runLanes).
//
// Every attempt gets a new one, so a handler may keep its context or
// derive from it: it never changes under it. (A context shared by a lane
// and re-armed per attempt was cheaper still and broke exactly that.)
type attemptContext struct {
	parent   context.Context
	deadline time.Time
	span     trace.Span // the entry's process span, or nil (tracing.go)

	mu     sync.Mutex
	ctx    context.Context // the standard context, once built
	cancel context.CancelFunc
	ended  bool // the attempt returned
}

var _ context.Context = (*attemptContext)(nil)

func newAttemptContext(parent context.Context, deadline time.Time) *attemptContext {
	a := new(attemptContext)
	a.init(parent, deadline)
	return a
}

// init readies a zero attemptContext, one never used before.
func (a *attemptContext) init(parent context.Context, deadline time.Time) {
	a.parent, a.deadline = parent, deadline
}

// Deadline returns the attempt's deadline, or the parent's when earlier.
func (a *attemptContext) Deadline() (time.Time, bool) {
	if d, ok := a.parent.Deadline(); ok && d.Before(a.deadline) {
		return d, true
	}
	return a.deadline, true
}

// Done builds the standard context and returns its channel.
func (a *attemptContext) Done() <-chan struct{} { return a.built().Done() }

// Err returns nil while the attempt runs, its deadline has not passed and
// the parent is not done, without building anything; otherwise it builds
// the standard context, which reports the error.
func (a *attemptContext) Err() error {
	a.mu.Lock()
	ctx, ended := a.ctx, a.ended
	a.mu.Unlock()
	if ctx != nil {
		return ctx.Err()
	}
	if !ended && a.parent.Err() == nil && time.Now().Before(a.deadline) {
		return nil
	}
	return a.built().Err()
}

// Value answers from the parent; the context package's own keys (pointers
// to unexported ints, used by context.Cause and to link derived contexts)
// are answered by the standard context.
func (a *attemptContext) Value(key any) any {
	if _, internal := key.(*int); internal {
		return a.built().Value(key)
	}
	if a.span != nil && spanKeyProbe.Value(key) != nil {
		return a.span
	}
	return a.parent.Value(key)
}

func (a *attemptContext) String() string { return "consumer handler attempt context" }

// built returns the standard context, building it on first use: with the
// attempt's deadline while it runs, cancelled once it returned.
func (a *attemptContext) built() context.Context {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx == nil {
		if a.ended {
			a.ctx, a.cancel = context.WithCancel(a.parent)
			a.cancel()
		} else {
			a.ctx, a.cancel = context.WithDeadline(a.parent, a.deadline)
		}
	}
	return a.ctx
}

// end cancels the context when the attempt returns at now. An attempt that
// overran its deadline without looking at its context keeps
// DeadlineExceeded as its error, as the standard context would.
func (a *attemptContext) end(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx == nil && !now.Before(a.deadline) {
		a.ctx, a.cancel = context.WithDeadline(a.parent, a.deadline)
	}
	a.ended = true
	if a.cancel != nil {
		a.cancel()
	}
}
