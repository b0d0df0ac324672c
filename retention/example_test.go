package retention_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/retention"
)

// ExampleTrim trims a stream whose one group has acknowledged the first
// three of five entries: those three go, the two it has not read stay.
// It runs against the Redis at 127.0.0.1:6379 (HEADWAY_REDIS_ADDR).
func ExampleTrim() {
	addr := os.Getenv("HEADWAY_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = rdb.Close() }()
	ctx := context.Background()
	stream := fmt.Sprintf("example:%d:events:{wallet}", time.Now().UnixNano())
	defer rdb.Del(ctx, stream)

	rdb.XGroupCreateMkStream(ctx, stream, "rolling_service", "$")
	for i := range 5 {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"n", i}})
	}
	res, _ := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "rolling_service", Consumer: "pod-1",
		Streams: []string{stream, ">"}, Count: 3, Block: -1}).Result()
	for _, m := range res[0].Messages {
		rdb.XAck(ctx, stream, "rolling_service", m.ID)
	}

	r, err := retention.Trim(ctx, rdb, stream, retention.Policy{})
	fmt.Println(r.Trimmed, "trimmed,", r.Length, "left, held by", r.HeldBy, err)
	// Output:
	// 3 trimmed, 2 left, held by rolling_service <nil>
}
