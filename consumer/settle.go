package consumer

import (
	"context"
	"log/slog"

	"github.com/headwaylabs/headway/dedup"
)

// The dedup lease around a batch (claim before its handlers run, settle
// after) and its acknowledgement.

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
