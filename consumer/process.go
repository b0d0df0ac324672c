package consumer

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/event"
)

// opTimeout bounds the acknowledgements and dead-letter writes of a batch;
// they run on a context that outlives cancellation so a drain can finish.
const opTimeout = 5 * time.Second

// item is one entry of a batch on its way through the pipeline.
type item struct {
	msg        redis.XMessage
	deliveries int64
	handler    Handler
	set        BatchHandler // the type's, when it has one: the lane runs it for a run of entries
	claimed    bool         // holds a dedup lease taken by Claim
	ack        bool         // acknowledge in the batch XACK
	resolved   bool         // left the stream's pending list (acked or dead-lettered)
	outcome    string       // one of the Outcome constants
	err        error
	// rejectReason is brandguard's reason for an entry to dead-letter.
	rejectReason string
	lane         int           // the lane it runs on (runLanes)
	notOurs      bool          // pending for another consumer now: holds nothing here
	failed       bool          // its handler (or its dedup store) failed on it: err says why
	spent        bool          // its handler failed on this delivery: it counts toward MaxDeliveries
	took         time.Duration // the successful attempt's duration, when timed
	timed        bool
	m            Message    // handed to the handler, with the envelope; part of the item to save an allocation
	span         trace.Span // its process span while the batch runs, with a TracerProvider
}

// batch is a read batch on its way through the pipeline: prepared (decoded,
// judged, claimed in dedup) while the previous batch still runs, then run.
// A batch is a reused buffer: prepare fills it, run empties it.
type batch struct {
	msgs      []redis.XMessage // held in c.fresh until the batch has run
	items     []item
	jobs      []*item // accepted entries with a handler
	rejected  []*item // to dead-letter, with reject set
	reclaimed bool
	abandon   bool // shutting down before it started: run no handler

	// Scratch space of run, kept with the buffer.
	runnable []*item  // jobs to run now
	lanes    []*item  // runnable, grouped by lane
	ids      []string // entry IDs to acknowledge
}

// processBatch takes a batch through the whole pipeline at once, in buf.
func (c *Consumer) processBatch(ctx context.Context, buf *batch, msgs []redis.XMessage, deliveries []int64, reclaimed bool) {
	c.fresh.hold(msgs)
	c.run(ctx, c.prepare(ctx, buf, msgs, deliveries, reclaimed), nil, nil)
}

// prepare decodes and judges every entry and claims the accepted ones in a
// batch dedup store, in buf, which it returns. It acknowledges and
// dispatches nothing, so it can run while the previous batch runs; the
// caller has put msgs in c.fresh and owns buf until the batch has run.
func (c *Consumer) prepare(ctx context.Context, buf *batch, msgs []redis.XMessage, deliveries []int64, reclaimed bool) *batch {
	b := buf
	if cap(b.items) < len(msgs) {
		b.items = make([]item, len(msgs))
	}
	b.msgs, b.items, b.jobs, b.rejected = msgs, b.items[:len(msgs)], b.jobs[:0], b.rejected[:0]
	b.reclaimed, b.abandon = reclaimed, false
	// The handler of the last type looked up: a batch is mostly of a few
	// types, and comparing the name is cheaper than hashing it.
	var lastType event.Type
	var lastHandler Handler
	var lastSet BatchHandler
	lastOK := false
	for i := range msgs {
		it := &b.items[i]
		it.msg = msgs[i]
		it.deliveries = 1
		if deliveries != nil {
			it.deliveries = deliveries[i]
		}
		if it.msg.Values == nil {
			// Trimmed from the stream while pending: nothing to apply.
			// Counted once it has left the pending list (countLost).
			it.ack, it.outcome = true, OutcomeLostToTrim
			continue
		}
		env, v := c.guard.Decode(it.msg.Values)
		it.m.Envelope = env
		if v.Reason == brandguard.ReasonTooLarge {
			// Hold (and dead-letter) a bounded copy, not the entry.
			it.msg.Values = boundedFields(it.msg.Values)
			msgs[i].Values = it.msg.Values
		}
		switch v.Action {
		case brandguard.ActionAccept:
			if !lastOK || env.EventType != lastType {
				lastType, lastOK = env.EventType, true
				lastHandler = c.handlers[env.EventType]
				lastSet = nil
				if c.sets != nil {
					lastSet = c.sets[env.EventType]
				}
			}
			h := lastHandler
			if h == nil {
				it.ack, it.outcome = true, OutcomeUnhandled
				continue
			}
			it.handler, it.set = h, lastSet
			b.jobs = append(b.jobs, it)
		case brandguard.ActionIgnore:
			it.ack, it.outcome = true, OutcomeIgnored
		default:
			if v.Signal != nil {
				c.surface(string(v.Reason) + ": " + v.Signal.Err.Error())
			}
			it.rejectReason, it.err = string(v.Reason), v.Err
			b.rejected = append(b.rejected, it)
		}
	}
	if c.batcher != nil && len(b.jobs) > 0 {
		c.claim(ctx, b.jobs)
	}
	return b
}

