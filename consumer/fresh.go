package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/dedup"
)

// freshness keeps the entries this consumer holds — the batch running and
// the one prepared behind it — from looking idle to the group: every
// ReclaimIdle/3 it claims them again to this consumer (refreshHeld: XCLAIM
// JUSTID, which resets their idle time without counting a delivery). So no
// other consumer's reclaim takes an entry that is still in this process,
// however long its batch takes (ADR-010). The refresh never takes back an
// entry that another consumer claimed meanwhile (this process paused longer
// than ReclaimIdle), and leaves pending an entry trimmed from the stream, so
// that it is counted as lost unless its handler applies it: it records both
// kinds of ID, until their batch is released.
//
// It holds whole batches, not entry IDs: holding and releasing a batch is
// one map operation on the read path, and the IDs are collected only when
// the refresher needs them. Batches held at once are disjoint (a reclaim
// runs only when no other batch is in flight).
type freshness struct {
	mu     sync.Mutex
	held   map[*redis.XMessage][]redis.XMessage // batches by their first entry
	heldAt map[*redis.XMessage]time.Time        // when each batch was held
	// passAt is when the last refresh pass that refreshed every held
	// entry started: each batch held before it was fresh then.
	passAt time.Time
	leases map[dedup.Key]struct{} // dedup leases of held entries, renewed too
	// takenIDs: held entries another consumer has claimed; trimmedIDs:
	// held entries deleted from the stream while pending here.
	takenIDs, trimmedIDs map[string]struct{}
}

func (f *freshness) holdLeases(keys []dedup.Key) {
	if len(keys) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leases == nil {
		f.leases = make(map[dedup.Key]struct{}, 2*len(keys))
	}
	for _, k := range keys {
		f.leases[k] = struct{}{}
	}
}

func (f *freshness) releaseLeases(keys []dedup.Key) {
	if len(keys) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		delete(f.leases, k)
	}
}

func (f *freshness) leaseKeys() []dedup.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]dedup.Key, 0, len(f.leases))
	for k := range f.leases {
		out = append(out, k)
	}
	return out
}

// hold holds the entries of a batch until release(msgs).
func (f *freshness) hold(msgs []redis.XMessage) {
	if len(msgs) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held == nil {
		f.held = make(map[*redis.XMessage][]redis.XMessage, pipelineDepth)
		f.heldAt = make(map[*redis.XMessage]time.Time, pipelineDepth)
	}
	f.held[&msgs[0]] = msgs
	f.heldAt[&msgs[0]] = time.Now()
}

// unrefreshed returns how long ago the entries of the held batch msgs were
// last known fresh: since they were held, or since the last full refresh
// pass that started after that. Past ReclaimIdle another consumer may have
// claimed them.
func (f *freshness) unrefreshed(msgs []redis.XMessage) time.Duration {
	if len(msgs) == 0 {
		return 0
	}
	f.mu.Lock()
	at, ok := f.heldAt[&msgs[0]]
	if f.passAt.After(at) {
		at = f.passAt
	}
	f.mu.Unlock()
	if !ok {
		return 0
	}
	return time.Since(at)
}

// passed records a refresh pass, started at start, that refreshed every
// entry held then.
func (f *freshness) passed(start time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if start.After(f.passAt) {
		f.passAt = start
	}
}

// release lets go of a batch held by hold.
func (f *freshness) release(msgs []redis.XMessage) {
	if len(msgs) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.held, &msgs[0])
	delete(f.heldAt, &msgs[0])
	if len(f.takenIDs)+len(f.trimmedIDs) > 0 {
		for i := range msgs {
			delete(f.takenIDs, msgs[i].ID)
			delete(f.trimmedIDs, msgs[i].ID)
		}
	}
}

// isTaken reports whether the held entry id has been claimed by another
// consumer: its handler may be running there too, and acknowledging it here
// would remove it from the other consumer's pending list.
func (f *freshness) isTaken(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.takenIDs[id]
	return ok
}

// taken returns a copy of the IDs of held entries another consumer has
// claimed, or nil when there are none (the common case: one lock, no copy).
func (f *freshness) taken() map[string]struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.takenIDs) == 0 {
		return nil
	}
	out := make(map[string]struct{}, len(f.takenIDs))
	for id := range f.takenIDs {
		out[id] = struct{}{}
	}
	return out
}

// note records in *set the ids still held (a batch released meanwhile
// forgets its own) and returns those it did not hold before.
func (f *freshness) note(set *map[string]struct{}, ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	held := make(map[string]struct{}, len(ids))
	for _, msgs := range f.held {
		for i := range msgs {
			held[msgs[i].ID] = struct{}{}
		}
	}
	if *set == nil {
		*set = make(map[string]struct{}, len(ids))
	}
	var added []string
	for _, id := range ids {
		if _, ok := held[id]; !ok {
			continue
		}
		if _, ok := (*set)[id]; !ok {
			(*set)[id] = struct{}{}
			added = append(added, id)
		}
	}
	return added
}

