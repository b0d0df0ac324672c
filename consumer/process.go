package consumer

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/dedup"
)

// opTimeout bounds the acknowledgements and dead-letter writes of a batch;
// they run on a context that outlives cancellation so a drain can finish.
const opTimeout = 5 * time.Second

// maxBlocked bounds the set of aggregates held for order.
const maxBlocked = 100_000

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
	m            Message // handed to the handler, with the envelope; part of the item to save an allocation
}

var laneSeed = maphash.MakeSeed()

// batch is a read batch on its way through the pipeline: prepared (decoded,
// judged, claimed in dedup) while the previous batch still runs, then run.
type batch struct {
	items     []item
	jobs      []*item // accepted entries with a handler
	rejected  []*item // to dead-letter, with reject set
	reclaimed bool
	abandon   bool // shutting down before it started: run no handler
}

// processBatch takes a batch through the whole pipeline at once, in buf.
func (c *Consumer) processBatch(ctx context.Context, buf *[]item, msgs []redis.XMessage, deliveries []int64, reclaimed bool) {
	c.fresh.hold(msgs)
	c.run(ctx, c.prepare(ctx, buf, msgs, deliveries, reclaimed))
}

// prepare decodes and judges every entry and claims the accepted ones in a
// batch dedup store, using buf for the items. It acknowledges and
// dispatches nothing, so it can run while the previous batch runs; the
// caller has put msgs in c.fresh and owns buf until the batch has run.
func (c *Consumer) prepare(ctx context.Context, buf *[]item, msgs []redis.XMessage, deliveries []int64, reclaimed bool) *batch {
	if cap(*buf) < len(msgs) {
		*buf = make([]item, len(msgs))
	}
	b := &batch{items: (*buf)[:len(msgs)], reclaimed: reclaimed}
	for i := range msgs {
		it := &b.items[i]
		it.msg = msgs[i]
		it.deliveries = 1
		if deliveries != nil {
			it.deliveries = deliveries[i]
		}
		if it.msg.Values == nil {
			// Trimmed from the stream while pending: nothing to apply.
			it.ack, it.outcome = true, OutcomeLostToTrim
			c.series.lost.Inc()
			c.log.Error("pending entry was trimmed from the stream before it was processed: its event is lost",
				slog.String(AttrEntryID, it.msg.ID), slog.Int64(AttrDeliveries, it.deliveries))
			continue
		}
		env, v := c.guard.Decode(it.msg.Values)
		it.m.Envelope = env
		switch v.Action {
		case brandguard.ActionAccept:
			h, ok := c.handlers[env.EventType]
			if !ok {
				it.ack, it.outcome = true, OutcomeUnhandled
				continue
			}
			it.handler = h
			b.jobs = append(b.jobs, it)
		case brandguard.ActionIgnore:
			it.ack, it.outcome = true, OutcomeIgnored
		default:
			if v.Signal != nil {
				c.wm.Alert(string(v.Reason)+": "+v.Signal.Err.Error(), time.Now().Add(c.cfg.AlertWindow))
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
func (c *Consumer) run(ctx context.Context, b *batch) {
	defer clear(b.items) // hold no entry longer than the batch
	defer c.fresh.release(b.items)
	opCtx := context.WithoutCancel(ctx)
	c.deadLetterAll(opCtx, b.rejected) // one MULTI/EXEC for the batch's rejects
	runnable := make([]*item, 0, len(b.jobs))
	for _, it := range b.jobs {
		if it.outcome != "" { // settled by the claim: duplicate or busy
			continue
		}
		if b.abandon {
			it.outcome = OutcomeDeferred
			continue
		}
		if _, held := c.blocked[it.m.Envelope.AggregateID]; held && !b.reclaimed {
			it.outcome = OutcomeDeferred
			continue
		}
		runnable = append(runnable, it)
	}
	if len(runnable) > 0 {
		c.runLanes(ctx, runnable)
	}
	// Settling dedup and acknowledging are independent round trips: both
	// only follow handlers that finished.
	var settled sync.WaitGroup
	settled.Go(func() { c.settle(opCtx, b.jobs) })
	c.acknowledge(opCtx, b.items)
	settled.Wait()
	c.updateBlocked(b.jobs)
	for i := range b.items {
		c.series.entry(b.items[i].m.Envelope.EventType, b.items[i].outcome).Inc()
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
	if err := c.batcher.Claim(ctx, keys, out); err != nil {
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
		}
	}
	c.fresh.holdLeases(leased)
}

// runLanes runs jobs on Concurrency lanes: one aggregate always maps to one
// lane, and a lane runs its jobs in stream order.
func (c *Consumer) runLanes(ctx context.Context, jobs []*item) {
	hctx, cancel := c.handlerContext(ctx)
	defer cancel()
	n := min(c.cfg.Concurrency, len(jobs))
	lanes := make([][]*item, n)
	for _, it := range jobs {
		l := 0
		if n > 1 {
			l = int(maphash.String(laneSeed, it.m.Envelope.AggregateID) % uint64(n))
		}
		lanes[l] = append(lanes[l], it)
	}
	var wg sync.WaitGroup
	for _, lane := range lanes {
		if len(lane) == 0 {
			continue
		}
		wg.Go(func() { c.runLane(ctx, hctx, lane) })
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
			return
		case <-beat.C:
			c.wm.Heartbeat()
		}
	}
}

// heartbeatInterval is how often a loop waiting for its handlers beats.
const heartbeatInterval = time.Second

// runLane runs one lane's jobs in order. After a job of an aggregate stays
// pending, the lane's later jobs of that aggregate stay pending too.
func (c *Consumer) runLane(ctx, hctx context.Context, lane []*item) {
	var stuck map[string]bool
	for _, it := range lane {
		agg := it.m.Envelope.AggregateID
		if stuck[agg] || hctx.Err() != nil {
			it.outcome = OutcomeDeferred
			if stuck == nil {
				stuck = map[string]bool{}
			}
			stuck[agg] = true
			continue
		}
		c.runJob(ctx, hctx, it)
		if !it.ack && !it.resolved {
			if stuck == nil {
				stuck = map[string]bool{}
			}
			stuck[agg] = true
		}
	}
}

// runJob runs one job to an outcome.
func (c *Consumer) runJob(ctx, hctx context.Context, it *item) {
	it.m.ID, it.m.Stream, it.m.Group, it.m.Consumer = it.msg.ID, c.cfg.Stream, c.cfg.Group, c.cfg.Consumer
	it.m.Deliveries, it.m.guard = it.deliveries, c.guard
	m := &it.m
	var err error
	if c.store != nil && c.batcher == nil {
		var o dedup.Outcome
		o, err = c.store.Process(hctx, dedup.Key{Scope: c.cfg.Group, EventID: it.m.Envelope.EventID},
			func(pctx context.Context) error { return c.attempts(ctx, pctx, it, m) })
		switch o {
		case dedup.Duplicate:
			it.ack, it.outcome = true, OutcomeDuplicate
			return
		case dedup.Busy:
			it.outcome = OutcomeDeferred
			return
		}
	} else {
		err = c.attempts(ctx, hctx, it, m)
	}
	if err == nil {
		it.ack, it.outcome = true, OutcomeApplied
		return
	}
	it.err = err
	opCtx := context.WithoutCancel(ctx)
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
		c.deadLetter(opCtx, it, ReasonMaxDeliveries, err)
	default:
		it.outcome = OutcomeRetryLater
	}
	if it.outcome == OutcomeRetryLater {
		c.log.Warn("handler failed: entry left pending for redelivery",
			slog.String(AttrEntryID, it.msg.ID), slog.String(AttrEventID, it.m.Envelope.EventID),
			slog.String(AttrEventType, string(it.m.Envelope.EventType)), slog.Int64(AttrDeliveries, it.deliveries),
			slog.String(AttrError, err.Error()))
	}
}

// attempts runs the handler with the in-process retry policy, each attempt
// under its own context that ends at HandlerTimeout and when the attempt
// returns (an attemptContext: context.WithTimeout(parent, HandlerTimeout)
// built only when the handler needs it). It stops retrying when the
// consumer is shutting down.
func (c *Consumer) attempts(ctx, parent context.Context, it *item, m *Message) error {
	obs := c.series.observe(it.m.Envelope.EventType)
	for attempt := 1; ; attempt++ {
		m.Attempt = attempt
		start := time.Now()
		actx := newAttemptContext(parent, start.Add(c.cfg.HandlerTimeout))
		err := it.handler(actx, m)
		end := time.Now()
		actx.end(end)
		obs.Observe(end.Sub(start).Seconds())
		if err == nil {
			return nil
		}
		if attempt >= c.cfg.Retry.Attempts || errors.Is(err, ErrPermanent) ||
			errors.Is(err, brandguard.ErrBrandMismatch) || ctx.Err() != nil || parent.Err() != nil {
			return err
		}
		c.series.retries.Inc()
		sleep(ctx, c.cfg.Retry.delay(attempt))
	}
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
// watermark to the newest entry that left the pending list.
func (c *Consumer) acknowledge(ctx context.Context, items []item) {
	var ids []string
	for i := range items {
		if items[i].ack {
			ids = append(ids, items[i].msg.ID)
		}
	}
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
	last := ""
	for i := range items {
		if items[i].resolved && streamIDLess(last, items[i].msg.ID) {
			last = items[i].msg.ID
		}
	}
	if last != "" {
		c.wm.Progress(last)
	}
}

// updateBlocked holds aggregates with an entry left pending, and frees
// those whose entries all left the stream.
func (c *Consumer) updateBlocked(jobs []*item) {
	if len(c.blocked) == 0 {
		held := false
		for _, it := range jobs {
			held = held || it.outcome == OutcomeRetryLater || it.outcome == OutcomeDeferred
		}
		if !held {
			return // the common case: nothing held before, nothing held now
		}
	}
	waiting := map[string]bool{}
	for _, it := range jobs {
		agg := it.m.Envelope.AggregateID
		if it.outcome == OutcomeRetryLater || it.outcome == OutcomeDeferred {
			waiting[agg] = true
		} else if !waiting[agg] {
			waiting[agg] = false
		}
	}
	for agg, w := range waiting {
		if w {
			c.blocked[agg] = struct{}{}
		} else {
			delete(c.blocked, agg)
		}
	}
	if len(c.blocked) > maxBlocked {
		c.log.Warn("too many aggregates held for order: releasing them all", slog.Int("held", len(c.blocked)))
		clear(c.blocked)
	}
}

// streamIDLess reports whether stream ID a sorts before b ("" sorts first).
func streamIDLess(a, b string) bool {
	if a == "" {
		return b != ""
	}
	am, as := splitID(a)
	bm, bs := splitID(b)
	if am != bm {
		return am < bm
	}
	return as < bs
}

func splitID(id string) (ms, seq uint64) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			ms, _ = strconv.ParseUint(id[:i], 10, 64)
			seq, _ = strconv.ParseUint(id[i+1:], 10, 64)
			return
		}
	}
	ms, _ = strconv.ParseUint(id, 10, 64)
	return
}