// run dead-letters the rejected entries, runs the handlers, settles dedup
// and acknowledges. reclaimed batches (idle entries claimed back) run even
// for aggregates held for order: they carry the held entries, in order.
//
// In the pipeline, run closes ran once the handlers have finished and the
// aggregates held for order are updated: the next batch may run its
// handlers from then on, while this one settles dedup and acknowledges. It
// acknowledges only once acked is closed (the batch before it has
// acknowledged), so the watermark advances in stream order. Both may be
// nil (a batch run on its own).
func (c *Consumer) run(ctx context.Context, b *batch, ran chan<- struct{}, acked <-chan struct{}) {
	defer func() {
		// Hold no entry longer than the batch.
		c.fresh.release(b.msgs)
		clear(b.items)
		b.msgs = nil
	}()
	opCtx := context.WithoutCancel(ctx)
	c.startSpans(b.items)
	c.deadLetterAll(opCtx, b.rejected) // one script call for the batch's rejects
	runnable, waiting := c.admit(b, b.runnable[:0])
	b.runnable = runnable
	if len(runnable) > 0 {
		c.runLanes(ctx, runnable, &b.lanes)
	}
	// The outcomes are final: what the next batch must hold back for
	// order is known.
	c.updateHolds(b.items)
	if len(waiting) > 0 {
		c.checkHolds(opCtx, waiting)
	}
	if ran != nil {
		close(ran)
	}
	// The done marks are written before the acknowledgement (ADR-010): a
	// crash between the two leaves an entry pending whose redelivery is a
	// duplicate, never an acknowledged entry without its mark, which a
	// replay of the stream (a group recreated from StartID "0") would run
	// again. The settle overlaps the wait for the batch before this one.
	c.settle(opCtx, b.jobs)
	if acked != nil {
		<-acked
	}
	c.confirmHeld(opCtx, b.msgs, b.items)
	c.acknowledge(opCtx, b.items, &b.ids)
	c.giveBack(opCtx, b.items)
	c.report(b.items)
	c.countLost(b.items)
	c.countOutcomes(b.items)
	c.endSpans(b.items)
}

// countLost counts and logs the entries found trimmed from the stream
// that the acknowledgement took off the pending list; those it did not
// stay pending, and the reclaim that finds them later counts them, once.
func (c *Consumer) countLost(items []item) {
	for i := range items {
		it := &items[i]
		if it.outcome != OutcomeLostToTrim {
			continue
		}
		if !it.resolved {
			it.outcome = OutcomeRetryLater
			continue
		}
		c.series.lost.Inc()
		c.log.Error("pending entry was trimmed from the stream before it was processed: its event is lost",
			slog.String(AttrEntryID, it.msg.ID), slog.Int64(AttrDeliveries, it.deliveries))
	}
}

// countOutcomes adds the batch's entries to entries_total, one Add per run
// of entries with the same event type and outcome.
func (c *Consumer) countOutcomes(items []item) {
	n := 0
	var typ event.Type
	var outcome string
	for i := range items {
		it := &items[i]
		if n > 0 && it.outcome == outcome && it.m.Envelope.EventType == typ {
			n++
			continue
		}
		if n > 0 {
			c.series.entry(typ, outcome).Add(float64(n))
		}
		typ, outcome, n = it.m.Envelope.EventType, it.outcome, 1
	}
	if n > 0 {
		c.series.entry(typ, outcome).Add(float64(n))
	}
}
