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
	rdb, stream := exampleStream()
	defer func() { rdb.Del(context.Background(), stream); _ = rdb.Close() }()
	ctx := context.Background()

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

// ExampleKeeper keeps a stream within 3 entries while its group has
// acknowledged only one of five: the group holds the other four, so the
// stream stays over its bound, reported and not trimmed. In a service,
// service.Service.AddRetention schedules the keeper's jobs; here one trim
// runs by hand.
func ExampleKeeper() {
	rdb, stream := exampleStream()
	defer func() { rdb.Del(context.Background(), stream); _ = rdb.Close() }()
	ctx := context.Background()

	rdb.XGroupCreateMkStream(ctx, stream, "promotion_service", "$")
	for i := range 5 {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"n", i}})
	}
	res, _ := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "promotion_service", Consumer: "pod-1",
		Streams: []string{stream, ">"}, Count: 2, Block: -1}).Result()
	rdb.XAck(ctx, stream, "promotion_service", res[0].Messages[0].ID) // the second stays pending

	k, err := retention.NewKeeper(retention.KeeperConfig{Client: rdb, Streams: []retention.Stream{
		{Key: stream, Policy: retention.Policy{MaxLength: 3}},
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, job := range k.Jobs() {
		fmt.Println("job", job.Name == retention.JobName(stream), job.Interval)
	}
	r, err := k.Trim(ctx, stream)
	fmt.Printf("trimmed %d, length %d, held by %s (%d pending, %d undelivered), over bound %t, %v\n",
		r.Trimmed, r.Length, r.HeldBy, r.HeldPending, r.HeldLag, r.OverBound, err)
	// Output:
	// job true 30s
	// trimmed 1, length 4, held by promotion_service (1 pending, 3 undelivered), over bound true, <nil>
}

// exampleStream returns a client of the Redis at 127.0.0.1:6379 (or
// HEADWAY_REDIS_ADDR) and a stream key of the example's own.
func exampleStream() (*redis.Client, string) {
	addr := os.Getenv("HEADWAY_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	return redis.NewClient(&redis.Options{Addr: addr}), fmt.Sprintf("example:%d:events:{wallet}", time.Now().UnixNano())
}
