package consumer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/dedup"
)

// One job: a handler run to an outcome, with in-process retries, each
// attempt bounded by HandlerTimeout (and, with the PostgreSQL inbox, in a
// transaction of its own).

// runJob runs one job to an outcome, its first attempt under actx. start,
// when not zero, is the time the first attempt starts. It returns when the
// job's handler returned if nothing else ran after it, else the zero time.
func (c *Consumer) runJob(ctx, hctx context.Context, it *item, actx *attemptContext, start time.Time) time.Time {
	c.prepareMessage(it)
	end, o, err := c.attempts(ctx, hctx, it, &it.m, 1, actx, start)
	return c.finishJob(ctx, it, end, o, err)
}

// prepareMessage fills in the Message the handler gets, besides the
// envelope decoded before.
func (c *Consumer) prepareMessage(it *item) {
	it.m.ID, it.m.Stream, it.m.Group, it.m.Consumer = it.msg.ID, c.cfg.Stream, c.cfg.Group, c.cfg.Consumer
	it.m.Deliveries, it.m.guard = it.deliveries, c.guard
}

// finishJob sets the job's outcome from its last attempt's: the dedup
// store's outcome o when it ran no handler (Duplicate, Busy), else the
// handler's (or the store's) err. It returns end when the job succeeded.
func (c *Consumer) finishJob(ctx context.Context, it *item, end time.Time, o dedup.Outcome, err error) time.Time {
	switch o {
	case dedup.Duplicate:
		it.ack, it.outcome = true, OutcomeDuplicate
		return time.Time{}
	case dedup.Busy:
		it.outcome = OutcomeDeferred
		return time.Time{}
	}
	if err == nil {
		it.ack, it.outcome = true, OutcomeApplied
		return end
	}
	it.err = err
	opCtx := context.WithoutCancel(ctx)
	// A failure of the handler (or of the store around it), not of the
	// entry's envelope and not the drain: it counts against the loop.
	it.failed = ctx.Err() == nil && !errors.Is(err, brandguard.ErrBrandMismatch)
	switch {
	case ctx.Err() != nil:
		// Draining: whatever the handler says, leave it for redelivery.
		it.outcome = OutcomeRetryLater
	case errors.Is(err, brandguard.ErrBrandMismatch):
		c.deadLetter(opCtx, it, string(brandguard.ReasonBrandMismatch), err)
	case errors.Is(err, ErrPermanent):
		c.deadLetter(opCtx, it, ReasonHandlerPermanent, err)
	case errors.Is(err, dedup.ErrStore):
		it.outcome = OutcomeRetryLater
	case it.deliveries >= c.cfg.MaxDeliveries:
		it.spent = true
		c.deadLetter(opCtx, it, ReasonMaxDeliveries, err)
	default:
		it.spent = true
		it.outcome = OutcomeRetryLater
	}
	if it.outcome == OutcomeRetryLater {
		c.log.Warn("handler failed: entry left pending for redelivery",
			slog.String(AttrEntryID, it.msg.ID), slog.String(AttrEventID, it.m.Envelope.EventID),
			slog.String(AttrEventType, string(it.m.Envelope.EventType)), slog.Int64(AttrDeliveries, it.deliveries),
			slog.String(AttrError, err.Error()))
	}
	return time.Time{}
}

