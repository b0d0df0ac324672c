package consumer

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/dedup"
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
	claimed    bool   // holds a dedup lease taken by Claim
	ack        bool   // acknowledge in the batch XACK
	resolved   bool   // left the stream's pending list (acked or dead-lettered)
	outcome    string // one of the Outcome constants
	err        error
	// rejectReason is brandguard's reason for an entry to dead-letter.
	rejectReason string
	lane         int           // the lane it runs on (runLanes)
	notOurs      bool          // pending for another consumer now: holds nothing here
	failed       bool          // its handler (or its dedup store) failed on it: err says why
	spent        bool          // its handler failed on this delivery: it counts toward MaxDeliveries
	took         time.Duration // the successful attempt's duration, when timed
	timed        bool
	m            Message // handed to the handler, with the envelope; part of the item to save an allocation
}

var laneSeed = maphash.MakeSeed()

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
			}
			h := lastHandler
			if h == nil {
				it.ack, it.outcome = true, OutcomeUnhandled
				continue
			}
			it.handler = h
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

// claim leases the jobs in the dedup store: a leased job is marked
// claimed; a duplicate is set to be acknowledged; a busy one is deferred.
// When the claim fails, every job is deferred (left pending).
func (c *Consumer) claim(ctx context.Context, jobs []*item) {
	keys := make([]dedup.Key, len(jobs))
	for i, it := range jobs {
		keys[i] = dedup.Key{Scope: c.cfg.Group, EventID: it.m.Envelope.EventID}
	}
	out := make([]dedup.Outcome, len(jobs))
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	err := c.batcher.Claim(cctx, keys, out)
	if err != nil {
		c.log.Warn("dedup claim failed: the batch stays pending", slog.String(AttrError, err.Error()))
	}
	var leased []dedup.Key
	for i, it := range jobs {
		switch out[i] {
		case dedup.Processed:
			it.claimed = true
			leased = append(leased, keys[i])
		case dedup.Duplicate:
			it.ack, it.outcome = true, OutcomeDuplicate
		default:
			it.outcome = OutcomeDeferred
			if err != nil {
				it.failed, it.err = true, err // the store failed, not a busy lease
			}
		}
	}
	c.fresh.holdLeases(leased)
}

// runLanes runs jobs on Concurrency lanes: one aggregate always maps to one
// lane, and a lane runs its jobs in stream order. order is scratch space.
func (c *Consumer) runLanes(ctx context.Context, jobs []*item, order *[]*item) {
	hctx, cancel := c.handlerContext(ctx)
	defer cancel()
	n := min(c.cfg.Concurrency, len(jobs))
	// The lanes share one slice, in stream order within each lane.
	lanes := make([][]*item, n)
	if n == 1 {
		lanes[0] = jobs
	} else {
		sizes := make([]int, n)
		for _, it := range jobs {
			it.lane = int(maphash.String(laneSeed, it.m.Envelope.AggregateID) % uint64(n))
			sizes[it.lane]++
		}
		if cap(*order) < len(jobs) {
			*order = make([]*item, len(jobs))
		}
		all, off := (*order)[:len(jobs)], 0
		for l, size := range sizes {
			lanes[l] = all[off : off : off+size]
			off += size
		}
		for _, it := range jobs {
			lanes[it.lane] = append(lanes[it.lane], it)
		}
	}
	// The first attempt of each job gets its context from one slab per
	// batch (one allocation, not one per job). A slab is never reused, so
	// a context a handler keeps stays what it was.
	slab, off := make([]attemptContext, len(jobs)), 0
	var wg sync.WaitGroup
	for _, lane := range lanes {
		if len(lane) == 0 {
			continue
		}
		first := slab[off : off+len(lane) : off+len(lane)]
		off += len(lane)
		wg.Go(func() { c.runLane(ctx, hctx, lane, first) })
	}
	// The loop is alive while it waits for its handlers: keep the
	// heartbeat, so a hung handler shows as a stall (no progress with a
	// backlog), not as a wedged loop (ADR-010).
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	beat := time.NewTicker(heartbeatInterval)
	defer beat.Stop()
	for {
		select {
		case <-finished:
			c.observeDurations(jobs)
			return
		case <-beat.C:
			c.wm.Heartbeat()
		}
	}
}

// observeDurations records the durations of the jobs' successful attempts
// in handler_duration_seconds (failed attempts are recorded as they end).
// The lanes leave them in the items so that one goroutine records them: a
// histogram observed from several cores at once costs several times more.
func (c *Consumer) observeDurations(jobs []*item) {
	var typ event.Type
	var obs prometheus.Observer
	for _, it := range jobs {
		if !it.timed {
			continue
		}
		if obs == nil || it.m.Envelope.EventType != typ {
			typ, obs = it.m.Envelope.EventType, c.series.observe(it.m.Envelope.EventType)
		}
		obs.Observe(it.took.Seconds())
	}
}

