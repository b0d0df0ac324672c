package consumer

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// GiveBackForTest runs the give-back script for the entries of seen (entry
// ID → the delivery count seen), as consumer name of group.
func GiveBackForTest(ctx context.Context, rdb redis.UniversalClient, stream, group, name string, seen map[string]int64) (int64, error) {
	args := []any{group, name}
	for id, n := range seen {
		args = append(args, id, strconv.FormatInt(n, 10))
	}
	return giveBackDeliveries.Run(ctx, rdb, []string{stream}, args...).Int64()
}

// UnrefreshedForTest returns the longest time a batch c holds has gone
// unrefreshed (0 when it holds none).
func UnrefreshedForTest(c *Consumer) time.Duration {
	c.fresh.mu.Lock()
	batches := make([][]redis.XMessage, 0, len(c.fresh.held))
	for _, msgs := range c.fresh.held {
		batches = append(batches, msgs)
	}
	c.fresh.mu.Unlock()
	var longest time.Duration
	for _, msgs := range batches {
		longest = max(longest, c.fresh.unrefreshed(msgs))
	}
	return longest
}
