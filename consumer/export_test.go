package consumer

import (
	"context"
	"strconv"

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
