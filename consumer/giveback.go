package consumer

import (
	"context"
	"log/slog"
	"strconv"
)

// giveBack returns to Redis's delivery counter the deliveries of the batch
// that reached no verdict of the handler: entries left pending because
// they were deferred (behind a pending entry of their aggregate, or busy
// in dedup), because the dedup store failed around the handler, or
// because the consumer was shutting down. Redis counts every delivery;
// MaxDeliveries is meant to count the handler's failures, and without the
// give-back a dependency outage or a failing head of an aggregate spends
// an entry's deliveries so that, once it runs, a single failure
// dead-letters it (ADR-016). A delivery that a process took down with it
// (killed, or paused until another consumer claimed its entries) still
// counts: nothing knows what its handler did.
//
// Only when something is to be given back: one script call per
// refreshChunk entries (so Redis is never blocked long), each bounded by
// opTimeout. A failure is logged at debug: the entry stays pending either
// way, and its counter merely stays one higher.
func (c *Consumer) giveBack(ctx context.Context, items []item) {
	var args []any
	flush := func() {
		if len(args) <= 2 {
			return
		}
		gctx, cancel := context.WithTimeout(ctx, opTimeout)
		n, err := giveBackDeliveries.Run(gctx, c.rdb, []string{c.cfg.Stream}, args...).Int64()
		cancel()
		args = args[:2]
		if err != nil {
			c.log.Debug("giving back deliveries that reached no handler verdict failed", slog.String(AttrError, err.Error()))
			return
		}
		c.series.givenBack.Add(float64(n))
	}
	for i := range items {
		it := &items[i]
		if it.resolved || it.notOurs || it.spent || it.deliveries < 1 ||
			(it.outcome != OutcomeDeferred && it.outcome != OutcomeRetryLater) {
			continue
		}
		if args == nil {
			args = append(make([]any, 0, 2+2*min(refreshChunk, len(items)-i)), c.cfg.Group, c.cfg.Consumer)
		}
		args = append(args, it.msg.ID, strconv.FormatInt(it.deliveries, 10))
		if len(args) >= 2+2*refreshChunk {
			flush()
		}
	}
	flush()
}
