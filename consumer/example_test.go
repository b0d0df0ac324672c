package consumer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

// Example runs a rolling consumer on the wallet stream of the Redis at
// 127.0.0.1:6379 (HEADWAY_REDIS_ADDR overrides it), publishes one event and
// stops once it is applied.
func Example() {
	addr := os.Getenv("HEADWAY_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = rdb.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := fmt.Sprintf("example:%d:%s", time.Now().UnixNano(), event.StreamKey(platform.StreamWallet))
	defer rdb.Del(context.Background(), stream, stream+":dlq")

	applied := make(chan string, 1)
	c, err := consumer.New(consumer.Config{Catalog: platform.Catalog(),
		Client:        rdb,
		Stream:        stream,
		CatalogStream: platform.StreamWallet, // the key has a prefix, so name the catalog stream
		Group:         platform.ServiceRolling,
		Consumer:      "pod-1",
		Handlers: map[event.Type]consumer.Handler{
			platform.BetSettledConfirmed: func(ctx context.Context, m *consumer.Message) error {
				brand, err := m.CheckTarget(ctx, 3) // the bet's player is of brand 3
				if err != nil {
					return err
				}
				applied <- fmt.Sprintf("%s for aggregate %s, brand %d", m.Envelope.EventType, m.Envelope.AggregateID, brand)
				return nil
			},
			platform.BetRolledBackConfirmed: func(context.Context, *consumer.Message) error { return nil },
		},
		Block:  100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	serveCtx, stop := context.WithCancel(ctx)
	go func() { done <- c.Serve(serveCtx) }()

	fields, _ := event.Encode(event.Envelope{EventID: "evt-1", EventType: platform.BetSettledConfirmed,
		SchemaVersion: 2, BrandID: 3, OccurredAt: time.Now(), AggregateID: "bet-77", Payload: []byte(`{"amount":"12.50"}`)})
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields})

	fmt.Println(<-applied)
	stop()
	<-done
	// Output:
	// BET_SETTLED_CONFIRMED for aggregate bet-77, brand 3
}