// attempts runs the handler with the in-process retry policy, each attempt
// under its own context that ends at HandlerTimeout and when the attempt
// returns (an attemptContext: context.WithTimeout(parent, HandlerTimeout)
// built only when the handler needs it). The first attempt runs under
// first, zero and never used before, and starts at start (now when zero).
// It returns when the last attempt ended, or the zero time when a store
// ran after it. It stops retrying when the consumer is shutting down.
//
// With a dedup store that is not a Batcher (the PostgreSQL inbox), every
// attempt is a Process call of its own — its own transaction — so a failed
// attempt's writes roll back before the next attempt starts from a clean
// transaction (ADR-014). The outcome is then the store's Duplicate or Busy
// when it ran no handler; 0 otherwise.
func (c *Consumer) attempts(ctx, parent context.Context, it *item, m *Message, from int, first *attemptContext, start time.Time) (time.Time, dedup.Outcome, error) {
	inbox := c.store != nil && c.batcher == nil
	for attempt := from; ; attempt++ {
		m.Attempt = attempt
		actx := first
		if attempt > from {
			actx, start = new(attemptContext), time.Time{}
		}
		var took time.Duration
		var end time.Time
		var err error
		if inbox {
			var o dedup.Outcome
			o, took, err = c.inboxAttempt(parent, it, m, actx)
			if o == dedup.Duplicate || o == dedup.Busy {
				return time.Time{}, o, nil
			}
			if err == nil {
				it.took, it.timed = took, true
				return time.Time{}, 0, nil
			}
			if o != dedup.Failed || errors.Is(err, dedup.ErrStore) {
				// The store failed (before the handler, or at its
				// commit): leave the entry for redelivery.
				if o == dedup.Failed {
					c.series.observe(it.m.Envelope.EventType).Observe(took.Seconds())
				}
				return time.Time{}, 0, err
			}
		} else {
			if start.IsZero() {
				start = time.Now()
			}
			actx.init(parent, start.Add(c.cfg.HandlerTimeout))
			actx.span = it.span
			err = it.handler(actx, m)
			// Reading only the monotonic clock costs half of time.Now.
			took = time.Since(start)
			end = start.Add(took)
			actx.end(end)
			if err == nil {
				it.took, it.timed = took, true // observed when the lanes are done
				return end, 0, nil
			}
		}
		c.series.observe(it.m.Envelope.EventType).Observe(took.Seconds())
		if !c.retry(ctx, parent, attempt, err) {
			return end, 0, err
		}
	}
}

// retry reports whether a job whose attempt-th attempt failed with err is
// tried again, after the policy's backoff (which it waits for).
func (c *Consumer) retry(ctx, parent context.Context, attempt int, err error) bool {
	if attempt >= c.cfg.Retry.Attempts || errors.Is(err, ErrPermanent) ||
		errors.Is(err, brandguard.ErrBrandMismatch) || ctx.Err() != nil || parent.Err() != nil {
		return false
	}
	c.series.retries.Inc()
	sleep(ctx, c.cfg.Retry.Backoff.Delay(attempt))
	return true
}

// inboxAttempt runs one handler attempt in a Process call of the (not
// batch) dedup store, under actx, and returns the store's outcome, how long
// the handler took and its error (or the store's). The call is bounded:
// HandlerTimeout for the handler and opTimeout for the store around it.
func (c *Consumer) inboxAttempt(parent context.Context, it *item, m *Message, actx *attemptContext) (dedup.Outcome, time.Duration, error) {
	pctx, cancel := context.WithTimeout(parent, c.cfg.HandlerTimeout+opTimeout)
	defer cancel()
	var took time.Duration
	used := false
	o, err := c.store.Process(pctx, dedup.Key{Scope: c.cfg.Group, EventID: it.m.Envelope.EventID},
		func(tctx context.Context) error {
			a := actx
			if used { // a store that calls fn again gets a new context
				a = new(attemptContext)
			}
			used = true
			start := time.Now()
			a.init(tctx, start.Add(c.cfg.HandlerTimeout))
			a.span = it.span
			err := it.handler(a, m)
			took = time.Since(start)
			a.end(start.Add(took))
			return err
		})
	return o, took, err
}

// handlerContext returns the context handlers run under: it survives the
// cancellation of ctx by DrainTimeout, so work in flight can finish.
func (c *Consumer) handlerContext(ctx context.Context) (context.Context, context.CancelFunc) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.DrainTimeout, cancel) })
	return hctx, func() { stop(); cancel() }
}
