package consumer

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/event"
)

// Message is one decoded, accepted entry handed to a [Handler].
type Message struct {
	// ID is the stream entry ID.
	ID string
	// Stream, Group and Consumer say where it was read.
	Stream, Group, Consumer string
	// Envelope is the decoded event.
	Envelope event.Envelope
	// Deliveries is how many times Redis has delivered the entry, this
	// delivery included (1 on first delivery; reclaims raise it too).
	Deliveries int64
	// Attempt counts in-process attempts of this delivery, from 1.
	Attempt int

	guard *brandguard.Scope
}

// CheckTarget runs brandguard's target check for this event: target is the
// brand of the entity the handler is about to change. It returns the brand
// to use, or in enforce mode an error matching brandguard.ErrBrandMismatch;
// return that error from the handler and the entry is dead-lettered with
// reason brand_mismatch.
func (m *Message) CheckTarget(ctx context.Context, target event.BrandID) (event.BrandID, error) {
	return m.guard.CheckTarget(ctx, m.Envelope, target)
}

// Handler applies one event. The Message is valid until the handler
// returns (its memory is reused for the next batch): copy what must outlive
// the call. Returning nil acknowledges it. An error is
// retried in process (Config.Retry), then left pending for redelivery, and
// dead-lettered when it fails on the Config.MaxDeliveries-th delivery
// (deliveries on which no handler ran to a verdict are not counted); an
// error wrapping [ErrPermanent] or brandguard.ErrBrandMismatch is
// dead-lettered at once. Handlers must honour ctx: it ends at
// Config.HandlerTimeout and at the drain deadline.
type Handler func(ctx context.Context, m *Message) error

// BatchHandler applies a run of accepted messages of one event type
// together, set-based, through the PostgreSQL inbox transaction that
// dedup.Tx(ctx) returns: one multi-row INSERT, a COPY, an UPDATE … FROM
// (VALUES …). ms holds the messages in stream order (one aggregate's in
// the order they were published). It sets errs[i] to the error of ms[i]
// when that message cannot be applied and returns nil; an error it
// returns is the error of every message. The call is then undone and made
// again without the failed messages (and without the later messages of
// their aggregates), so a failed message's writes never commit whatever
// the statement wrote for it. len(errs) == len(ms). The messages are
// valid until it returns.
//
// The failed messages are retried, dead-lettered and counted as a
// Handler's errors are: their retries call the BatchHandler with that one
// message, each in a transaction of its own. One statement for many rows
// of the same target needs care: an UPDATE … FROM joins each target row
// with one source row only, so sum per target first (GROUP BY).
type BatchHandler func(ctx context.Context, ms []*Message, errs []error) error

// oneByOne is h as a Handler: h called with m alone.
func oneByOne(h BatchHandler) Handler {
	return func(ctx context.Context, m *Message) error {
		errs := []error{nil}
		if err := h(ctx, []*Message{m}, errs); err != nil {
			return err
		}
		return errs[0]
	}
}

// recoverBatch turns a batch handler's panic into an error wrapping
// ErrHandlerPanic, the error of every message of the call.
func recoverBatch(next BatchHandler) BatchHandler {
	return func(ctx context.Context, ms []*Message, errs []error) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: %v\n%s", ErrHandlerPanic, r, debug.Stack())
			}
		}()
		return next(ctx, ms, errs)
	}
}

// Middleware wraps a Handler; Config.Middleware is applied around every
// handler, the first element outermost, and around the one-message calls
// of a BatchHandler (its retries), not around its calls for many.
type Middleware func(Handler) Handler

// chain wraps h in mws, mws[0] outermost.
func chain(h Handler, mws []Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// recoverer turns a handler panic into an error wrapping ErrHandlerPanic,
// with the stack in the message for the log (it never reaches a metric
// label).
func recoverer(next Handler) Handler {
	return func(ctx context.Context, m *Message) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: %v\n%s", ErrHandlerPanic, r, debug.Stack())
			}
		}()
		return next(ctx, m)
	}
}
