package deadletter_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/deadletter"
	"github.com/headwaylabs/headway/internal/redistest"
)

func ExampleParse() {
	msg := redis.XMessage{ID: "1747300431000-0", Values: map[string]any{
		"event_id":   "e7",
		"event_type": "BET_SETTLED_CONFIRMED",
		"payload":    `{"amount":"12.50"}`,

		deadletter.FieldReason:     "handler_permanent",
		deadletter.FieldError:      "ledger row missing",
		deadletter.FieldStream:     "events:{wallet}",
		deadletter.FieldID:         "1747300430000-0",
		deadletter.FieldDeliveries: "1",
		deadletter.FieldAt:         "2026-05-15T10:20:31Z",
	}}
	l := deadletter.Parse(msg)
	at, _ := l.Time()
	fmt.Println(l.Reason, l.Error)
	fmt.Println(l.SourceStream, l.SourceID, l.Deliveries, at)
	fmt.Println(len(l.Fields), l.Fields["event_id"])
	// Output:
	// handler_permanent ledger row missing
	// events:{wallet} 1747300430000-0 1 2026-05-15 10:20:31 +0000 UTC
	// 3 e7
}

func ExampleRedrive() {
	ctx := context.Background()
	addr := os.Getenv(redistest.AddrEnv)
	if addr == "" {
		addr = redistest.DefaultAddr
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = rdb.Close() }()
	// A key prefix of its own, so that runs do not meet.
	source := "example:" + rand.Text() + ":events:{wallet}"
	dlq := source + ":dlq"
	defer rdb.Del(ctx, source, dlq)

	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: []any{
		"event_id", "e7",
		deadletter.FieldReason, "handler_permanent",
		deadletter.FieldStream, source,
	}}).Result()
	if err != nil {
		fmt.Println(err)
		return
	}

	newID, err := deadletter.Redrive(ctx, rdb, dlq, source, id, nil)
	fmt.Println(newID != "", err)
	back := rdb.XRange(ctx, source, newID, newID).Val()
	fmt.Println(back[0].Values, rdb.XLen(ctx, dlq).Val())

	// A second redrive of the same dead letter finds it gone.
	_, err = deadletter.Redrive(ctx, rdb, dlq, source, id, nil)
	fmt.Println(errors.Is(err, deadletter.ErrNotFound))
	// Output:
	// true <nil>
	// map[event_id:e7] 0
	// true
}
