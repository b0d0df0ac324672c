package service_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/service"
)

// Example runs a rolling consumer as a service: one Add registers it with
// the tree and its checks with /ready; Run serves /live, /ready, /metrics
// and /status and, on SIGTERM, fails /ready, then drains the consumer.
func Example() {
	addr := os.Getenv("HEADWAY_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer func() { _ = rdb.Close() }()
	// A unique key for the example; a service uses event.StreamKey(platform.StreamWallet).
	stream := fmt.Sprintf("example:%d:%s", time.Now().UnixNano(), event.StreamKey(platform.StreamWallet))
	defer rdb.Del(context.Background(), stream, stream+":dlq")

	svc, err := service.New(service.Config{Name: "rolling-service", Addr: "127.0.0.1:0", DrainDelay: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	mode, err := brandguard.ModeFromEnv(os.LookupEnv) // MULTI_BRAND_ENFORCEMENT; default enforce
	if err != nil {
		panic(err)
	}
	guard, err := brandguard.New(brandguard.Config{Catalog: platform.Catalog(), Mode: mode, Registerer: svc.Registerer()})
	if err != nil {
		panic(err)
	}
	settled := make(chan string, 1)
	c, err := consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: stream,
		CatalogStream: platform.StreamWallet, Group: platform.ServiceRolling, Guard: guard,
		Handlers: map[event.Type]consumer.Handler{
			platform.BetSettledConfirmed: func(ctx context.Context, m *consumer.Message) error {
				settled <- m.Envelope.AggregateID
				return nil
			},
			platform.BetRolledBackConfirmed: func(context.Context, *consumer.Message) error { return nil },
		},
		Registerer: svc.Registerer(), Logger: svc.Logger()})
	if err != nil {
		panic(err)
	}
	if err := svc.Add("rolling", c); err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background()) // a service passes context.Background()
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()

	// A producer settles a bet (through the outbox, in a real service).
	fields, _ := event.Encode(event.Envelope{EventID: event.NewID(), EventType: platform.BetSettledConfirmed,
		SchemaVersion: event.CurrentSchemaVersion, BrandID: 3, OccurredAt: time.Now(), AggregateID: "bet-7", Payload: []byte(`{}`)})
	rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: fields})
	fmt.Println("settled", <-settled)
	code := 0
	for deadline := time.Now().Add(10 * time.Second); code != http.StatusOK && time.Now().Before(deadline); {
		if resp, err := http.Get("http://" + svc.Addr() + "/ready"); err == nil {
			_ = resp.Body.Close()
			code = resp.StatusCode
		}
		time.Sleep(20 * time.Millisecond) // polling /ready until the loop is ready
	}
	fmt.Println("/ready", code)
	stop()
	fmt.Println("Run:", <-done)
	// Output:
	// settled bet-7
	// /ready 200
	// Run: <nil>
}
