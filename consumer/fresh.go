package consumer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/dedup"
)

// freshness keeps the entries this consumer holds — the batch running and
// the one prepared behind it — from looking idle to the group: every
// ReclaimIdle/3 it re-claims them to this consumer with XCLAIM JUSTID,
// which resets their idle time without counting a delivery. So no other
// consumer's reclaim takes an entry that is still in this process, however
// long its batch takes (ADR-010).
//
// It holds whole batches, not entry IDs: holding and releasing a batch is
// one map operation on the read path, and the IDs are collected only when
// the refresher needs them. Batches held at once are disjoint (a reclaim
// runs only when no other batch is in flight).
type freshness struct {
	mu     sync.Mutex
	held   map[*redis.XMessage][]redis.XMessage // batches by their first entry
	leases map[dedup.Key]struct{}               // dedup leases of held entries, renewed too
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
	}
	f.held[&msgs[0]] = msgs
}

// release lets go of a batch held by hold.
func (f *freshness) release(msgs []redis.XMessage) {
	if len(msgs) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.held, &msgs[0])
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
		ids := c.fresh.ids()
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), 1000)]
			ids = ids[len(chunk):]
			rctx, cancel := context.WithTimeout(ctx, opTimeout)
			err := c.rdb.XClaimJustID(rctx, &redis.XClaimArgs{Stream: c.cfg.Stream, Group: c.cfg.Group,
				Consumer: c.cfg.Consumer, Messages: chunk}).Err()
			cancel()
			if err != nil && ctx.Err() == nil {
				c.log.Warn("refreshing entries in flight failed", slog.String(AttrError, err.Error()))
			}
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
