package consumer

import (
	"context"
	"log/slog"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/streamid"
)

// Order per aggregate (ADR-010, ADR-014 §3). An entry that stays pending
// here for any reason — its handler failed, its dedup lease is busy, its
// dead letter could not be written, the consumer is shutting down — holds
// back every later entry of its aggregate until it has left the pending
// list. holds keeps, per aggregate, the IDs of the entries this consumer
// left pending, oldest first.
//
//   - A batch of new entries defers every entry of a held aggregate.
//   - A reclaimed batch brings pending entries back in ID order, but
//     XAUTOCLAIM takes only those idle long enough, so an aggregate's
//     pending entries can come back on different pages and passes. An
//     entry runs only when every older entry its aggregate left pending
//     here is in the same batch and runs before it (on its lane, which
//     stops at its first entry left pending); otherwise it waits.
//   - An entry can leave the pending list another way: another consumer
//     claimed it, XAUTOCLAIM found it trimmed, an operator acknowledged
//     it. When an entry waits for an older one, that one is looked up in
//     the pending list, and dropped from holds when it is no longer
//     pending here; XAUTOCLAIM's deleted IDs are dropped as it reports
//     them. So no aggregate is held by an entry that is not there.
//
// Holds live in memory: Serve starts without them (the pending-first read
// brings this consumer's entries back in ID order), and so does a group
// recreated after NOGROUP.

// maxHeld bounds the entries held for order; past it they are all
// released, with a warning.
const maxHeld = 100_000

// holds is the set of entries this consumer left pending, by aggregate.
// Batches use it one after another (the pipeline orders them, and a
// reclaim runs alone), so it needs no lock.
type holds struct {
	byAgg map[string][]string // aggregate → pending entry IDs, ascending
	aggOf map[string]string   // entry ID → aggregate
}

func (h *holds) clear() {
	clear(h.byAgg)
	clear(h.aggOf)
}

func (h *holds) size() int { return len(h.aggOf) }

// add records id as pending for agg.
func (h *holds) add(agg, id string) {
	if _, ok := h.aggOf[id]; ok {
		return
	}
	if h.byAgg == nil {
		h.byAgg, h.aggOf = map[string][]string{}, map[string]string{}
	}
	ids := h.byAgg[agg]
	i, _ := slices.BinarySearchFunc(ids, id, streamid.Compare)
	h.byAgg[agg] = slices.Insert(ids, i, id)
	h.aggOf[id] = agg
}

// remove forgets id, which left the pending list.
func (h *holds) remove(id string) {
	agg, ok := h.aggOf[id]
	if !ok {
		return
	}
	delete(h.aggOf, id)
	ids := h.byAgg[agg]
	if i, found := slices.BinarySearchFunc(ids, id, streamid.Compare); found {
		ids = slices.Delete(ids, i, i+1)
	}
	if len(ids) == 0 {
		delete(h.byAgg, agg)
	} else {
		h.byAgg[agg] = ids
	}
}

// admit decides, in stream order, which jobs of b run now, appending them
// to runnable; the others get the outcome deferred. It returns the held
// entries that reclaimed entries wait for, for checkHolds.
func (c *Consumer) admit(b *batch, runnable []*item) ([]*item, []string) {
	var held map[string]struct{}   // aggregates with an entry deferred in this batch
	var passed map[string]struct{} // held entries in this batch that run (or leave) before later ones
	var waiting []string
	hold := func(it *item) {
		it.outcome = OutcomeDeferred
		if held == nil {
			held = map[string]struct{}{}
		}
		held[it.m.Envelope.AggregateID] = struct{}{}
	}
	taken := c.fresh.taken()
	for _, it := range b.jobs {
		agg := it.m.Envelope.AggregateID
		if _, ok := taken[it.msg.ID]; ok && it.outcome == "" {
			// Another consumer claimed it while this process could not
			// refresh it (a pause): it runs there, not here.
			it.notOurs = true
			hold(it)
			continue
		}
		if it.outcome == OutcomeDeferred { // busy in the claim
			hold(it)
			continue
		}
		pending := c.holds.byAgg[agg]
		if it.outcome != "" { // a duplicate: done before, it leaves
			if len(pending) > 0 {
				if passed == nil {
					passed = map[string]struct{}{}
				}
				passed[it.msg.ID] = struct{}{}
			}
			continue
		}
		if _, ok := held[agg]; ok || b.abandon {
			hold(it)
			continue
		}
		if len(pending) > 0 {
			if !b.reclaimed {
				hold(it)
				continue
			}
			missing := ""
			for _, older := range pending {
				if !streamid.Less(older, it.msg.ID) {
					break
				}
				if _, ok := passed[older]; !ok {
					missing = older
					break
				}
			}
			if missing != "" {
				hold(it)
				waiting = append(waiting, missing)
				continue
			}
			if passed == nil {
				passed = map[string]struct{}{}
			}
			passed[it.msg.ID] = struct{}{}
		}
		runnable = append(runnable, it)
	}
	return runnable, waiting
}

// updateHolds records, once the outcomes of the batch's entries are final,
// which of them this consumer leaves pending, and forgets those that left.
func (c *Consumer) updateHolds(items []item) {
	if c.holds.size() == 0 {
		held := false
		for i := range items {
			held = held || items[i].outcome == OutcomeRetryLater || items[i].outcome == OutcomeDeferred
		}
		if !held {
			return // the common case: nothing held before, nothing held now
		}
	}
	for i := range items {
		it := &items[i]
		agg := it.m.Envelope.AggregateID
		if (it.outcome == OutcomeRetryLater || it.outcome == OutcomeDeferred) && !it.notOurs && agg != "" {
			c.holds.add(agg, it.msg.ID)
		} else {
			c.holds.remove(it.msg.ID)
		}
	}
	if c.holds.size() > maxHeld {
		c.log.Warn("too many entries held for order: releasing them all", slog.Int("held", c.holds.size()))
		c.holds.clear()
	}
}

// checkHolds looks the entries in the pending list up, in one pipelined
// round trip bounded by opTimeout, and forgets those no longer pending for
// this consumer. When the lookup fails nothing changes; the next reclaim
// pass looks again.
func (c *Consumer) checkHolds(ctx context.Context, ids []string) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	slices.SortFunc(ids, streamid.Compare)
	ids = slices.Compact(ids)
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
	for i, cmd := range cmds {
		if p, err := cmd.Result(); err == nil && (len(p) == 0 || p[0].Consumer != c.cfg.Consumer) {
			c.holds.remove(ids[i])
			c.log.Info("entry holding its aggregate left the pending list another way: the entries after it may run",
				slog.String(AttrEntryID, ids[i]))
		}
	}
}
