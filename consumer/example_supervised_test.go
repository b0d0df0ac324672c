package consumer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/status"
	"github.com/headwaylabs/headway/supervisor"
)

// Example_supervised embeds a rolling consumer the way a service does:
// brandguard from MULTI_BRAND_ENFORCEMENT, Redis deduplication, a
// supervision tree, and /live, /ready and /status on one mux. It is the
// README's embedding example, compiled and run.
func Example_supervised() {
	addr := os.Getenv("HEADWAY_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer func() { _ = rdb.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// A unique key for the example; a service uses event.StreamKey(platform.StreamWallet).
	stream := fmt.Sprintf("example:%d:%s", time.Now().UnixNano(), event.StreamKey(platform.StreamWallet))
	defer rdb.Del(context.Background(), stream, stream+":dlq")
	defer func() { // the dedup keys of the example
		keys, _ := rdb.Keys(context.Background(), stream+":dedup:*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	}()

	mode, err := brandguard.ModeFromEnv(os.LookupEnv) // MULTI_BRAND_ENFORCEMENT; default enforce
	if err != nil {
		panic(err)
	}
	guard, err := brandguard.New(brandguard.Config{Catalog: platform.Catalog(), Mode: mode, Registerer: reg, Logger: log})
	if err != nil {
		panic(err)
	}
	store, err := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: stream + ":dedup:"})
	if err != nil {
		panic(err)
	}
	turnover := make(chan int64, 1)
	c, err := consumer.New(consumer.Config{Catalog: platform.Catalog(),
		Client: rdb, Stream: stream, CatalogStream: platform.StreamWallet, Group: platform.ServiceRolling,
		Consumer: "pod-1", // default: the hostname, stable across restarts of a pod
		Handlers: map[event.Type]consumer.Handler{
			platform.BetSettledConfirmed: func(ctx context.Context, m *consumer.Message) error {
				if _, err := m.CheckTarget(ctx, 3); err != nil { // the player's brand
					return err
				}
				select {
				case turnover <- 1250:
				default: // a redelivery: already counted
				}
				return nil
			},
			platform.BetRolledBackConfirmed: func(context.Context, *consumer.Message) error { return nil },
		},
		Guard: guard, Dedup: store, Block: 200 * time.Millisecond, Registerer: reg, Logger: log,
	})
	if err != nil {
		panic(err)
	}
	probes, err := readiness.NewProbes(readiness.ProbesConfig{Registerer: reg})
	if err != nil {
		panic(err)
	}
	tree, err := supervisor.New(supervisor.Config{Probes: probes, Registerer: reg, Logger: log})
	if err != nil {
		panic(err)
	}
	// Add registers the worker's check and its loop's (c's watermark).
	if err := tree.Add("rolling", c); err != nil {
		panic(err)
	}
	page, err := status.New(status.Config{Title: "rolling-service", Tree: tree, Probes: probes})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/live", probes.LiveHandler())
	mux.Handle("/ready", probes.ReadyHandler())
	mux.Handle("/status", page)
	srv := httptest.NewServer(mux) // a service: http.ListenAndServe(":8080", mux)
	defer srv.Close()

	serveCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tree.Serve(serveCtx) }()

	fields, _ := event.Encode(event.Envelope{EventID: "evt-1", EventType: platform.BetSettledConfirmed,
		SchemaVersion: 2, BrandID: 3, OccurredAt: time.Now(), AggregateID: "bet-77", Payload: []byte(`{"amount":"12.50"}`)})
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields}).Err(); err != nil {
		panic(fmt.Sprintf("Redis at %s: %v (start it: redis-server --daemonize yes)", addr, err))
	}
	select {
	case n := <-turnover:
		fmt.Println("applied, turnover +", n)
	case <-ctx.Done():
		panic("the event was not applied within the example's deadline")
	}

	for ctx.Err() == nil { // ready once the loop has made progress
		resp, err := http.Get(srv.URL + "/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Println("/ready", resp.StatusCode)
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-done
	// Output:
	// applied, turnover + 1250
	// /ready 200
}