// ids returns the IDs of the entries held.
func (f *freshness) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, msgs := range f.held {
		n += len(msgs)
	}
	out := make([]string, 0, n)
	for _, msgs := range f.held {
		for i := range msgs {
			out = append(out, msgs[i].ID)
		}
	}
	return out
}

// refreshEvery bounds the refresh period, so dedup leases (LeaseTTL,
// default 1m) are renewed well before they expire.
const refreshEvery = 10 * time.Second

// refreshChunk bounds the IDs refreshed by one script call (a few commands
// each), so that the script holds the server for about a millisecond.
const refreshChunk = 500

// refresh runs until ctx ends, re-claiming the held entries and renewing
// their dedup leases every ReclaimIdle/3 (at most every 10s).
func (c *Consumer) refresh(ctx context.Context) {
	t := time.NewTicker(min(c.cfg.ReclaimIdle/3, refreshEvery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		if c.refreshIDs(ctx, c.fresh.ids()) {
			c.fresh.passed(start)
		}
		if keys := c.fresh.leaseKeys(); c.batcher != nil && len(keys) > 0 {
			rctx, cancel := context.WithTimeout(ctx, opTimeout)
			err := c.batcher.Extend(rctx, keys)
			cancel()
			if err != nil && ctx.Err() == nil {
				c.log.Warn("renewing dedup leases failed", slog.String(AttrError, err.Error()))
			}
		}
	}
}

// refreshIDs refreshes the held entries ids in chunks (refreshChunk) and
// reports whether every chunk was refreshed.
func (c *Consumer) refreshIDs(ctx context.Context, ids []string) bool {
	ok := true
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), refreshChunk)]
		ids = ids[len(chunk):]
		ok = c.refreshChunk(ctx, chunk) && ok
	}
	return ok
}

// confirmHeld runs before a batch is acknowledged. When its entries went
// unrefreshed for ReclaimIdle/2 or more — the process was paused, or cut
// off from Redis, so another consumer may have claimed them — it refreshes
// them first, so that those taken are known (and counted) before the
// acknowledgement, which must leave them to their new owner: XACK does not
// check the owner, and the periodic refresh may not have run since the
// process came back. When that refresh fails, nothing of the batch is
// acknowledged: its entries stay pending and come back as duplicates.
func (c *Consumer) confirmHeld(ctx context.Context, msgs []redis.XMessage, items []item) {
	if c.fresh.unrefreshed(msgs) < c.cfg.ReclaimIdle/2 {
		return
	}
	ids := make([]string, len(msgs))
	for i := range msgs {
		ids[i] = msgs[i].ID
	}
	if c.refreshIDs(ctx, ids) {
		return
	}
	n := 0
	for i := range items {
		if items[i].ack {
			items[i].ack = false
			n++
		}
	}
	if n > 0 {
		c.log.Warn("entries not acknowledged: after a pause they could not be confirmed as still this consumer's; they stay pending and come back as duplicates",
			slog.Int("entries", n), slog.String("first_id", msgs[0].ID))
	}
}

// refreshChunk refreshes the held entries ids with one call of refreshHeld,
// bounded by opTimeout, and reports the entries taken by another consumer
// and those trimmed from the stream, once each. It reports whether the
// call succeeded.
func (c *Consumer) refreshChunk(ctx context.Context, ids []string) bool {
	args := make([]any, 0, len(ids)+2)
	args = append(args, c.cfg.Group, c.cfg.Consumer)
	for _, id := range ids {
		args = append(args, id)
	}
	rctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	res, err := refreshHeld.Run(rctx, c.rdb, []string{c.cfg.Stream}, args...).Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("refresh script returned %d values, want 2", len(res))
	}
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("refreshing entries in flight failed", slog.String(AttrError, err.Error()))
		}
		return false
	}
	if taken := c.fresh.note(&c.fresh.takenIDs, replyStrings(res[0])); len(taken) > 0 {
		c.series.taken.Add(float64(len(taken)))
		c.log.Error("entries in flight here were claimed by another consumer: this process did not refresh them "+
			"for ReclaimIdle (paused, or Redis unreachable), so they may run twice",
			slog.Int("entries", len(taken)), slog.String("first_id", taken[0]))
	}
	if trimmed := c.fresh.note(&c.fresh.trimmedIDs, replyStrings(res[1])); len(trimmed) > 0 {
		c.log.Warn("entries in flight here were trimmed from the stream: each is counted as lost unless its handler applies it",
			slog.Int("entries", len(trimmed)), slog.String("first_id", trimmed[0]))
	}
	return true
}

// replyStrings returns the strings in a script's array reply.
func replyStrings(v any) []string {
	vs, _ := v.([]any)
	out := make([]string, 0, len(vs))
	for _, x := range vs {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
