package consumer

import (
	"context"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// maxReclaimRounds bounds one reclaim pass, so that reading new entries is
// never starved by a huge pending list.
const maxReclaimRounds = 4

// reclaim claims entries idle for ReclaimIdle — from consumers that died,
// and this consumer's own failed or deferred ones — and processes them.
// Entries held here are never idle that long (see freshness). Entries that
// were deleted from the stream while pending are counted as lost (Redis 7
// drops them from the pending list as it reports them). It runs when no
// batch is in flight, with buf for the items. Each XAUTOCLAIM is bounded by
// opTimeout.
func (c *Consumer) reclaim(ctx context.Context, buf *batch) {
	start := "0-0"
	for range maxReclaimRounds {
		if ctx.Err() != nil {
			return
		}
		c.wm.Heartbeat() // each step of a pass is bounded; beat between them
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		msgs, next, deleted, err := c.rdb.XAutoClaimWithDeleted(cctx, &redis.XAutoClaimArgs{
			Stream: c.cfg.Stream, Group: c.cfg.Group, Consumer: c.cfg.Consumer,
			MinIdle: c.cfg.ReclaimIdle, Start: start, Count: int64(c.cfg.BatchSize),
		}).Result()
		cancel()
		if err != nil {
			if !isNoGroup(err) && ctx.Err() == nil {
				c.log.Warn("reclaim failed", slog.String(AttrError, err.Error()))
			}
			return
		}
		for _, id := range deleted {
			c.holds.remove(id) // gone from the pending list: it holds nothing
		}
		c.waiting.forget(deleted)
		if len(deleted) > 0 {
			c.series.lost.Add(float64(len(deleted)))
			c.series.entry("", OutcomeLostToTrim).Add(float64(len(deleted)))
			c.log.Error("pending entries were trimmed from the stream before they were processed: their events are lost",
				slog.Int("entries", len(deleted)), slog.String("first_id", deleted[0]))
		}
		c.wm.Heartbeat()
		if len(msgs) > 0 {
			c.series.reclaimed.Add(float64(len(msgs)))
			c.log.Info("reclaimed idle pending entries", slog.Int("entries", len(msgs)))
			// Each call of the batch is bounded, but they follow one
			// another: beat while they run, as for pipelined batches.
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.processBatch(ctx, buf, msgs, c.deliveryCounts(ctx, msgs), true)
			}()
			c.await(done)
		}
		if next == "0-0" || next == "" {
			return
		}
		start = next
	}
}
