package consumer

import (
	"context"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// Order per aggregate (ADR-010, ADR-014). An entry that stays pending here
// for any reason — its handler failed, its dedup lease is busy, another
// consumer took it, the consumer is shutting down — holds back every later
// entry of its aggregate: the rest of its batch, and later batches, until
// it has left the pending list. c.blocked keeps, per held aggregate, the
// oldest entry ID this consumer left pending for it: the blocker.
//
//   - A batch of new entries defers every entry of a held aggregate.
//   - A reclaimed batch brings pending entries back in ID order: an
//     aggregate's blocker runs, and the entries after it in the same batch
//     run after it on its lane (which stops at its first entry left
//     pending); an entry after a blocker that is not in the batch waits,
//     whichever pass or page claimed it.
//   - A blocker can leave the pending list another way (another consumer
//     claimed it, it was trimmed and reclaimed as lost, acknowledged by a
//     redrive): an aggregate would then be held for ever. So when a
//     reclaimed entry waits for a blocker, the blocker is looked up in the
//     pending list, and the hold is dropped when it is no longer pending
//     here.

// maxBlocked bounds the set of aggregates held for order.
const maxBlocked = 100_000

// admit decides, in stream order, which jobs of b run now, appending them
// to runnable; the others get the outcome deferred. It returns the
// blockers that made reclaimed entries wait, for checkHolds.
func (c *Consumer) admit(b *batch, runnable []*item) ([]*item, []string) {
	var held map[string]struct{}     // aggregates with an entry deferred in this batch
	var released map[string]struct{} // aggregates whose blocker is in this (reclaimed) batch
	var waiting []string
	hold := func(agg string) {
		if held == nil {
			held = map[string]struct{}{}
		}
		held[agg] = struct{}{}
	}
	taken := c.fresh.taken()
	for _, it := range b.jobs {
		agg := it.m.Envelope.AggregateID
		if _, ok := taken[it.msg.ID]; ok && it.outcome == "" {
			// Another consumer claimed it while this process could not
			// refresh it (a pause): it runs there, not here.
			it.outcome = OutcomeDeferred
		}
		if it.outcome == OutcomeDeferred { // busy in the claim, or taken
			hold(agg)
			continue
		}
		if it.outcome != "" { // a duplicate: done before, nothing to order
			continue
		}
		if _, ok := held[agg]; ok || b.abandon {
			it.outcome = OutcomeDeferred
			hold(agg)
			continue
		}
		if low, ok := c.blocked[agg]; ok {
			_, free := released[agg]
			switch {
			case free:
			case !b.reclaimed:
				it.outcome = OutcomeDeferred
				hold(agg)
				continue
			case it.msg.ID == low:
				if released == nil {
					released = map[string]struct{}{}
				}
				released[agg] = struct{}{}
			case streamIDLess(low, it.msg.ID):
				it.outcome = OutcomeDeferred
				hold(agg)
				waiting = append(waiting, low)
				continue
			}
		}
		runnable = append(runnable, it)
	}
	return runnable, waiting
}

// updateHolds records, once the jobs' outcomes are final, the oldest entry
// each aggregate left pending, and drops the holds whose blocker left the
// pending list with nothing of its aggregate left pending behind it.
func (c *Consumer) updateHolds(jobs []*item) {
	type state struct {
		oldest   string // the oldest of its entries left pending in this batch
		lowFound bool   // its blocker is in this batch
	}
	if len(c.blocked) == 0 {
		held := false
		for _, it := range jobs {
			held = held || it.outcome == OutcomeRetryLater || it.outcome == OutcomeDeferred
		}
		if !held {
			return // the common case: nothing held before, nothing held now
		}
	}
	per := map[string]*state{}
	for _, it := range jobs { // in stream order
		agg := it.m.Envelope.AggregateID
		st := per[agg]
		if st == nil {
			st = &state{}
			per[agg] = st
		}
		if low, ok := c.blocked[agg]; ok && low == it.msg.ID {
			st.lowFound = true
		}
		if (it.outcome == OutcomeRetryLater || it.outcome == OutcomeDeferred) && st.oldest == "" {
			st.oldest = it.msg.ID
		}
	}
	for agg, st := range per {
		low, had := c.blocked[agg]
		switch {
		case st.oldest != "" && (!had || st.lowFound || streamIDLess(st.oldest, low)):
			c.blocked[agg] = st.oldest
		case st.oldest == "" && had && st.lowFound:
			delete(c.blocked, agg) // the blocker left, nothing behind it waits
		}
	}
	if len(c.blocked) > maxBlocked {
		c.log.Warn("too many aggregates held for order: releasing them all", slog.Int("held", len(c.blocked)))
		clear(c.blocked)
	}
}

// checkHolds looks the blockers up in the pending list, in one pipelined
// round trip bounded by opTimeout, and drops the holds of those that are no
// longer pending for this consumer. When the lookup fails the holds stay;
// the next reclaim pass looks again.
func (c *Consumer) checkHolds(ctx context.Context, blockers []string) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	seen := make(map[string]bool, len(blockers))
	var ids []string
	for _, id := range blockers {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	cmds := make([]*redis.XPendingExtCmd, len(ids))
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: c.cfg.Stream, Group: c.cfg.Group, Start: id, End: id, Count: 1})
		}
		return nil
	})
	if err != nil {
		c.log.Warn("looking up the entries that hold aggregates failed", slog.String(AttrError, err.Error()))
		return
	}
	gone := map[string]bool{}
	for i, cmd := range cmds {
		p, err := cmd.Result()
		if err == nil && (len(p) == 0 || p[0].Consumer != c.cfg.Consumer) {
			gone[ids[i]] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	for agg, low := range c.blocked {
		if gone[low] {
			delete(c.blocked, agg)
			c.log.Info("entry holding its aggregate left the pending list another way: the aggregate's later entries may run",
				slog.String(AttrEntryID, low))
		}
	}
}