// heartbeatInterval is how often a loop waiting for its handlers beats.
const heartbeatInterval = time.Second

// runLane runs one lane's jobs in order, the i-th job's first attempt
// under first[i]. After a job of an aggregate stays pending, the lane's
// later jobs of that aggregate stay pending too.
func (c *Consumer) runLane(ctx, hctx context.Context, lane []*item, first []attemptContext) {
	var stuck map[string]bool
	// now is when the previous job's handler returned, when nothing but
	// this loop ran since: the next attempt starts then (one clock read
	// per job instead of two).
	var now time.Time
	for i, it := range lane {
		agg := it.m.Envelope.AggregateID
		if stuck[agg] || hctx.Err() != nil {
			it.outcome = OutcomeDeferred
			if stuck == nil {
				stuck = map[string]bool{}
			}
			stuck[agg] = true
			continue
		}
		now = c.runJob(ctx, hctx, it, &first[i], now)
		if !it.ack && !it.resolved {
			if stuck == nil {
				stuck = map[string]bool{}
			}
			stuck[agg] = true
		}
	}
}

// runJob runs one job to an outcome, its first attempt under actx. start,
// when not zero, is the time the first attempt starts. It returns when the
// job's handler returned if nothing else ran after it, else the zero time.
func (c *Consumer) runJob(ctx, hctx context.Context, it *item, actx *attemptContext, start time.Time) time.Time {
	it.m.ID, it.m.Stream, it.m.Group, it.m.Consumer = it.msg.ID, c.cfg.Stream, c.cfg.Group, c.cfg.Consumer
	it.m.Deliveries, it.m.guard = it.deliveries, c.guard
	m := &it.m
	end, o, err := c.attempts(ctx, hctx, it, m, actx, start)
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
func (c *Consumer) attempts(ctx, parent context.Context, it *item, m *Message, first *attemptContext, start time.Time) (time.Time, dedup.Outcome, error) {
	inbox := c.store != nil && c.batcher == nil
	for attempt := 1; ; attempt++ {
		m.Attempt = attempt
		actx := first
		if attempt > 1 {
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
		if attempt >= c.cfg.Retry.Attempts || errors.Is(err, ErrPermanent) ||
			errors.Is(err, brandguard.ErrBrandMismatch) || ctx.Err() != nil || parent.Err() != nil {
			return end, 0, err
		}
		c.series.retries.Inc()
		sleep(ctx, c.cfg.Retry.delay(attempt))
	}
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

// settle records applied jobs as done in a batch dedup store and releases
// the leases of the others (dead-lettered ones included: a redriven event
// must run again).
func (c *Consumer) settle(ctx context.Context, jobs []*item) {
	if c.batcher == nil {
		return
	}
	var done, failed []dedup.Key
	defer func() { c.fresh.releaseLeases(done); c.fresh.releaseLeases(failed) }()
	for _, it := range jobs {
		if !it.claimed {
			continue
		}
		k := dedup.Key{Scope: c.cfg.Group, EventID: it.m.Envelope.EventID}
		if it.outcome == OutcomeApplied {
			done = append(done, k)
		} else {
			failed = append(failed, k)
		}
	}
	if len(done)+len(failed) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := c.batcher.Settle(sctx, done, failed); err != nil {
		c.log.Warn("dedup settle failed: applied events may run again if they are delivered again",
			slog.String(AttrError, err.Error()), slog.Int("done", len(done)), slog.Int("released", len(failed)))
	}
}

// acknowledge sends one XACK for every entry marked ack and advances the
// watermark to the newest entry that left the pending list. scratch is
// reused for the IDs.
func (c *Consumer) acknowledge(ctx context.Context, items []item, scratch *[]string) {
	ids := (*scratch)[:0]
	// An entry another consumer claimed meanwhile is its now: XACK does not
	// check the owner, and would take it off that consumer's pending list
	// while it runs the entry.
	taken := c.fresh.taken()
	for i := range items {
		if _, ok := taken[items[i].msg.ID]; ok && items[i].ack {
			items[i].ack = false
			c.log.Warn("entry claimed by another consumer while it ran here: left to that consumer",
				slog.String(AttrEntryID, items[i].msg.ID), slog.String(AttrEventID, items[i].m.Envelope.EventID))
		}
		if items[i].ack {
			ids = append(ids, items[i].msg.ID)
		}
	}
	*scratch = ids
	defer clear(ids)
	if len(ids) > 0 {
		actx, cancel := context.WithTimeout(ctx, opTimeout)
		err := c.rdb.XAck(actx, c.cfg.Stream, c.cfg.Group, ids...).Err()
		cancel()
		if err != nil {
			c.log.Warn("acknowledgement failed: the entries stay pending and will be delivered again",
				slog.String(AttrError, err.Error()), slog.Int("entries", len(ids)))
		} else {
			for i := range items {
				if items[i].ack {
					items[i].resolved = true
				}
			}
		}
	}
}
